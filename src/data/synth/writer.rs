//! Writing a document while recording where each identifier went, and writing the
//! identifiers themselves in their many real-world shapes.

use crate::data::deid::{MONTH_NAMES, shift_date};
use crate::data::phi::{PhiCategory, PhiSpan};
use crate::data::rng::SeededRng;

/// How a document is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Style {
    /// Prose paragraphs.
    Narrative,
    /// Headed sections.
    Sectioned,
    /// Clipped clinical shorthand ("pt", "hx", "b.i.d."), odd spacing, the odd typo.
    Terse,
}

/// A document being written: its text and the PHI spans in it.
pub struct DocWriter {
    pub text: String,
    pub phi: Vec<PhiSpan>,
    pub style: Style,
    pub rng: SeededRng,
}

impl DocWriter {
    pub fn new(style: Style, rng: SeededRng) -> DocWriter {
        DocWriter { text: String::with_capacity(2048), phi: Vec::new(), style, rng }
    }

    /// Text as is: values that gold labels point at go through here untouched.
    pub fn put(&mut self, s: &str) -> &mut Self {
        self.text.push_str(s);
        self
    }

    /// Connecting words: in terse notes these get doubled spaces and the odd typo.
    pub fn filler(&mut self, s: &str) -> &mut Self {
        if self.style != Style::Terse {
            return self.put(s);
        }
        for (i, word) in s.split(' ').enumerate() {
            if i > 0 {
                self.text.push_str(if self.rng.chance(0.06) { "  " } else { " " });
            }
            if word.len() > 4 && word.chars().all(|c| c.is_ascii_lowercase()) && self.rng.chance(0.05) {
                // Swap two inner letters: the typo a hurried note has.
                let mut chars: Vec<char> = word.chars().collect();
                let at = 1 + self.rng.below(chars.len() - 3);
                chars.swap(at, at + 1);
                self.text.extend(chars);
            } else {
                self.text.push_str(word);
            }
        }
        self
    }

    /// An identifier: written and recorded as gold PHI.
    pub fn phi(&mut self, category: PhiCategory, s: &str) -> &mut Self {
        let start = self.text.len();
        self.text.push_str(s);
        self.phi.push(PhiSpan { start, end: self.text.len(), category });
        self
    }

    /// A date in one of many shapes; "the third of July" keeps "the" outside the span.
    pub fn date(&mut self, date: (i64, u32, u32)) -> &mut Self {
        let (text, prefix) = format_date(date, &mut self.rng);
        self.put(prefix);
        self.phi(PhiCategory::Date, &text)
    }

    /// A line break, with the trailing spaces and blank lines that pasted notes have.
    pub fn newline(&mut self) -> &mut Self {
        if self.style == Style::Terse && self.rng.chance(0.1) {
            self.text.push_str("  ");
        }
        self.text.push('\n');
        self
    }
}

fn ordinal_suffix(day: u32) -> &'static str {
    match (day % 10, day % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    }
}

/// A date written in one of the shapes notes use, and text that goes before it.
pub fn format_date((y, m, d): (i64, u32, u32), rng: &mut SeededRng) -> (String, &'static str) {
    let month = MONTH_NAMES[(m - 1) as usize];
    let short = &month[..3];
    let text = match rng.below(11) {
        0 => format!("{m:02}/{d:02}/{y}"),
        1 => format!("{m}/{d}/{:02}", y % 100),
        2 => format!("{d} {short} {y}"),
        3 => format!("{month} {d}{}, {y}", ordinal_suffix(d)),
        4 => format!("{y}-{m:02}-{d:02}"),
        5 => format!("{month} {d}, {y}"),
        6 => format!("{d:02}.{m:02}.{y}"),
        7 => format!("{short} {d}"),
        8 => format!("{m}-{d}-{y}"),
        9 => format!("{month} {y}"),
        _ => {
            let word = super::super::deid::ordinal_word(d);
            return (format!("{word} of {month}"), "the ");
        }
    };
    (text, "")
}

/// A date `days` after `date`, as a (year, month, day) triple.
pub fn add_days(date: (i64, u32, u32), days: i64) -> (i64, u32, u32) {
    // Shifting a written ISO date reuses the calendar arithmetic of the de-identifier.
    let iso = format!("{}-{:02}-{:02}", date.0, date.1, date.2);
    let shifted = shift_date(&iso, days).unwrap_or(iso);
    let parts: Vec<i64> = shifted.split('-').filter_map(|p| p.parse().ok()).collect();
    (parts[0], parts[1] as u32, parts[2] as u32)
}

/// A phone number in one of the usual shapes (555 exchange: never a real line).
pub fn phone(rng: &mut SeededRng) -> String {
    let area = rng.range(201, 989);
    let line = rng.range(100, 199);
    match rng.below(4) {
        0 => format!("({area}) 555-0{line}"),
        1 => format!("{area}-555-0{line}"),
        2 => format!("{area}.555.0{line}"),
        _ => format!("+1 {area} 555 0{line}"),
    }
}

/// Digits and capitals in a pattern: `#` a digit, `@` a capital letter.
pub fn pattern_id(pattern: &str, rng: &mut SeededRng) -> String {
    pattern
        .chars()
        .map(|c| match c {
            '#' => (b'0' + rng.below(10) as u8) as char,
            '@' => (b'A' + rng.below(26) as u8) as char,
            other => other,
        })
        .collect()
}
