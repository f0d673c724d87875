use std::collections::HashMap;

use super::*;
use crate::data::phi::{PhiCategory, to_byte_offsets};
use crate::data::synth::{SynthDocument, SynthOptions, generate, write_corpus};

fn read_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn prepared(count: usize, seed: u64) -> (tempfile::TempDir, DataCard, Vec<SynthDocument>) {
    let dir = tempfile::tempdir().unwrap();
    let synth_dir = dir.path().join("synth");
    let options = SynthOptions { count, seed, duplicate_rate: 0.03 };
    write_corpus(&synth_dir, options, |_| {}).unwrap();
    let docs: Vec<SynthDocument> = generate(options).collect();
    let prepare_options = PrepareOptions::new(dir.path().join("out"));
    let card = prepare(&[synth_dir], &prepare_options, None, |_| {}).unwrap();
    (dir, card, docs)
}

fn contains_word(haystack: &str, needle: &str) -> bool {
    haystack.match_indices(needle).any(|(at, _)| {
        let before = haystack[..at].chars().next_back();
        let after = haystack[at + needle.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

#[test]
fn no_gold_phi_string_survives_into_any_output() {
    let (dir, card, docs) = prepared(150, 2024);
    assert!(card.records_kept > 100, "{card:?}");
    let out = dir.path().join("out");
    let mut outputs = String::new();
    for name in ["train.jsonl", "val.jsonl", "test.jsonl", "rejected.jsonl", "data_card.json", "data_card.md"]
    {
        outputs.push_str(&std::fs::read_to_string(out.join(name)).unwrap());
    }
    // JSON escapes nothing in these values but quotes and backslashes, which they lack.
    let mut leaks = Vec::new();
    let mut checked = 0;
    for doc in &docs {
        for span in &doc.phi {
            let (start, end) = to_byte_offsets(&doc.text, span.start, span.end).unwrap();
            let value = &doc.text[start..end];
            // A bare age number ("92") is no identifier out of its context (lab values
            // have such numbers); it is checked with its context below.
            if span.category == PhiCategory::Age {
                let in_context = format!("{value}-year-old");
                if outputs.contains(&in_context) {
                    leaks.push(format!("{}: {} in context", doc.id, span.category));
                }
                continue;
            }
            checked += 1;
            if contains_word(&outputs, value) {
                leaks.push(format!("{}: {} {value:?}", doc.id, span.category));
            }
        }
    }
    assert!(checked > 1000, "only {checked} PHI values checked");
    assert!(leaks.is_empty(), "{} gold PHI values found in outputs: {leaks:#?}", leaks.len());
}

#[test]
fn no_patient_is_in_two_splits_and_duplicates_are_dropped() {
    let (dir, card, docs) = prepared(120, 77);
    let out = dir.path().join("out");
    let mut split_of: HashMap<String, &str> = HashMap::new();
    let mut tasks_seen = std::collections::BTreeSet::new();
    for split in SPLITS {
        for line in read_lines(&out.join(format!("{split}.jsonl"))) {
            let patient = line["patient"].as_str().unwrap().to_string();
            let previous = split_of.insert(patient.clone(), split);
            assert!(previous.is_none_or(|p| p == split), "patient {patient} in {previous:?} and {split}");
            tasks_seen.insert(line["task"].as_str().unwrap().to_string());
            let messages = line["messages"].as_array().unwrap();
            assert_eq!(messages.last().unwrap()["role"], "assistant");
        }
    }
    for task in ["extraction", "summarization", "question_answering", "abnormal_findings"] {
        assert!(tasks_seen.contains(task), "no {task} examples: {tasks_seen:?}");
    }
    let copies = docs.iter().filter(|d| d.duplicate_of.is_some()).count();
    assert!(copies > 0, "the corpus should hold near-copies");
    let dropped = card.dropped.get("near_duplicate").copied().unwrap_or(0)
        + card.dropped.get("exact_duplicate").copied().unwrap_or(0);
    assert_eq!(dropped, copies, "{card:?}");
    assert_eq!(card.rejected, 0, "{card:?}");
    assert!(
        card.patients.get("train").copied().unwrap_or(0) > card.patients.get("test").copied().unwrap_or(0)
    );
}

#[test]
fn malformed_rows_are_rejected_with_their_line_and_the_rest_prepared() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("notes.jsonl");
    std::fs::write(
        &input,
        "{\"id\":\"a\",\"patient\":\"p1\",\"text\":\"HPI: cough and fever for five days with productive sputum.\\nAssessment: community acquired pneumonia.\\nPlan: finish antibiotics.\"}\n\
         not json at all\n\
         {\"id\":\"b\",\"text\":\"short\"}\n",
    )
    .unwrap();
    let card = prepare(&[input.clone()], &PrepareOptions::new(dir.path().join("out")), None, |_| {}).unwrap();
    assert_eq!(card.records_read, 3);
    assert_eq!(card.records_kept, 1);
    assert_eq!(card.rejected, 2);
    let rejected = read_lines(&dir.path().join("out/rejected.jsonl"));
    assert_eq!(rejected[0]["id"], format!("{}:2", input.display()));
    assert_eq!(rejected[0]["reason"], "unreadable");
    assert_eq!(rejected[1]["reason"], "too_short");
}
