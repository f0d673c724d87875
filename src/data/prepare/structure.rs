//! What a record is (narrative, tabular/lab, imaging report, other), the sections it is
//! split into (HPI, medications, impression …), its lab lines, and terminology
//! normalisation from the synonym table.

use std::collections::HashMap;
use std::sync::OnceLock;

use regex::{Regex, RegexBuilder};
use serde::Serialize;

use crate::data::lexicon::lexicon;

/// The kind of a record, for the data card and for choosing tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// Prose: notes, summaries.
    Narrative,
    /// Lab results or other tables as text lines.
    TabularLab,
    /// An imaging report.
    Imaging,
    /// Too short or too odd to say.
    Other,
}

impl RecordKind {
    /// Its name in files.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Narrative => "narrative",
            RecordKind::TabularLab => "tabular_lab",
            RecordKind::Imaging => "imaging",
            RecordKind::Other => "other",
        }
    }
}

/// A section: its canonical key and where its body is (byte range).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// Canonical key from `sections.txt`, e.g. `hpi`, `impression`.
    pub key: &'static str,
    /// Where the header starts.
    pub header_start: usize,
    /// First byte of the body.
    pub start: usize,
    /// One past its last byte.
    pub end: usize,
}

/// A lab result line: `Hemoglobin: 10.2 g/dL (12-17.5) L`.
#[derive(Debug, Clone, PartialEq)]
pub struct LabLine {
    /// Test name as written.
    pub test: String,
    /// The value.
    pub value: f64,
    /// The value as written.
    pub value_text: String,
    /// Unit, if written.
    pub unit: String,
    /// Reference range.
    pub low: f64,
    /// Reference range.
    pub high: f64,
}

impl LabLine {
    /// Outside its reference range.
    pub fn is_abnormal(&self) -> bool {
        self.value < self.low || self.value > self.high
    }
}

fn lab_line_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r"(?m)^\s*([A-Za-z][A-Za-z0-9 ,()/%\-]{0,40}?)\s*:?\s+([<>]?[0-9]+(?:\.[0-9]+)?)\s*([A-Za-z%/^0-9µ.\-]*(?:/[A-Za-z0-9µ.]+)?)?\s*\(\s*([0-9]+(?:\.[0-9]+)?)\s*-\s*([0-9]+(?:\.[0-9]+)?)\s*\)",
        )
        .expect("lab line pattern compiles")
    })
}

/// Every lab result line with a numeric value and a reference range.
pub fn lab_lines(text: &str) -> Vec<LabLine> {
    lab_line_regex()
        .captures_iter(text)
        .filter_map(|c| {
            let value_text = c.get(2)?.as_str().to_string();
            Some(LabLine {
                test: c.get(1)?.as_str().trim().to_string(),
                value: value_text.trim_start_matches(['<', '>']).parse().ok()?,
                value_text,
                unit: c.get(3).map_or("", |m| m.as_str()).to_string(),
                low: c.get(4)?.as_str().parse().ok()?,
                high: c.get(5)?.as_str().parse().ok()?,
            })
        })
        .collect()
}

/// Classifies a record by its lines and words.
pub fn classify(text: &str, sections: &[Section]) -> RecordKind {
    let lines = text.lines().filter(|l| !l.trim().is_empty()).count().max(1);
    let lab = lab_lines(text).len();
    if lab >= 3 || lab * 3 >= lines && lab > 0 {
        return RecordKind::TabularLab;
    }
    let lower = text.to_lowercase();
    let imaging_words = ["impression", "findings", "technique", "comparison"];
    let modality_words =
        [" ct ", "x-ray", "xray", "mri", "ultrasound", "radiograph", "mammogram", "pet", "fluoroscopy"];
    let imaging_sections = sections
        .iter()
        .filter(|s| matches!(s.key, "findings" | "impression" | "technique" | "comparison"))
        .count();
    if imaging_sections >= 2
        || imaging_words.iter().filter(|w| lower.contains(*w)).count() >= 2
            && modality_words.iter().any(|w| lower.contains(w))
    {
        return RecordKind::Imaging;
    }
    let words = text.split_whitespace().count();
    if words >= 25 { RecordKind::Narrative } else { RecordKind::Other }
}

struct SectionMatcher {
    regex: Regex,
    keys: HashMap<String, &'static str>,
}

