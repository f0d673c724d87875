//! Postal address blocks: the lines of a letter head, an envelope or a contact card that
//! stand above a line ending in a country, a state or a postcode. Street names in any
//! language and word order ("Buerlia 227", "ul. Cicha 86", "Rosebank Cottage") are found by
//! where they stand, not by what they are called.

use std::collections::HashSet;
use std::sync::OnceLock;

use super::detect::is_country;
use super::words::Words;
use crate::data::lexicon::lexicon;
use crate::data::phi::{PhiCategory, PhiSpan};

/// Lines above the closing line that can belong to one block.
const MAX_BLOCK_LINES: usize = 4;
/// Longer lines are prose, not an address line.
const MAX_LINE_CHARS: usize = 60;
const MAX_LINE_WORDS: usize = 7;

/// Address lines above every line that closes an address (a country, a state or a region
/// with or without a postcode, or a UK or Canadian postcode), as `Address`; the town
/// before the closing word as `City`, the postcode as `Zip`.
pub(crate) fn address_blocks(text: &str, words: &Words) -> Vec<PhiSpan> {
    let lines = content_lines(text);
    let mut spans = Vec::new();
    for (i, &(start, end)) in lines.iter().enumerate() {
        let Some(closing) = closing_line(&text[start..end]) else { continue };
        let mut block = Vec::new();
        let mut j = i;
        while j > 0 && block.len() < MAX_BLOCK_LINES {
            let (s, e) = lines[j - 1];
            // A blank line or prose ends the block.
            if s == e || !is_address_line(&text[s..e], words) || !adjacent(text, lines[j - 1], lines[j]) {
                break;
            }
            block.push((s, e));
            j -= 1;
        }
        let has_number = block.iter().any(|&(s, e)| text[s..e].chars().any(|c| c.is_ascii_digit()));
        let all_place_words =
            !block.is_empty() && block.iter().all(|&(s, e)| reads_as_place(&text[s..e], words));
        let town_on_closing_line = closing.town_end > 0;
        if !(closing.postcode.is_some() || has_number || all_place_words) {
            continue;
        }
        if block.is_empty() && !town_on_closing_line {
            continue;
        }
        for (s, e) in block {
            spans.push(PhiSpan { start: s, end: e, category: PhiCategory::Address });
        }
        if town_on_closing_line {
            spans.push(PhiSpan { start, end: start + closing.town_end, category: PhiCategory::City });
        }
        if let Some((s, e)) = closing.postcode {
            spans.push(PhiSpan { start: start + s, end: start + e, category: PhiCategory::Zip });
        }
    }
    spans
}

/// Each line's content range: without leading quote marks (`>`), bullets and spaces, or
/// trailing spaces and commas.
fn content_lines(text: &str) -> Vec<(usize, usize)> {
    let mut lines = Vec::new();
    let mut at = 0;
    for line in text.split('\n') {
        let lead =
            line.len() - line.trim_start_matches(|c: char| c.is_whitespace() || c == '>' || c == ',').len();
        let kept = line.trim_end_matches(|c: char| c.is_whitespace() || c == ',');
        let (s, e) = (at + lead.min(kept.len()), at + kept.len());
        lines.push((s, e.max(s)));
        at += line.len() + 1;
    }
    lines
}

/// Whether only line breaks and spaces stand between two lines (no blank line).
fn adjacent(text: &str, above: (usize, usize), below: (usize, usize)) -> bool {
    text[above.1..below.0].matches('\n').count() == 1
}

/// What closes an address: where the town before the country or state ends (0 when the
/// line holds none) and the postcode.
struct Closing {
    town_end: usize,
    postcode: Option<(usize, usize)>,
}

