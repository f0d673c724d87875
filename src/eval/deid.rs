//! Scoring de-identification against gold PHI spans. A gold span counts as found when the
//! detected spans cover every letter and digit of it (whatever category they gave it:
//! a missed category is a leak, a wrong category is not). A detected span is correct when
//! it overlaps some gold span. Recall per gold category, precision per detected category.

use std::collections::BTreeMap;

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
}

impl PhiScore {
    fn finish(&mut self) {
        self.recall = if self.gold == 0 { 1.0 } else { self.found as f64 / self.gold as f64 };
        self.precision = if self.detected == 0 { 1.0 } else { self.correct as f64 / self.detected as f64 };
        let sum = self.recall + self.precision;
        self.f1 = if sum == 0.0 { 0.0 } else { 2.0 * self.recall * self.precision / sum };
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
        let mut gold_bytes: Vec<PhiSpan> = Vec::with_capacity(document.phi.len());
        for span in &document.phi {
            let Some((start, end)) = to_byte_offsets(text, span.start, span.end) else {
                scores.invalid_gold_spans += 1;
                continue;
            };
            gold_bytes.push(PhiSpan { start, end, category: span.category });
            let found = text[start..end]
                .char_indices()
                .filter(|(_, c)| c.is_alphanumeric())
                .all(|(i, _)| covered[start + i]);
            let score = scores.categories.entry(span.category).or_default();
            score.gold += 1;
            if found {
                score.found += 1;
            } else {
                on_miss(
                    &document,
                    DeidMiss {
                        id: document.id.clone(),
                        kind: "missed",
                        category: span.category,
                        start: span.start,
                        end: span.end,
                    },
                );
            }
        }
        for span in &detected {
            let correct = gold_bytes.iter().any(|g| g.start < span.end && span.start < g.end);
            let score = scores.categories.entry(span.category).or_default();
            score.detected += 1;
            if correct {
                score.correct += 1;
            } else {
                let chars = crate::data::phi::to_char_spans(text, std::slice::from_ref(span));
                on_miss(
                    &document,
                    DeidMiss {
                        id: document.id.clone(),
                        kind: "false_hit",
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
        score.finish();
    }
    overall.finish();
    scores.overall = overall;
    scores
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
        // Found: the name (by title) and the date; missed: the bare hospital word "Zorbly";
        // false hit: the date-like "03/04/2022" is not in the gold.
        let doc = gold(
            "Dr. Helen Schwartz saw her on 03/14/2024 at Zorbly. Form 03/04/2022.",
            &[
                ("Helen Schwartz", PhiCategory::Name),
                ("03/14/2024", PhiCategory::Date),
                ("Zorbly", PhiCategory::Hospital),
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
    }
}
