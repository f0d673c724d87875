//! De-identification: find PHI ([`PhiDetector`]) and replace it — with a tag (`[NAME]`), a
//! mask of the same length, or a consistent realistic surrogate with dates shifted by one
//! offset per patient so that intervals survive.

mod addresses;
mod calendar;
mod dates;
mod detect;
mod hl7;
mod identifiers;
mod names;
mod normalize;
mod organisations;
mod patterns;
mod stream;
mod structure;
mod words;

use std::collections::HashMap;

pub(crate) use calendar::MONTH_NAMES;
pub(crate) use dates::civil_from_days;
pub use dates::shift_date;
pub use detect::{KnownPhi, PhiDetector};
pub use stream::{StreamFields, StreamFormat, StreamStats, deidentify_stream};

/// "first" … "thirty-first" for a day of the month (1–31).
pub(crate) fn ordinal_word(day: u32) -> &'static str {
    calendar::ORDINAL_WORDS[(day.clamp(1, 31) - 1) as usize]
}

use crate::data::lexicon::lexicon;
use crate::data::phi::{CharSpan, PhiCategory, PhiSpan, to_char_spans};
use crate::data::rng::{SeededRng, stable_hash};

/// How found PHI is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeidMode {
    /// A tag naming the category: `[NAME]`, `[DATE]`.
    #[default]
    Redact,
    /// Letters and digits become `*`; length and punctuation stay.
    Mask,
    /// A realistic replacement, the same for the same value within a document; dates
    /// shifted by one offset per patient.
    Surrogate,
}

/// Settings of a de-identifier.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeidOptions {
    /// How PHI is replaced.
    pub mode: DeidMode,
    /// Seed of the per-patient date shift and of surrogate choice.
    pub date_shift_seed: u64,
}

/// A de-identified text and what was replaced in it.
#[derive(Debug, Clone)]
pub struct Deidentified {
    /// The text with PHI replaced.
    pub text: String,
    /// Spans in the *original* text (char offsets) with their replacements.
    pub spans: Vec<CharSpan>,
}

/// Finds and replaces PHI. Build once, use from many threads.
pub struct Deidentifier {
    detector: PhiDetector,
    options: DeidOptions,
}

impl Deidentifier {
    /// A de-identifier with `options`.
    pub fn new(options: DeidOptions) -> Deidentifier {
        Deidentifier { detector: PhiDetector::new(), options }
    }

    /// The detector alone (for evaluation).
    pub fn detector(&self) -> &PhiDetector {
        &self.detector
    }

    /// A replacement session for one document of one patient: the same value gets the
    /// same surrogate, and every date moves by the patient's offset.
    pub fn session(&self, patient: &str) -> Replacements<'_> {
        let mut rng = SeededRng::keyed(self.options.date_shift_seed, patient);
        // Between one month and one year back: never zero, so no date stays as it was.
        let shift_days = -rng.range(30, 365);
        Replacements {
            owner: self,
            patient_hash: stable_hash(patient.as_bytes()),
            shift_days,
            chosen: HashMap::new(),
        }
    }

    /// De-identifies one text of `patient` (use the document id when patients are unknown).
    pub fn deidentify(&self, text: &str, patient: &str) -> Deidentified {
        self.session(patient).apply(text)
    }
}

/// Consistent replacements within one document (or one patient's documents).
pub struct Replacements<'d> {
    owner: &'d Deidentifier,
    patient_hash: u64,
    shift_days: i64,
    chosen: HashMap<(PhiCategory, String), String>,
}

