//! Scoring extraction against gold labels: precision, recall and F1 per field and overall,
//! the valid-JSON rate and the grounded-string rate.
//!
//! Every record is flattened into facts `(field, value)`: a scalar gives one fact under its
//! path (`patient_age`), a list gives one fact per element (lists are sets), a list of
//! objects gives one fact per element and sub-field (`medications.name`). Nulls give no
//! fact. Strings are compared normalised: lower case, with whitespace and punctuation
//! removed, so `1000 mg` matches `1000mg.`.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::extract::ExtractionRecord;

/// A gold line: the id and the expected data.
#[derive(Debug, Clone, Deserialize)]
pub struct GoldRecord {
    /// Document id (a number is taken as its decimal text, as input ids are).
    #[serde(deserialize_with = "id_text")]
    pub id: String,
    /// Expected extraction.
    pub data: Value,
}

fn id_text<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    match Value::deserialize(deserializer)? {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(serde::de::Error::custom("id must be a string or a number")),
    }
}

/// Counts and scores of one field.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FieldScore {
    /// Facts predicted and in the gold.
    pub true_positives: usize,
    /// Facts predicted but not in the gold.
    pub false_positives: usize,
    /// Gold facts not predicted.
    pub false_negatives: usize,
    /// TP / (TP + FP).
    pub precision: f64,
    /// TP / (TP + FN).
    pub recall: f64,
    /// Harmonic mean of the two.
    pub f1: f64,
}

impl FieldScore {
    fn add(&mut self, tp: usize, fp: usize, fn_: usize) {
        self.true_positives += tp;
        self.false_positives += fp;
        self.false_negatives += fn_;
    }

    fn finish(&mut self) {
        let (tp, fp, fn_) =
            (self.true_positives as f64, self.false_positives as f64, self.false_negatives as f64);
        self.precision = if tp + fp > 0.0 { tp / (tp + fp) } else { 0.0 };
        self.recall = if tp + fn_ > 0.0 { tp / (tp + fn_) } else { 0.0 };
        self.f1 = if self.precision + self.recall > 0.0 {
            2.0 * self.precision * self.recall / (self.precision + self.recall)
        } else {
            0.0
        };
    }
}

/// The whole evaluation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExtractionScores {
    /// Gold documents.
    pub documents: usize,
    /// Gold documents with a valid prediction.
    pub valid: usize,
    /// valid / documents.
    pub valid_rate: f64,
    /// Gold documents with no prediction at all.
    pub missing: usize,
    /// Grounded string values / all string values in the predictions.
    pub grounded_rate: f64,
    /// Micro-averaged over all fields.
    pub overall: FieldScore,
    /// Per field path (`medications.name`).
    pub fields: BTreeMap<String, FieldScore>,
}

/// Scores `predictions` against `gold`. Predictions for ids not in the gold are ignored;
/// gold documents without a (valid) prediction count all their facts as missed.
pub fn score_extraction(gold: &[GoldRecord], predictions: &[ExtractionRecord]) -> ExtractionScores {
    let by_id: HashMap<&str, &ExtractionRecord> = predictions.iter().map(|p| (p.id.as_str(), p)).collect();
    let mut scores = ExtractionScores { documents: gold.len(), ..Default::default() };
    let (mut grounded, mut strings) = (0usize, 0usize);
    for expected in gold {
        let prediction = by_id.get(expected.id.as_str());
        let predicted_data = match prediction {
            Some(p) if p.valid => p.data.clone(),
            Some(_) => None,
            None => {
                scores.missing += 1;
                None
            }
        };
        if let Some(p) = prediction {
            if p.valid {
                scores.valid += 1;
            }
            grounded += p.grounding.len();
            strings += p.grounding.len() + p.ungrounded.len();
        }
        let gold_facts = facts(&expected.data);
        let predicted_facts = predicted_data.as_ref().map(facts).unwrap_or_default();
        let mut fields: Vec<&String> = gold_facts.keys().chain(predicted_facts.keys()).collect();
        fields.sort();
        fields.dedup();
        for field in fields {
            let g = gold_facts.get(field).cloned().unwrap_or_default();
            let p = predicted_facts.get(field).cloned().unwrap_or_default();
            let tp = multiset_overlap(&g, &p);
            let (fp, fn_) = (p.len() - tp, g.len() - tp);
            scores.fields.entry(field.clone()).or_default().add(tp, fp, fn_);
            scores.overall.add(tp, fp, fn_);
        }
    }
    for field in scores.fields.values_mut() {
        field.finish();
    }
    scores.overall.finish();
    scores.valid_rate =
        if scores.documents > 0 { scores.valid as f64 / scores.documents as f64 } else { 0.0 };
    scores.grounded_rate = if strings > 0 { grounded as f64 / strings as f64 } else { 0.0 };
    scores
}

