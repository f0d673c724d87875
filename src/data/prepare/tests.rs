use std::collections::HashMap;

use super::*;
use crate::data::deid::{DeidMode, DeidOptions};
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
        // A hyphen joins words: "Cheyne" in "Cheyne-Stokes" is the eponym, not a name.
        let joins = |c: char| c.is_alphanumeric() || c == '-';
        let before = haystack[..at].chars().next_back();
        let after = haystack[at + needle.len()..].chars().next();
        !before.is_some_and(joins) && !after.is_some_and(joins)
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
                for context in [
                    format!("{value}-year-old"),
                    format!("{value} year old"),
                    format!("{value}yo"),
                    format!("{value} y/o"),
                ] {
                    if outputs.contains(&context) {
                        leaks.push(format!("{}: {} in context", doc.id, span.category));
                    }
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
    // Patient and record ids (MRN-like keys, file names) become pseudonyms.
    for doc in &docs {
        assert!(!contains_word(&outputs, &doc.patient), "patient id {} in the outputs", doc.patient);
    }
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
    // The split keeps a patient's records together, and patients do have several.
    let mut records_of: HashMap<&str, std::collections::HashSet<String>> = HashMap::new();
    for split in SPLITS {
        for line in read_lines(&out.join(format!("{split}.jsonl"))) {
            let patient = line["patient"].as_str().unwrap().to_string();
            let source = line["source_id"].as_str().unwrap().to_string();
            records_of.entry(split).or_default().insert(format!("{patient}/{source}"));
        }
    }
    let mut per_patient: HashMap<String, usize> = HashMap::new();
    for key in records_of.values().flatten() {
        *per_patient.entry(key.split('/').next().unwrap().to_string()).or_default() += 1;
    }
    assert!(per_patient.values().any(|n| *n > 1), "no patient has two records");
    for task in ["extraction", "summarization", "question_answering", "abnormal_findings", "comparison"] {
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
    let card =
        prepare(std::slice::from_ref(&input), &PrepareOptions::new(dir.path().join("out")), None, |_| {})
            .unwrap();
    assert_eq!(card.records_read, 3);
    assert_eq!(card.records_kept, 1);
    assert_eq!(card.rejected, 2);
    let rejected = read_lines(&dir.path().join("out/rejected.jsonl"));
    assert_eq!(rejected[0]["id"], format!("{}:2", input.display()));
    assert_eq!(rejected[0]["reason"], "unreadable");
    assert_eq!(rejected[1]["reason"], "too_short");
}

fn strings_of(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| strings_of(v, out)),
        // Categories (enums) are chosen, not copied from the text.
        Value::Object(map) => map
            .iter()
            .filter(|(k, _)| {
                !["sex", "discharge_disposition", "smoking_status", "modality", "flag", "status"]
                    .contains(&k.as_str())
            })
            .for_each(|(_, v)| strings_of(v, out)),
        _ => {}
    }
}

/// De-identified gold must still be grounded in the de-identified text, in both modes.
#[test]
fn extraction_answers_stay_grounded_in_the_deidentified_report() {
    for mode in [DeidMode::Redact, DeidMode::Surrogate] {
        let dir = tempfile::tempdir().unwrap();
        let synth_dir = dir.path().join("synth");
        write_corpus(&synth_dir, SynthOptions { count: 80, seed: 31, duplicate_rate: 0.0 }, |_| {}).unwrap();
        let mut options = PrepareOptions::new(dir.path().join("out"));
        options.deid = Some(DeidOptions { mode, date_shift_seed: 9 });
        prepare(&[synth_dir], &options, None, |_| {}).unwrap();
        let mut checked = 0;
        for split in SPLITS {
            for line in read_lines(&dir.path().join("out").join(format!("{split}.jsonl"))) {
                if line["task"] != "extraction" {
                    continue;
                }
                let user = line["messages"][1]["content"].as_str().unwrap();
                let data: Value =
                    serde_json::from_str(line["messages"][2]["content"].as_str().unwrap()).unwrap();
                let mut values = Vec::new();
                strings_of(&data, &mut values);
                for value in values.iter().filter(|v| !v.is_empty()) {
                    assert!(
                        user.contains(value.as_str()),
                        "{mode:?}: {value:?} not in the report of {}",
                        line["id"]
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 100, "{mode:?}: only {checked} values checked");
    }
}