fn closing_line(line: &str) -> Option<Closing> {
    if line.len() > MAX_LINE_CHARS || line.contains(':') {
        return None;
    }
    // Remove a trailing postcode and a parenthesised remark ("Cyprus (Greek) 7240").
    let mut rest = line.trim_end();
    let mut postcode = None;
    if let Some((s, e)) = trailing_postcode(rest) {
        postcode = Some((s, e));
        rest = rest[..s].trim_end_matches([' ', ',', '\t']);
    }
    if rest.ends_with(')')
        && let Some(open) = rest.rfind('(')
    {
        rest = rest[..open].trim_end_matches([' ', ',', '\t']);
    }
    let tokens: Vec<(usize, &str)> = rest
        .split_inclusive([' ', ','])
        .scan(0, |at, t| {
            let start = *at;
            *at += t.len();
            Some((start, t.trim_end_matches([' ', ','])))
        })
        .filter(|(_, t)| !t.is_empty())
        .collect();
    // The closing place: the last one to three words, a country or a state or region.
    for take in (1..=3.min(tokens.len())).rev() {
        let first = tokens.len() - take;
        let place = &rest[tokens[first].0..];
        if is_region(place) {
            let town = rest[..tokens[first].0].trim_end_matches([' ', ',', '\t']);
            let town_end = if is_town(town) { town.len() } else { 0 };
            return Some(Closing { town_end, postcode });
        }
    }
    // A UK or Canadian postcode closes a line on its own ("Norwich NR2 3TT").
    let (s, e) = postcode?;
    let shaped = is_british_or_canadian_postcode(&line[s..e]);
    shaped.then_some(Closing { town_end: rest.len(), postcode: Some((s, e)) })
}

/// One to four capitalised words (particles aside): what a town before a region reads as.
fn is_town(text: &str) -> bool {
    let tokens: Vec<&str> = text.split_whitespace().collect();
    (1..=4).contains(&tokens.len())
        && tokens.iter().all(|t| is_particle(t) || t.chars().next().is_some_and(char::is_uppercase))
}

fn is_particle(word: &str) -> bool {
    matches!(
        word,
        "de" | "la" | "del" | "van" | "von" | "der" | "le" | "di" | "da" | "do" | "upon" | "on" | "in"
    )
}

/// A trailing postcode: a UK or Canadian one, or four to six digits (with a ZIP+4).
fn trailing_postcode(line: &str) -> Option<(usize, usize)> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let last = *words.last()?;
    let end = line.len();
    if last.len() >= 4 && last.len() <= 10 {
        let digits = last.split('-').collect::<Vec<_>>();
        let zip = match digits.as_slice() {
            [a] => (4..=6).contains(&a.len()) && a.bytes().all(|b| b.is_ascii_digit()),
            [a, b] => a.len() == 5 && b.len() == 4 && (a.to_string() + b).bytes().all(|b| b.is_ascii_digit()),
            _ => false,
        };
        if zip {
            return Some((end - last.len(), end));
        }
    }
    if words.len() >= 2 {
        let pair = format!("{} {}", words[words.len() - 2], last);
        if is_british_or_canadian_postcode(&pair) {
            return Some((line.rfind(words[words.len() - 2]).unwrap_or(end - pair.len()), end));
        }
    }
    is_british_or_canadian_postcode(last).then(|| (end - last.len(), end))
}

fn is_british_or_canadian_postcode(candidate: &str) -> bool {
    let compact: Vec<u8> = candidate.bytes().filter(|b| *b != b' ').collect();
    let upper = |b: &u8| b.is_ascii_uppercase();
    let digit = |b: &u8| b.is_ascii_digit();
    // Canadian: A1A 1A1.
    let canadian = compact.len() == 6
        && upper(&compact[0])
        && digit(&compact[1])
        && upper(&compact[2])
        && digit(&compact[3])
        && upper(&compact[4])
        && digit(&compact[5]);
    // UK: an outward code of two to four (letters then a digit) and an inward "9AA".
    let uk = (5..=7).contains(&compact.len()) && {
        let (outward, inward) = compact.split_at(compact.len() - 3);
        digit(&inward[0])
            && upper(&inward[1])
            && upper(&inward[2])
            && upper(&outward[0])
            && outward.iter().any(digit)
            && outward.iter().all(|b| upper(b) || digit(b))
    };
    canadian || uk
}

