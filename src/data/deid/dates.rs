//! Shifting a date as written by a number of days and writing it back in the same style:
//! `03/14/2024`, `3-14-24`, `14.03.2024`, `2024-03-14`, `March 14th, 2024`, `14 Mar`,
//! `the third of July`, `March 2024`. Each part (day, month, year) is replaced where it
//! stands, so separators, padding, ordinal suffixes and letter case survive.

use super::calendar::{MONTH_NAMES, ORDINAL_WORDS};

/// A part of a date and where it stands in the text (byte range).
#[derive(Debug, Clone, Copy)]
enum Part {
    Day { start: usize, end: usize, digits: bool },
    Month { start: usize, end: usize, word: bool },
    Year { start: usize, end: usize },
}

/// `date` moved by `days`, in its own style; `None` when it cannot be read as a date.
pub fn shift_date(date: &str, days: i64) -> Option<String> {
    let parts = read_parts(date)?;
    let (mut year, mut month, mut day) = (None, None, None);
    for part in &parts {
        match *part {
            Part::Day { start, end, digits } => day = Some(read_day(&date[start..end], digits)?),
            Part::Month { start, end, word } => month = Some(read_month(&date[start..end], word)?),
            Part::Year { start, end } => year = Some(read_year(&date[start..end])?),
        }
    }
    let month = month?;
    // Without a year, a leap year keeps 29 February valid; without a day, mid-month.
    let y = year.unwrap_or(2000);
    let d = day.unwrap_or(15);
    if d > days_in_month(y, month) {
        return None;
    }
    let (ny, nm, nd) = civil_from_days(days_from_civil(y, month, d) + days);
    let mut out = date.to_string();
    let mut parts = parts;
    parts.sort_by_key(|p| std::cmp::Reverse(part_start(p)));
    for part in parts {
        match part {
            Part::Day { start, end, digits } => {
                let new = if digits {
                    write_day(&date[start..end], nd)
                } else {
                    write_ordinal_word(&date[start..end], nd)
                };
                out.replace_range(start..end, &new);
            }
            Part::Month { start, end, word } => {
                let new =
                    if word { write_month_word(&date[start..end], nm) } else { pad(&date[start..end], nm) };
                out.replace_range(start..end, &new);
            }
            Part::Year { start, end } => {
                let new =
                    if end - start == 2 { format!("{:02}", ny.rem_euclid(100)) } else { ny.to_string() };
                out.replace_range(start..end, &new);
            }
        }
    }
    Some(out)
}

fn part_start(part: &Part) -> usize {
    match *part {
        Part::Day { start, .. } | Part::Month { start, .. } | Part::Year { start, .. } => start,
    }
}

/// Tokens: runs of digits (with an ordinal suffix) and runs of letters (and hyphens, for
/// "twenty-first").
fn tokens(date: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let bytes = date.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_alphanumeric() {
            let start = i;
            let digits = bytes[i].is_ascii_digit();
            while i < bytes.len()
                && (if digits {
                    bytes[i].is_ascii_digit()
                } else {
                    // A hyphen joins letters ("twenty-first"), not a word and a number ("Mar-2024").
                    bytes[i].is_ascii_alphabetic()
                        || bytes[i] == b'-' && bytes.get(i + 1).is_some_and(u8::is_ascii_alphabetic)
                })
            {
                i += 1;
            }
            // "14th": the ordinal suffix belongs to the day.
            if digits && i + 2 <= bytes.len() {
                // Bytes, not a string slice: the next character may be wider than a byte.
                let suffix = [bytes[i].to_ascii_lowercase(), bytes[i + 1].to_ascii_lowercase()];
                let alone = bytes.get(i + 2).is_none_or(|b| !b.is_ascii_alphabetic());
                if matches!(&suffix, b"st" | b"nd" | b"rd" | b"th") && alone {
                    i += 2;
                }
            }
            out.push((start, i));
        } else {
            i += 1;
        }
    }
    out
}

fn read_parts(date: &str) -> Option<Vec<Part>> {
    let tokens = tokens(date);
    let lower = date.to_ascii_lowercase();
    let has_month_word = tokens.iter().any(|&(s, e)| month_index(&lower[s..e]).is_some());
    let mut parts = Vec::new();
    if has_month_word {
        for &(s, e) in &tokens {
            let t = &lower[s..e];
            if month_index(t).is_some() && !parts.iter().any(|p| matches!(p, Part::Month { .. })) {
                parts.push(Part::Month { start: s, end: e, word: true });
            } else if t.as_bytes()[0].is_ascii_digit() {
                let digits = t.bytes().take_while(u8::is_ascii_digit).count();
                if digits == 4 && digits == t.len() {
                    parts.push(Part::Year { start: s, end: e });
                } else if digits <= 2 {
                    parts.push(Part::Day { start: s, end: e, digits: true });
                }
            } else if ORDINAL_WORDS.contains(&t) {
                parts.push(Part::Day { start: s, end: e, digits: false });
            }
        }
        return Some(parts);
    }
    let numbers: Vec<(usize, usize)> =
        tokens.into_iter().filter(|&(s, _)| date.as_bytes()[s].is_ascii_digit()).collect();
    let day_first = date.contains('.');
    match numbers.as_slice() {
        [a, b, c] if a.1 - a.0 == 4 => {
            parts.push(Part::Year { start: a.0, end: a.1 });
            parts.push(Part::Month { start: b.0, end: b.1, word: false });
            parts.push(Part::Day { start: c.0, end: c.1, digits: true });
        }
        [a, b, c] => {
            let first: u32 = date[a.0..a.1].parse().ok()?;
            let (m, d) = if day_first || first > 12 { (b, a) } else { (a, b) };
            parts.push(Part::Month { start: m.0, end: m.1, word: false });
            parts.push(Part::Day { start: d.0, end: d.1, digits: true });
            parts.push(Part::Year { start: c.0, end: c.1 });
        }
        // "03/2019": month and year.
        [a, b] if b.1 - b.0 == 4 => {
            parts.push(Part::Month { start: a.0, end: a.1, word: false });
            parts.push(Part::Year { start: b.0, end: b.1 });
        }
        [a, b] => {
            parts.push(Part::Month { start: a.0, end: a.1, word: false });
            parts.push(Part::Day { start: b.0, end: b.1, digits: true });
        }
        _ => return None,
    }
    Some(parts)
}

