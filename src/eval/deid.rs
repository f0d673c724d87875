//! Scoring de-identification against gold PHI spans. A gold span counts as found when the
//! detected spans cover every letter and digit of it (whatever category they gave it:
//! a missed category is a leak, a wrong category is not). A detected span is correct when
//! it overlaps some gold span. Recall per gold category, precision per detected category;
//! at the level of characters, the letters and digits of gold left uncovered (leaked) and
//! the share of detected letters and digits that lie inside gold (character precision).
//!
//! Gold is JSON lines, or text with inline marks `⟦CATEGORY|value⟧` (one document per
//! `.txt` file; a folder of them is a corpus).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::deid::PhiDetector;
use crate::data::phi::{CharSpan, PhiCategory, PhiSpan, to_byte_offsets};

/// A gold line: the text and its PHI spans (char offsets). `medllm synth` writes these.
#[derive(Debug, Clone, Deserialize)]
pub struct GoldPhiDocument {
    /// Document id.
    pub id: String,
    /// The text.
    pub text: String,
    /// Its PHI spans.
    #[serde(alias = "spans")]
    pub phi: Vec<CharSpan>,
}

/// Counts and rates of one category (or of all).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PhiScore {
    /// Gold spans.
    pub gold: usize,
    /// Gold spans covered by detections.
    pub found: usize,
    /// found / gold.
    pub recall: f64,
    /// Detected spans.
    pub detected: usize,
    /// Detected spans that overlap a gold span.
    pub correct: usize,
    /// correct / detected.
    pub precision: f64,
    /// Harmonic mean of the two.
    pub f1: f64,
    /// Letters and digits inside gold spans.
    pub gold_characters: usize,
    /// Of those, the ones no detection covers: what would be left in the output.
    pub leaked_characters: usize,
    /// Letters and digits inside detected spans.
    pub detected_characters: usize,
    /// Of those, the ones inside some gold span.
    pub correct_characters: usize,
    /// correct_characters / detected_characters.
    pub character_precision: f64,
}

impl PhiScore {
    fn finish(&mut self) {
        self.recall = if self.gold == 0 { 1.0 } else { self.found as f64 / self.gold as f64 };
        self.precision = if self.detected == 0 { 1.0 } else { self.correct as f64 / self.detected as f64 };
        let sum = self.recall + self.precision;
        self.f1 = if sum == 0.0 { 0.0 } else { 2.0 * self.recall * self.precision / sum };
        self.character_precision = if self.detected_characters == 0 {
            1.0
        } else {
            self.correct_characters as f64 / self.detected_characters as f64
        };
    }
}

/// Scores of a gold set.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeidScores {
    /// Documents scored.
    pub documents: usize,
    /// Gold spans that lay outside their text (bad gold; not scored).
    pub invalid_gold_spans: usize,
    /// Per category.
    pub categories: BTreeMap<PhiCategory, PhiScore>,
    /// All categories together.
    pub overall: PhiScore,
}

/// A gold span not found, or a detection that is no PHI (char offsets).
#[derive(Debug, Clone, Serialize)]
pub struct DeidMiss {
    /// Document id.
    pub id: String,
    /// `missed` (gold not covered) or `false_hit` (detection outside gold).
    pub kind: &'static str,
    /// Letters and digits of the span left uncovered (`missed`), or of the detection
    /// (`false_hit`).
    pub characters: usize,
    /// The category (gold's or the detector's).
    pub category: PhiCategory,
    /// First character.
    pub start: usize,
    /// One past the last.
    pub end: usize,
}