impl Replacements<'_> {
    /// The days every date of this patient moves by (surrogate mode).
    pub fn shift_days(&self) -> i64 {
        self.shift_days
    }

    /// Finds and replaces PHI in `text`.
    pub fn apply(&mut self, text: &str) -> Deidentified {
        self.apply_with(text, &KnownPhi::default())
    }

    /// Finds and replaces PHI in `text`, with the values its record gives about itself.
    pub fn apply_with(&mut self, text: &str, known: &KnownPhi) -> Deidentified {
        let found = self.owner.detector.detect_with(text, known);
        self.replace(text, &found)
    }

    /// Replaces the given spans (byte offsets, sorted, not overlapping) in `text`.
    pub fn replace(&mut self, text: &str, found: &[PhiSpan]) -> Deidentified {
        let mut spans = to_char_spans(text, found);
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for (span, char_span) in found.iter().zip(spans.iter_mut()) {
            if span.start < at {
                continue;
            }
            out.push_str(&text[at..span.start]);
            let original = &text[span.start..span.end];
            let replacement = self.replacement(span.category, original);
            out.push_str(&replacement);
            char_span.replacement = Some(replacement);
            at = span.end;
        }
        out.push_str(&text[at..]);
        Deidentified { text: out, spans }
    }

    fn replacement(&mut self, category: PhiCategory, original: &str) -> String {
        match self.owner.options.mode {
            DeidMode::Redact => format!("[{}]", category.as_str()),
            DeidMode::Mask => original.chars().map(|c| if c.is_alphanumeric() { '*' } else { c }).collect(),
            DeidMode::Surrogate => {
                let key = (category, original.to_lowercase());
                if let Some(known) = self.chosen.get(&key) {
                    return known.clone();
                }
                let seed = self.owner.options.date_shift_seed ^ self.patient_hash;
                let mut rng = SeededRng::new(seed ^ stable_hash(key.1.as_bytes()) ^ category as u64);
                let mut chosen = match category {
                    PhiCategory::Name => self.surrogate_name(original),
                    PhiCategory::Date => {
                        shift_date(original, self.shift_days).unwrap_or_else(|| "[DATE]".into())
                    }
                    _ => surrogate(category, original, &mut rng),
                };
                // A draw that happens to equal the original would leave it in place.
                for _ in 0..8 {
                    if !chosen.eq_ignore_ascii_case(original) || category == PhiCategory::Name {
                        break;
                    }
                    chosen = surrogate(category, original, &mut rng);
                }
                if chosen.eq_ignore_ascii_case(original) {
                    chosen = format!("[{}]", category.as_str());
                }
                let surrogate = chosen;
                self.chosen.insert(key, surrogate.clone());
                surrogate
            }
        }
    }

    /// Word by word, so "Maria Garcia" and a later "Ms. Garcia" get the same surname.
    fn surrogate_name(&mut self, original: &str) -> String {
        let lexicon = lexicon();
        let mut out = String::with_capacity(original.len());
        let mut word = String::new();
        let mut index = 0;
        let flush = |word: &mut String, out: &mut String, index: &mut usize, this: &mut Self| {
            if word.is_empty() {
                return;
            }
            let key = (PhiCategory::Name, format!("word:{}", word.to_lowercase()));
            let replacement = if let Some(known) = this.chosen.get(&key) {
                known.clone()
            } else {
                let seed =
                    this.owner.options.date_shift_seed ^ this.patient_hash ^ stable_hash(key.1.as_bytes());
                let mut rng = SeededRng::new(seed);
                let mut chosen = if word.chars().count() == 1 {
                    ((b'A' + rng.below(26) as u8) as char).to_string()
                } else if *index == 0 && !lexicon.given_names.is_empty() {
                    rng.pick(&lexicon.given_names).name.to_string()
                } else {
                    rng.pick(&lexicon.surnames).to_string()
                };
                // Never the name itself (an initial may repeat: one letter identifies nobody).
                for _ in 0..8 {
                    if word.chars().count() == 1 || !chosen.eq_ignore_ascii_case(word) {
                        break;
                    }
                    chosen = rng.pick(&lexicon.surnames).to_string();
                }
                this.chosen.insert(key, chosen.clone());
                chosen
            };
            out.push_str(&match_case(word, &replacement));
            *index += 1;
            word.clear();
        };
        for c in original.chars() {
            if c.is_alphabetic() || c == '\'' || c == '’' {
                word.push(c);
            } else {
                flush(&mut word, &mut out, &mut index, self);
                out.push(c);
            }
        }
        flush(&mut word, &mut out, &mut index, self);
        out
    }
}

/// A realistic replacement of the same shape.
fn surrogate(category: PhiCategory, original: &str, rng: &mut SeededRng) -> String {
    let lexicon = lexicon();
    match category {
        PhiCategory::Age => "90".into(),
        PhiCategory::Email => {
            let given = rng.pick(&lexicon.given_names).name.to_lowercase();
            let surname =
                rng.pick(&lexicon.surnames).to_lowercase().replace(|c: char| !c.is_alphabetic(), "");
            format!("{given}.{surname}@example.org")
        }
        PhiCategory::Url => format!("https://example.org/{}", random_like("a1b2c3", rng)),
        PhiCategory::Ip => format!("192.0.2.{}", rng.range(1, 254)),
        PhiCategory::Ssn => {
            // Numbers starting with 9 are never issued as social security numbers.
            let mut s = random_like(original, rng);
            if let Some(first) = s.find(|c: char| c.is_ascii_digit()) {
                s.replace_range(first..first + 1, "9");
            }
            s
        }
        PhiCategory::Address => {
            let suffix = original.split_whitespace().last().unwrap_or("Street");
            let suffix = if suffix.chars().any(|c| c.is_ascii_digit()) { "Street" } else { suffix };
            format!("{} {} {}", rng.range(10, 9999), rng.pick(&lexicon.streets), suffix)
        }
        PhiCategory::City => rng.pick(&lexicon.cities).name.to_string(),
        PhiCategory::Hospital => {
            let prefix = rng.pick(&lexicon.hospital_prefixes);
            let suffix = rng.pick(&lexicon.hospital_suffixes);
            format!("{prefix} {suffix}")
        }
        _ => random_like(original, rng),
    }
}

/// Digits become random digits and letters random letters of the same case.
fn random_like(original: &str, rng: &mut SeededRng) -> String {
    original
        .chars()
        .map(|c| {
            if c.is_ascii_digit() {
                (b'0' + rng.below(10) as u8) as char
            } else if c.is_ascii_uppercase() {
                (b'A' + rng.below(26) as u8) as char
            } else if c.is_ascii_lowercase() {
                (b'a' + rng.below(26) as u8) as char
            } else {
                c
            }
        })
        .collect()
}

fn match_case(original: &str, word: &str) -> String {
    let letters: Vec<char> = original.chars().filter(|c| c.is_alphabetic()).collect();
    if letters.len() > 1 && letters.iter().all(|c| c.is_uppercase()) {
        word.to_uppercase()
    } else {
        word.to_string()
    }
}

#[cfg(test)]
mod tests;