/// Facts of a record, by field path.
fn facts(data: &Value) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    collect(data, "", &mut out);
    out
}

fn collect(value: &Value, path: &str, out: &mut BTreeMap<String, Vec<String>>) {
    match value {
        Value::Null => {}
        Value::Object(fields) => {
            for (key, sub) in fields {
                let child = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                collect(sub, &child, out);
            }
        }
        // A list is a set of elements under the list's own path.
        Value::Array(items) => {
            for item in items {
                collect(item, path, out);
            }
        }
        Value::String(s) => {
            let normalized = normalize(s);
            if !normalized.is_empty() {
                out.entry(path.to_string()).or_default().push(normalized);
            }
        }
        other => out.entry(path.to_string()).or_default().push(normalize(&other.to_string())),
    }
}

/// Lower case, letters and digits only.
pub fn normalize(text: &str) -> String {
    text.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect()
}

fn multiset_overlap(a: &[String], b: &[String]) -> usize {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for x in a {
        *counts.entry(x).or_default() += 1;
    }
    b.iter()
        .filter(|y| match counts.get_mut(y.as_str()) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        })
        .count()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn prediction(id: &str, data: Value, valid: bool) -> ExtractionRecord {
        let mut record = ExtractionRecord::failed(id.into(), String::new());
        record.data = Some(data);
        record.valid = valid;
        record.error = None;
        record
    }

    #[test]
    fn hand_computed_case() {
        let gold = vec![
            GoldRecord {
                id: "a".into(),
                data: json!({"age":67,"sex":"male","meds":[{"name":"Metformin","dose":"500 mg"},{"name":"lisinopril","dose":null}],"allergies":["penicillin"]}),
            },
            GoldRecord { id: "b".into(), data: json!({"age":45,"sex":"female","meds":[],"allergies":[]}) },
            GoldRecord {
                id: "c".into(),
                data: json!({"age":30,"sex":"male","meds":[],"allergies":["latex"]}),
            },
        ];
        let predictions = vec![
            // age right, sex right, one med right (case/space differ), one invented, dose right.
            prediction(
                "a",
                json!({"age":67,"sex":"male","meds":[{"name":"metformin","dose":"500mg"},{"name":"aspirin","dose":null}],"allergies":[]}),
                true,
            ),
            // age wrong.
            prediction("b", json!({"age":54,"sex":"female","meds":[],"allergies":[]}), true),
            // invalid: counts as nothing predicted.
            prediction("c", json!({"age":30,"sex":"male","meds":[],"allergies":["latex"]}), false),
        ];
        let s = score_extraction(&gold, &predictions);
        assert_eq!(s.documents, 3);
        assert_eq!(s.valid, 2);
        let age = &s.fields["age"];
        assert_eq!((age.true_positives, age.false_positives, age.false_negatives), (1, 1, 2));
        assert!((age.precision - 0.5).abs() < 1e-12 && (age.recall - 1.0 / 3.0).abs() < 1e-12);
        assert!((age.f1 - 0.4).abs() < 1e-12);
        assert_eq!(s.fields["meds.name"].true_positives, 1);
        assert_eq!(s.fields["meds.name"].false_positives, 1);
        assert_eq!(s.fields["meds.name"].false_negatives, 1);
        assert_eq!(s.fields["meds.dose"].true_positives, 1);
        assert_eq!(s.fields["allergies"].false_negatives, 2);
        // Overall: TP = age1 + sex2 + name1 + dose1 = 5; FP = age1 + name1 = 2;
        // FN = age2 + sex1 + name1 + allergies2 = 6.
        assert_eq!(
            (s.overall.true_positives, s.overall.false_positives, s.overall.false_negatives),
            (5, 2, 6)
        );
        assert!((s.overall.precision - 5.0 / 7.0).abs() < 1e-12);
        assert!((s.overall.recall - 5.0 / 11.0).abs() < 1e-12);
    }

    #[test]
    fn normalisation_ignores_case_space_and_punctuation() {
        assert_eq!(normalize(" Community-Acquired  Pneumonia. "), "communityacquiredpneumonia");
        assert_eq!(normalize("1,000 mg"), normalize("1000mg"));
    }
}