/// Scores documents one by one; `on_miss` hears of every miss and false hit.
pub fn score_deid(
    detector: &PhiDetector,
    documents: impl IntoIterator<Item = GoldPhiDocument>,
    mut on_miss: impl FnMut(&GoldPhiDocument, DeidMiss),
) -> DeidScores {
    let mut scores = DeidScores::default();
    for document in documents {
        scores.documents += 1;
        let text = &document.text;
        let detected = detector.detect(text);
        let mut covered = vec![false; text.len()];
        for span in &detected {
            covered[span.start..span.end].iter_mut().for_each(|c| *c = true);
        }
        let mut in_gold = vec![false; text.len()];
        let mut gold_bytes: Vec<PhiSpan> = Vec::with_capacity(document.phi.len());
        for span in &document.phi {
            let Some((start, end)) = to_byte_offsets(text, span.start, span.end) else {
                scores.invalid_gold_spans += 1;
                continue;
            };
            in_gold[start..end].iter_mut().for_each(|c| *c = true);
            gold_bytes.push(PhiSpan { start, end, category: span.category });
            let (mut characters, mut leaked) = (0, 0);
            for (i, c) in text[start..end].char_indices() {
                if c.is_alphanumeric() {
                    characters += 1;
                    leaked += usize::from(!covered[start + i]);
                }
            }
            let score = scores.categories.entry(span.category).or_default();
            score.gold += 1;
            score.gold_characters += characters;
            score.leaked_characters += leaked;
            if leaked == 0 {
                score.found += 1;
            } else {
                on_miss(
                    &document,
                    DeidMiss {
                        id: document.id.clone(),
                        kind: "missed",
                        characters: leaked,
                        category: span.category,
                        start: span.start,
                        end: span.end,
                    },
                );
            }
        }
        for span in &detected {
            let correct = gold_bytes.iter().any(|g| g.start < span.end && span.start < g.end);
            let (mut characters, mut inside) = (0, 0);
            for (i, c) in text[span.start..span.end].char_indices() {
                if c.is_alphanumeric() {
                    characters += 1;
                    inside += usize::from(in_gold[span.start + i]);
                }
            }
            let score = scores.categories.entry(span.category).or_default();
            score.detected += 1;
            score.detected_characters += characters;
            score.correct_characters += inside;
            if correct {
                score.correct += 1;
            } else {
                let chars = crate::data::phi::to_char_spans(text, std::slice::from_ref(span));
                on_miss(
                    &document,
                    DeidMiss {
                        id: document.id.clone(),
                        kind: "false_hit",
                        characters,
                        category: span.category,
                        start: chars[0].start,
                        end: chars[0].end,
                    },
                );
            }
        }
    }
    let mut overall = PhiScore::default();
    for score in scores.categories.values_mut() {
        overall.gold += score.gold;
        overall.found += score.found;
        overall.detected += score.detected;
        overall.correct += score.correct;
        overall.gold_characters += score.gold_characters;
        overall.leaked_characters += score.leaked_characters;
        overall.detected_characters += score.detected_characters;
        overall.correct_characters += score.correct_characters;
        score.finish();
    }
    overall.finish();
    scores.overall = overall;
    scores
}

/// Why gold could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GoldError {
    /// The file or folder could not be read.
    #[error("cannot read {path}")]
    Read {
        /// What was read.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A mark `⟦CATEGORY|value⟧` is malformed (offsets only: the text may hold PHI).
    #[error("{path}:{line}: {problem}")]
    Markup {
        /// The file.
        path: PathBuf,
        /// Its line (1-based).
        line: usize,
        /// What is wrong with the mark.
        problem: String,
    },
}

/// Gold documents read from a file or folder, and the lines that could not be used.
#[derive(Debug, Default)]
pub struct GoldSet {
    /// The documents.
    pub documents: Vec<GoldPhiDocument>,
    /// Lines of JSON gold that were not gold (`path:line: reason`; no content).
    pub bad_lines: Vec<String>,
}

/// Reads gold: a `.jsonl` file of gold lines, a `.txt` file with inline marks, or a folder
/// of `.txt` files (recursively, in name order; ids are the paths without `.txt`).
pub fn read_gold(path: &Path) -> Result<GoldSet, GoldError> {
    let read_error = |source| GoldError::Read { path: path.to_path_buf(), source };
    let mut set = GoldSet::default();
    if path.is_dir() {
        let mut files = Vec::new();
        collect_txt(path, &mut files).map_err(read_error)?;
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file)
                .map_err(|source| GoldError::Read { path: file.clone(), source })?;
            let id =
                file.strip_prefix(path).unwrap_or(&file).with_extension("").to_string_lossy().into_owned();
            set.documents.push(
                read_marked_document(&id, &text).map_err(|(line, problem)| GoldError::Markup {
                    path: file.clone(),
                    line,
                    problem,
                })?,
            );
        }
        return Ok(set);
    }
    let content = std::fs::read_to_string(path).map_err(read_error)?;
    if path.extension().is_some_and(|e| e == "txt") {
        let id = path.file_stem().unwrap_or_default().to_string_lossy().into_owned();
        let document = read_marked_document(&id, &content).map_err(|(line, problem)| GoldError::Markup {
            path: path.to_path_buf(),
            line,
            problem,
        })?;
        set.documents.push(document);
        return Ok(set);
    }
    for (i, line) in content.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<GoldPhiDocument>(line) {
            Ok(document) => set.documents.push(document),
            Err(e) => set.bad_lines.push(format!(
                "{}:{}: not a gold line ({})",
                path.display(),
                i + 1,
                json_error_kind(&e)
            )),
        }
    }
    Ok(set)
}

fn json_error_kind(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Io => "read error",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "missing or wrong fields",
        serde_json::error::Category::Eof => "unexpected end",
    }
}

fn collect_txt(folder: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(folder)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_txt(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "txt") {
            files.push(path);
        }
    }
    Ok(())
}

/// Opening and closing marks of inline gold.
const MARK_OPEN: char = '⟦';
const MARK_CLOSE: char = '⟧';