/// A country, a US state (name or code), a Canadian province or an Australian state.
fn is_region(place: &str) -> bool {
    static REGIONS: OnceLock<HashSet<String>> = OnceLock::new();
    let regions = REGIONS.get_or_init(|| {
        let mut set: HashSet<String> = HashSet::new();
        for (name, code) in &lexicon().states {
            set.insert(name.to_lowercase());
            set.insert(code.to_lowercase());
        }
        for region in [
            "ontario",
            "quebec",
            "british columbia",
            "alberta",
            "manitoba",
            "saskatchewan",
            "nova scotia",
            "new brunswick",
            "newfoundland",
            "on",
            "qc",
            "bc",
            "ab",
            "mb",
            "sk",
            "ns",
            "nb",
            "nl",
            "pe",
            "nsw",
            "vic",
            "qld",
            "tas",
            "act",
            "nt",
            "new south wales",
            "victoria",
            "queensland",
            "tasmania",
        ] {
            set.insert(region.to_string());
        }
        set
    });
    let lower = place.trim_end_matches('.').to_lowercase();
    // A state code counts only in capitals ("OH", not "oh").
    let code_case = lower.len() > 3 || place.chars().all(|c| !c.is_lowercase());
    (is_country(&lower) && place.chars().next().is_some_and(char::is_uppercase))
        || (regions.contains(&lower) && code_case)
}

/// A short line that can be part of an address: no label, no sentence, no clinical word.
fn is_address_line(line: &str, words: &Words) -> bool {
    let tokens: Vec<&str> = line.split_whitespace().collect();
    if tokens.is_empty() || tokens.len() > MAX_LINE_WORDS || line.chars().count() > MAX_LINE_CHARS {
        return false;
    }
    if line.contains(':') || line.ends_with(['?', '!', ';']) || line.contains(". ") && !has_abbreviation(line)
    {
        return false;
    }
    let letters: Vec<&str> = tokens
        .iter()
        .map(|t| t.trim_matches(|c: char| !c.is_alphabetic()))
        .filter(|w| w.chars().count() > 2)
        .collect();
    let function_words = letters.iter().filter(|w| words.is_function_word(w)).count();
    let clinical = letters.iter().any(|w| words.is_medical_word(w) && !words.is_dictionary_name(w));
    let lower_case_words =
        letters.iter().filter(|w| w.chars().next().is_some_and(char::is_lowercase)).count();
    !clinical && function_words <= 1 && lower_case_words * 2 <= letters.len().max(1)
}

/// "Apt. 839", "ul. Cicha": a short abbreviation before the full stop.
fn has_abbreviation(line: &str) -> bool {
    line.split(". ").next().is_some_and(|head| head.rsplit(' ').next().is_some_and(|w| w.len() <= 4))
}

/// A line of capitalised words (and particles) of which one at least no vocabulary knows:
/// a town or a street standing alone ("Chiclana de la Frontera").
fn reads_as_place(line: &str, words: &Words) -> bool {
    let tokens: Vec<&str> = line.split_whitespace().collect();
    tokens.iter().all(|t| is_particle(t) || t.chars().next().is_some_and(char::is_uppercase))
        && tokens.iter().any(|t| !words.is_known_word(t) && t.chars().count() > 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<(String, PhiCategory)> {
        let words = Words::new();
        address_blocks(text, &words)
            .into_iter()
            .map(|s| (text[s.start..s.end].to_string(), s.category))
            .collect()
    }

    #[test]
    fn lines_above_a_country_and_postcode_are_an_address() {
        let found = found("Please write to:\n3536 Hoog St\n Apt. 839\n Brakpan\n South Africa 70651\nThanks");
        for line in ["3536 Hoog St", "Apt. 839", "Brakpan"] {
            assert!(found.contains(&(line.to_string(), PhiCategory::Address)), "{line}: {found:?}");
        }
        assert!(found.contains(&("70651".to_string(), PhiCategory::Zip)), "{found:?}");
    }

    #[test]
    fn a_british_letter_head_is_an_address() {
        let found = found(
            "Mrs Aurelia Penhallow\nRosebank Cottage\nLittle Snoring\nNorfolk NR21 0AA\n\nDear Doctor,",
        );
        for line in ["Rosebank Cottage", "Little Snoring"] {
            assert!(found.iter().any(|(t, _)| t == line), "{line}: {found:?}");
        }
        assert!(found.contains(&("NR21 0AA".to_string(), PhiCategory::Zip)), "{found:?}");
        assert!(found.contains(&("Norfolk".to_string(), PhiCategory::City)), "{found:?}");
    }

    #[test]
    fn clinical_lines_above_a_state_are_not_an_address() {
        assert!(found("Assessment and plan\nContinue metformin 500 mg\nReturn to Ohio").is_empty());
        assert!(found("The patient was seen today.\nOhio").is_empty());
    }
}