fn month_index(word: &str) -> Option<u32> {
    let word = word.trim_end_matches('.');
    if word.len() < 3 {
        return None;
    }
    if word == "sept" {
        return Some(9);
    }
    MONTH_NAMES
        .iter()
        .map(|m| m.to_ascii_lowercase())
        .position(|m| m == word || (word.len() == 3 && m.starts_with(word)))
        .map(|i| i as u32 + 1)
}

fn read_day(text: &str, digits: bool) -> Option<u32> {
    let day = if digits {
        text.trim_end_matches(|c: char| c.is_alphabetic()).parse().ok()?
    } else {
        ORDINAL_WORDS.iter().position(|w| w.eq_ignore_ascii_case(text))? as u32 + 1
    };
    (1..=31).contains(&day).then_some(day)
}

fn read_month(text: &str, word: bool) -> Option<u32> {
    let month = if word { month_index(&text.to_ascii_lowercase())? } else { text.parse().ok()? };
    (1..=12).contains(&month).then_some(month)
}

fn read_year(text: &str) -> Option<i64> {
    let year: i64 = text.parse().ok()?;
    Some(if text.len() == 2 { if year < 50 { 2000 + year } else { 1900 + year } } else { year })
}

fn pad(original: &str, value: u32) -> String {
    if original.len() == 2 { format!("{value:02}") } else { value.to_string() }
}

fn write_day(original: &str, day: u32) -> String {
    let digits = original.trim_end_matches(|c: char| c.is_alphabetic());
    let mut out = pad(digits, day);
    if digits.len() < original.len() {
        let suffix = match (day % 10, day % 100) {
            (_, 11..=13) => "th",
            (1, _) => "st",
            (2, _) => "nd",
            (3, _) => "rd",
            _ => "th",
        };
        out.push_str(suffix);
    }
    out
}

fn write_ordinal_word(original: &str, day: u32) -> String {
    match_case(original, ORDINAL_WORDS[(day - 1) as usize])
}

fn write_month_word(original: &str, month: u32) -> String {
    let full = MONTH_NAMES[(month - 1) as usize].to_lowercase();
    let full = full.as_str();
    let word = if original.len() <= 4 && original.len() < full.len() { &full[..3] } else { full };
    match_case(original, word)
}

/// `word` with the letter case of `original`: all capitals, capitalised or lower case.
fn match_case(original: &str, word: &str) -> String {
    let letters: Vec<char> = original.chars().filter(|c| c.is_alphabetic()).collect();
    if letters.len() > 1 && letters.iter().all(|c| c.is_uppercase()) {
        word.to_uppercase()
    } else if letters.first().is_some_and(|c| c.is_uppercase()) {
        let mut chars = word.chars();
        chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
    } else {
        word.to_string()
    }
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_style_shifts_in_its_own_style() {
        assert_eq!(shift_date("03/14/2024", 20).as_deref(), Some("04/03/2024"));
        assert_eq!(shift_date("3-14-24", -14).as_deref(), Some("2-29-24"));
        assert_eq!(shift_date("14.03.2024", 1).as_deref(), Some("15.03.2024"));
        assert_eq!(shift_date("2024-12-31", 1).as_deref(), Some("2025-01-01"));
        assert_eq!(shift_date("March 14th, 2024", 8).as_deref(), Some("March 22nd, 2024"));
        assert_eq!(shift_date("14 Mar 2024", 30).as_deref(), Some("13 Apr 2024"));
        assert_eq!(shift_date("the third of July", 1).as_deref(), Some("the fourth of July"));
        assert_eq!(shift_date("JULY 3", -3).as_deref(), Some("JUNE 30"));
        assert_eq!(shift_date("March 2024", 31).as_deref(), Some("April 2024"));
        assert_eq!(shift_date("3/14", 1).as_deref(), Some("3/15"));
        assert_eq!(shift_date("no date", 1), None);
        assert_eq!(shift_date("02/30/2023", 1), None);
        assert_eq!(shift_date("03/2019", 31).as_deref(), Some("04/2019"));
        assert_eq!(shift_date("14-Mar-2024", 1).as_deref(), Some("15-Mar-2024"));
        assert_eq!(shift_date("14MAR2024", 1).as_deref(), Some("15MAR2024"));
        // A wide space after the day must not split a character.
        assert_eq!(shift_date("14\u{202f}Mar 2024", 1).as_deref(), Some("15\u{202f}Mar 2024"));
    }

    #[test]
    fn intervals_survive_a_shift() {
        let a = days_from_civil(2024, 1, 10);
        let b = days_from_civil(2024, 3, 1);
        for shift in [-400, -31, 0, 17, 365] {
            let (y1, m1, d1) = civil_from_days(a + shift);
            let (y2, m2, d2) = civil_from_days(b + shift);
            assert_eq!(days_from_civil(y2, m2, d2) - days_from_civil(y1, m1, d1), b - a);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
    }
}
