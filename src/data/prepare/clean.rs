//! Sanitising text and finding duplicates: Unicode NFC, no control characters, tidy
//! whitespace; exact duplicates by hash, near-duplicates by MinHash over word shingles.

use std::collections::{HashMap, HashSet};

use unicode_normalization::UnicodeNormalization;

use crate::data::rng::stable_hash;

/// NFC; control characters dropped (tabs become spaces); line ends unified; runs of
/// spaces collapsed; trailing spaces and more than one blank line removed.
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank_lines = 0;
    let normalized: String = text.replace("\r\n", "\n").replace('\r', "\n").nfc().collect();
    for line in normalized.split('\n') {
        let mut cleaned = String::with_capacity(line.len());
        let mut last_space = false;
        for c in line.chars() {
            let c = if c == '\t' || c == '\u{a0}' { ' ' } else { c };
            if c.is_control() || matches!(c, '\u{200b}' | '\u{feff}' | '\u{200e}' | '\u{200f}') {
                continue;
            }
            if c == ' ' {
                if !last_space && !cleaned.is_empty() {
                    cleaned.push(' ');
                }
                last_space = true;
            } else {
                cleaned.push(c);
                last_space = false;
            }
        }
        let cleaned = cleaned.trim_end();
        if cleaned.is_empty() {
            blank_lines += 1;
            if blank_lines > 1 || out.is_empty() {
                continue;
            }
        } else {
            blank_lines = 0;
        }
        out.push_str(cleaned);
        out.push('\n');
    }
    out.trim_end().to_string()
}

const SHINGLE_WORDS: usize = 5;
const BANDS: usize = 32;
const ROWS: usize = 4;

/// Remembers what it has seen: exact texts by hash (case and spacing ignored) and MinHash
/// signatures in locality-sensitive buckets; a candidate is confirmed by its estimated
/// Jaccard similarity.
pub struct DuplicateFinder {
    exact: HashMap<u64, u32>,
    buckets: HashMap<(u8, u64), Vec<u32>>,
    signatures: Vec<[u32; BANDS * ROWS]>,
    ids: Vec<String>,
    threshold: f64,
}

/// What a text is, against what came before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Duplicate {
    /// Not seen before.
    New,
    /// The same text (up to case and spacing) as this id.
    Exact(String),
    /// Nearly the same as this id.
    Near(String),
}

impl DuplicateFinder {
    /// `threshold`: the estimated Jaccard similarity of word 5-grams above which two texts
    /// are near-duplicates (0.9 keeps re-signed or re-dated copies out).
    pub fn new(threshold: f64) -> DuplicateFinder {
        DuplicateFinder {
            exact: HashMap::new(),
            buckets: HashMap::new(),
            signatures: Vec::new(),
            ids: Vec::new(),
            threshold,
        }
    }

    /// Checks `text` and remembers it under `id` when it is new.
    pub fn check(&mut self, id: &str, text: &str) -> Duplicate {
        let words: Vec<String> = text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect();
        let exact_key = stable_hash(words.join(" ").as_bytes());
        if let Some(&index) = self.exact.get(&exact_key) {
            return Duplicate::Exact(self.ids[index as usize].clone());
        }
        let signature = minhash(&words);
        let mut seen = HashSet::new();
        for band in 0..BANDS {
            let key = (band as u8, band_hash(&signature, band));
            if let Some(candidates) = self.buckets.get(&key) {
                for &candidate in candidates {
                    if seen.insert(candidate)
                        && similarity(&signature, &self.signatures[candidate as usize]) >= self.threshold
                    {
                        return Duplicate::Near(self.ids[candidate as usize].clone());
                    }
                }
            }
        }
        let index = self.ids.len() as u32;
        self.ids.push(id.to_string());
        self.exact.insert(exact_key, index);
        for band in 0..BANDS {
            self.buckets.entry((band as u8, band_hash(&signature, band))).or_default().push(index);
        }
        self.signatures.push(signature);
        Duplicate::New
    }
}

fn minhash(words: &[String]) -> [u32; BANDS * ROWS] {
    let mut signature = [u32::MAX; BANDS * ROWS];
    let shingles: Vec<u64> = if words.len() < SHINGLE_WORDS {
        vec![stable_hash(words.join(" ").as_bytes())]
    } else {
        words.windows(SHINGLE_WORDS).map(|w| stable_hash(w.join(" ").as_bytes())).collect()
    };
    for shingle in shingles {
        for (i, slot) in signature.iter_mut().enumerate() {
            // One cheap universal hash per row, seeded by its index.
            let h = (shingle ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
                .wrapping_mul(0xBF58_476D_1CE4_E5B9);
            let h = (h ^ (h >> 29)) as u32;
            *slot = (*slot).min(h);
        }
    }
    signature
}

fn band_hash(signature: &[u32; BANDS * ROWS], band: usize) -> u64 {
    let mut bytes = [0u8; ROWS * 4];
    for (i, value) in signature[band * ROWS..(band + 1) * ROWS].iter().enumerate() {
        bytes[i * 4..i * 4 + 4].copy_from_slice(&value.to_le_bytes());
    }
    stable_hash(&bytes)
}

fn similarity(a: &[u32; BANDS * ROWS], b: &[u32; BANDS * ROWS]) -> f64 {
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / a.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_normalizes_unicode_controls_and_whitespace() {
        let text = "Cafe\u{301}  visit\r\n\r\n\r\n\tBP\u{0007} 120/80   \nend";
        assert_eq!(sanitize(text), "Caf\u{e9} visit\n\nBP 120/80\nend");
    }

    #[test]
    fn exact_and_near_duplicates_are_found_and_different_texts_are_not() {
        let base = "Patient presents with chest pain radiating to the left arm for two days. \
                    Troponin negative. ECG shows sinus rhythm without ST changes. Plan: stress test, aspirin daily, \
                    follow up in cardiology clinic next week, return if symptoms worsen.";
        let mut finder = DuplicateFinder::new(0.8);
        assert_eq!(finder.check("a", base), Duplicate::New);
        assert_eq!(finder.check("b", &base.to_uppercase()), Duplicate::Exact("a".into()));
        let near = format!("{base} Reviewed again.");
        assert_eq!(finder.check("c", &near), Duplicate::Near("a".into()));
        let other =
            "Lab report: hemoglobin 13.1, sodium 139, potassium 4.2, creatinine 0.9, glucose 101 mg/dL.";
        assert_eq!(finder.check("d", other), Duplicate::New);
    }
}
