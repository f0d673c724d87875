//! Multiple-choice questions derived from synthetic documents' gold labels, for held-out
//! evaluation without any real data: "Which of these drugs is on this patient's
//! medication list?" (the right drug and three others from the lexicon that the document
//! never mentions) and "What is the primary diagnosis?" (likewise, from the diagnoses).
//! Deterministic: the same documents and seed give the same questions, letters included.

use serde_json::Value;

use super::mcq::{LETTERS, Question};
use crate::data::lexicon::lexicon;
use crate::data::rng::SeededRng;
use crate::data::synth::SynthDocument;

/// Options per question.
const OPTIONS: usize = 4;

/// The questions `documents` give.
pub fn questions_from_synth(documents: &[SynthDocument], seed: u64) -> Vec<Question> {
    let lex = lexicon();
    let drugs: Vec<&str> = lex.drugs.iter().map(|d| d.name).collect();
    let diagnoses: Vec<&str> = lex.diagnoses.iter().map(|d| d.name).collect();
    let mut out = Vec::new();
    for doc in documents {
        if doc.duplicate_of.is_some() {
            continue;
        }
        let first_drug = doc
            .gold
            .get("medication_list")
            .and_then(|m| m.get("medications"))
            .and_then(Value::as_array)
            .and_then(|list| list.first())
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str);
        if let Some(drug) = first_drug {
            let q = "Which of these drugs is on the patient's medication list in this document?";
            if let Some(question) = make(doc, "drug", q, drug, &drugs, seed) {
                out.push(question);
            }
        }
        let diagnosis = doc
            .gold
            .get("discharge_summary")
            .and_then(|d| d.get("primary_diagnosis"))
            .and_then(Value::as_str);
        if let Some(diagnosis) = diagnosis {
            let q = "What is the primary diagnosis in this discharge summary?";
            if let Some(question) = make(doc, "diagnosis", q, diagnosis, &diagnoses, seed) {
                out.push(question);
            }
        }
    }
    out
}

/// One question: the right answer and distractors the document does not mention, at a
/// letter chosen by the seeded generator.
fn make(
    doc: &SynthDocument,
    kind: &str,
    question: &str,
    right: &str,
    pool: &[&str],
    seed: u64,
) -> Option<Question> {
    let id = format!("{}:{kind}", doc.id);
    let mut rng = SeededRng::keyed(seed, &id);
    let text = doc.text.to_lowercase();
    let mut options: Vec<String> = Vec::with_capacity(OPTIONS);
    let candidates: Vec<&str> = pool
        .iter()
        .copied()
        .filter(|o| !o.eq_ignore_ascii_case(right) && !text.contains(&o.to_lowercase()))
        .collect();
    if candidates.len() < OPTIONS - 1 {
        return None;
    }
    while options.len() < OPTIONS - 1 {
        let pick = *rng.pick(&candidates);
        if !options.iter().any(|o| o == pick) {
            options.push(pick.to_string());
        }
    }
    let answer = rng.below(OPTIONS);
    options.insert(answer, right.to_string());
    Some(Question {
        id,
        question: question.to_string(),
        context: Some(doc.text.clone()),
        options: options.into_iter().enumerate().map(|(k, o)| (LETTERS[k].to_string(), o)).collect(),
        answer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synth::{SynthOptions, generate};

    #[test]
    fn questions_are_deterministic_grounded_and_spread_over_letters() {
        let docs: Vec<SynthDocument> =
            generate(SynthOptions { count: 120, seed: 11, duplicate_rate: 0.0 }).collect();
        let a = questions_from_synth(&docs, 5);
        let b = questions_from_synth(&docs, 5);
        assert_eq!(a, b);
        assert!(a.len() > 60, "{} questions", a.len());
        let mut per_letter = [0usize; OPTIONS];
        for q in &a {
            assert_eq!(q.options.len(), OPTIONS);
            let context = q.context.as_deref().unwrap().to_lowercase();
            // The right option is in the document; no distractor is.
            assert!(context.contains(&q.options[q.answer].1.to_lowercase()), "{}", q.id);
            for (k, (_, o)) in q.options.iter().enumerate() {
                if k != q.answer {
                    assert!(!context.contains(&o.to_lowercase()), "{}", q.id);
                }
            }
            per_letter[q.answer] += 1;
        }
        assert!(per_letter.iter().all(|&n| n * 8 > a.len()), "{per_letter:?}");
        assert!(a.iter().any(|q| q.id.ends_with(":diagnosis")));
        // Another seed moves the letters.
        let c = questions_from_synth(&docs, 6);
        assert!(a.iter().zip(&c).any(|(x, y)| x.answer != y.answer));
    }
}