fn section_matcher() -> &'static SectionMatcher {
    static MATCHER: OnceLock<SectionMatcher> = OnceLock::new();
    MATCHER.get_or_init(|| {
        let mut headers: Vec<(&str, &str)> = lexicon().sections.clone();
        headers.sort_by_key(|(h, _)| std::cmp::Reverse(h.len()));
        let alternation: Vec<String> = headers.iter().map(|(h, _)| regex::escape(h)).collect();
        // A header starts a line and ends with a colon (then text may follow on the line),
        // or stands alone on its line.
        let source = format!(r"(?mi)^[ \t]*({})[ \t]*(?::[ \t]*|$)", alternation.join("|"));
        let regex = RegexBuilder::new(&source).build().expect("section headers are escaped literals");
        let keys = headers.iter().map(|(h, k)| (h.to_lowercase(), *k)).collect();
        SectionMatcher { regex, keys }
    })
}

/// Splits a text at its section headers.
pub fn sections(text: &str) -> Vec<Section> {
    let matcher = section_matcher();
    let mut found: Vec<Section> = Vec::new();
    for captures in matcher.regex.captures_iter(text) {
        let (Some(all), Some(header)) = (captures.get(0), captures.get(1)) else { continue };
        let Some(key) = matcher.keys.get(&header.as_str().to_lowercase()) else { continue };
        if let Some(last) = found.last_mut() {
            last.end = all.start();
        }
        found.push(Section { key, header_start: header.start(), start: all.end(), end: text.len() });
    }
    found
}

/// The text of the first section with one of `keys`, trimmed; `None` when absent or empty.
pub fn section_text<'t>(text: &'t str, sections: &[Section], keys: &[&str]) -> Option<&'t str> {
    sections
        .iter()
        .find(|s| keys.contains(&s.key))
        .map(|s| text[s.start..s.end].trim())
        .filter(|s| !s.is_empty())
}

struct TermTable {
    regex: Regex,
    canonical: HashMap<String, &'static str>,
}

fn term_table() -> &'static TermTable {
    static TABLE: OnceLock<TermTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut pairs: Vec<(&str, &str)> = lexicon().synonyms.clone();
        pairs.extend(lexicon().diagnosis_synonyms.iter().filter(|(s, _)| s.len() > 3).copied());
        pairs.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        let mut canonical = HashMap::new();
        let mut alternation = Vec::new();
        for (phrase, term) in pairs {
            if canonical.insert(phrase.to_lowercase(), term).is_none() {
                alternation.push(regex::escape(phrase));
            }
        }
        let regex = RegexBuilder::new(&format!(r"\b(?:{})\b", alternation.join("|")))
            .case_insensitive(true)
            .build()
            .expect("synonyms are escaped literals");
        TermTable { regex, canonical }
    })
}

/// Replaces lay terms and abbreviations from the synonym table with the canonical term.
pub fn normalize_terms(text: &str) -> String {
    let table = term_table();
    table
        .regex
        .replace_all(text, |c: &regex::Captures<'_>| {
            let found = &c[0];
            table.canonical.get(&found.to_lowercase()).map_or_else(|| found.to_string(), |t| t.to_string())
        })
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_split_at_headers_with_or_without_text_on_the_line() {
        let text = "HPI: cough for 3 days.\nMedications:\nmetformin 500 mg\nIMPRESSION\nNo acute process.";
        let found = sections(text);
        let keys: Vec<&str> = found.iter().map(|s| s.key).collect();
        assert_eq!(keys, vec!["hpi", "medications", "impression"]);
        assert_eq!(section_text(text, &found, &["hpi"]), Some("cough for 3 days."));
        assert_eq!(section_text(text, &found, &["impression"]), Some("No acute process."));
    }

    #[test]
    fn lab_lines_and_kinds() {
        let text =
            "Hemoglobin:  10.2 g/dL   (12-17.5) L\nSodium:  139 mmol/L   (135-145)\nWBC 12.4 K/uL (4-11) H\n";
        let labs = lab_lines(text);
        assert_eq!(labs.len(), 3);
        assert_eq!(labs[0].test, "Hemoglobin");
        assert!(labs[0].is_abnormal() && !labs[1].is_abnormal() && labs[2].is_abnormal());
        assert_eq!(classify(text, &[]), RecordKind::TabularLab);
        let report = "EXAM: CT chest\nFINDINGS:\nNo nodule.\nIMPRESSION:\nNormal CT of the chest.";
        assert_eq!(classify(report, &sections(report)), RecordKind::Imaging);
    }

    #[test]
    fn terms_are_normalized_on_word_boundaries() {
        let out = normalize_terms("Hx of heart attack and high blood pressure.");
        assert!(out.contains("myocardial infarction") || out.contains("Myocardial infarction"), "{out}");
        assert!(out.to_lowercase().contains("hypertension"), "{out}");
    }
}