/// A document with inline marks `⟦CATEGORY|value⟧`: the text without marks and its spans
/// (char offsets). Errors give the line and what is wrong, never the text.
pub fn read_marked_document(id: &str, marked: &str) -> Result<GoldPhiDocument, (usize, String)> {
    let mut text = String::with_capacity(marked.len());
    let mut phi = Vec::new();
    let mut chars_out = 0usize;
    let mut line = 1usize;
    let mut rest = marked;
    while let Some(open) = rest.find(MARK_OPEN) {
        let before = &rest[..open];
        if before.contains(MARK_CLOSE) {
            return Err((
                line + before[..before.find(MARK_CLOSE).unwrap_or(0)].matches('\n').count(),
                "a ⟧ closes no mark".into(),
            ));
        }
        text.push_str(before);
        chars_out += before.chars().count();
        line += before.matches('\n').count();
        let inside_start = open + MARK_OPEN.len_utf8();
        let Some(close) = rest[inside_start..].find(MARK_CLOSE) else {
            return Err((line, "a ⟦ mark is not closed".into()));
        };
        let inside = &rest[inside_start..inside_start + close];
        if inside.contains(MARK_OPEN) {
            return Err((line, "marks cannot nest".into()));
        }
        let Some((category, value)) = inside.split_once('|') else {
            return Err((line, "a mark needs ⟦CATEGORY|value⟧".into()));
        };
        let category: PhiCategory = category
            .trim()
            .parse()
            .map_err(|_| (line, format!("unknown PHI category {:?}", category.trim())))?;
        if value.is_empty() {
            return Err((line, "a mark holds no value".into()));
        }
        let length = value.chars().count();
        phi.push(CharSpan { category, start: chars_out, end: chars_out + length, replacement: None });
        text.push_str(value);
        chars_out += length;
        line += value.matches('\n').count();
        rest = &rest[inside_start + close + MARK_CLOSE.len_utf8()..];
    }
    if rest.contains(MARK_CLOSE) {
        return Err((
            line + rest[..rest.find(MARK_CLOSE).unwrap_or(0)].matches('\n').count(),
            "a ⟧ closes no mark".into(),
        ));
    }
    text.push_str(rest);
    Ok(GoldPhiDocument { id: id.to_string(), text, phi })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gold(text: &str, spans: &[(&str, PhiCategory)]) -> GoldPhiDocument {
        let phi = spans
            .iter()
            .map(|(value, category)| {
                let byte = text.find(value).unwrap();
                let start = text[..byte].chars().count();
                CharSpan { category: *category, start, end: start + value.chars().count(), replacement: None }
            })
            .collect();
        GoldPhiDocument { id: "d1".into(), text: text.into(), phi }
    }

    #[test]
    fn coverage_recall_and_overlap_precision_are_computed_by_hand() {
        let detector = PhiDetector::new();
        // Found: the name (by title) and the date; missed: the lower-case hospital word
        // "zorbly"; false hit: the date-like "03/04/2022" is not in the gold.
        let doc = gold(
            "Dr. Helen Schwartz saw her on 03/14/2024 at zorbly. Form 03/04/2022.",
            &[
                ("Helen Schwartz", PhiCategory::Name),
                ("03/14/2024", PhiCategory::Date),
                ("zorbly", PhiCategory::Hospital),
            ],
        );
        let mut misses = Vec::new();
        let scores = score_deid(&detector, [doc], |_, m| misses.push((m.kind, m.category)));
        assert_eq!(scores.overall.gold, 3);
        assert_eq!(scores.overall.found, 2);
        assert_eq!(scores.categories[&PhiCategory::Hospital].found, 0);
        assert_eq!(scores.overall.detected, 3);
        assert_eq!(scores.overall.correct, 2);
        assert!((scores.overall.recall - 2.0 / 3.0).abs() < 1e-12);
        assert!((scores.overall.precision - 2.0 / 3.0).abs() < 1e-12);
        assert!(misses.contains(&("missed", PhiCategory::Hospital)));
        assert!(misses.contains(&("false_hit", PhiCategory::Date)));
        // "Zorbly" leaks 6 characters; the false date is 8 detected characters outside gold.
        assert_eq!(scores.overall.leaked_characters, 6);
        assert_eq!(scores.overall.gold_characters, 13 + 8 + 6);
        assert_eq!(scores.overall.detected_characters, 13 + 8 + 8);
        assert!((scores.overall.character_precision - 21.0 / 29.0).abs() < 1e-12);
    }

    #[test]
    fn inline_marks_become_text_and_char_spans() {
        let document =
            read_marked_document("n1", "Zoë ⟦NAME|Ångström⟧ seen\n⟦DATE|3/4⟧ at ⟦HOSPITAL|St. Ann's⟧.")
                .unwrap();
        assert_eq!(document.text, "Zoë Ångström seen\n3/4 at St. Ann's.");
        let spans: Vec<(PhiCategory, usize, usize)> =
            document.phi.iter().map(|s| (s.category, s.start, s.end)).collect();
        assert_eq!(
            spans,
            [(PhiCategory::Name, 4, 12), (PhiCategory::Date, 18, 21), (PhiCategory::Hospital, 25, 34)]
        );
        assert_eq!(read_marked_document("n2", "a\nb ⟦NAME|x").unwrap_err().0, 2);
        assert!(read_marked_document("n3", "⟦PATIENT|x⟧").unwrap_err().1.contains("PATIENT"));
        assert!(read_marked_document("n4", "x⟧").is_err());
    }
}
