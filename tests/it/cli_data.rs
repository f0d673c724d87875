//! `medllm synth`, `deid`, `prepare` and `eval deid` as users run them.

use serde_json::Value;

use crate::{medllm, stderr_of};

fn synth(dir: &std::path::Path, n: usize, seed: u64) {
    let output = medllm()
        .args(["synth", "-q", "-o"])
        .arg(dir)
        .args(["--n", &n.to_string(), "--seed", &seed.to_string()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
}

#[test]
fn synth_is_deterministic_per_seed() {
    let dir = tempfile::tempdir().unwrap();
    synth(&dir.path().join("a"), 30, 5);
    synth(&dir.path().join("b"), 30, 5);
    synth(&dir.path().join("c"), 30, 6);
    let read = |name: &str| std::fs::read(dir.path().join(name).join("documents.jsonl")).unwrap();
    assert_eq!(read("a"), read("b"));
    assert_ne!(read("a"), read("c"));
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("a/synth.json")).unwrap()).unwrap();
    assert_eq!(manifest["documents"], 30);
    assert!(dir.path().join("a/gold").read_dir().unwrap().count() >= 3);
}

#[test]
fn synth_refuses_a_folder_with_files_and_leaves_them_alone() {
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path(), 20, 1);
    let before = std::fs::read(dir.path().join("documents.jsonl")).unwrap();
    let gold: Vec<_> = dir.path().join("gold").read_dir().unwrap().map(|e| e.unwrap().file_name()).collect();
    let output =
        medllm().args(["synth", "-q", "--n", "5", "--seed", "2", "-o"]).arg(dir.path()).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr_of(&output).contains("not empty"), "{}", stderr_of(&output));
    assert_eq!(std::fs::read(dir.path().join("documents.jsonl")).unwrap(), before);
    assert_eq!(dir.path().join("gold").read_dir().unwrap().count(), gold.len());
    // Empty subfolders (an interrupted run's) do not count as content.
    let fresh = dir.path().join("fresh");
    std::fs::create_dir_all(fresh.join("gold")).unwrap();
    synth(&fresh, 5, 2);
}

/// The goal, on a corpus whose seed no development run used.
#[test]
fn deid_meets_the_recall_and_precision_goal_on_a_synthetic_corpus() {
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path(), 300, 4242);
    let output = medllm()
        .args(["eval", "deid", "--json", "--gold"])
        .arg(dir.path().join("documents.jsonl"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let scores: Value = serde_json::from_slice(&output.stdout).unwrap();
    let recall = |c: &str| scores["categories"][c]["recall"].as_f64().unwrap();
    assert!(scores["overall"]["recall"].as_f64().unwrap() >= 0.99, "{scores}");
    assert!(scores["overall"]["precision"].as_f64().unwrap() >= 0.90, "{scores}");
    assert!(recall("NAME") >= 0.98 && recall("DATE") >= 0.98, "{scores}");
}

/// The hand-marked corpora (written for the project, not by `synth`) parse, and recall on
/// them does not fall below what this build measured (dev 0.978, held-out 0.911): a
/// change that leaks more identifiers fails here. The floors guard against regressions;
/// they are not the goal (0.99), which docs/benchmarks.md reports as not yet met.
#[test]
fn deid_recall_on_the_hand_marked_corpora_does_not_regress() {
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/deid_corpus");
    for (set, documents, recall_floor, character_precision_floor) in
        [("dev", 70, 0.975, 0.93), ("heldout", 60, 0.905, 0.92)]
    {
        let output =
            medllm().args(["eval", "deid", "--json", "--gold"]).arg(corpus.join(set)).output().unwrap();
        assert!(output.status.success(), "{set}: {}", stderr_of(&output));
        let scores: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(scores["documents"], documents, "{set}");
        assert_eq!(scores["invalid_gold_spans"], 0, "{set}");
        let overall = &scores["overall"];
        assert!(overall["recall"].as_f64().unwrap() >= recall_floor, "{set}: {overall}");
        assert!(
            overall["character_precision"].as_f64().unwrap() >= character_precision_floor,
            "{set}: {overall}"
        );
    }
}

#[test]
fn deid_redacts_stdin_text() {
    let output = medllm()
        .arg("deid")
        .write_stdin("Seen by Dr. Helen Schwartz on 03/14/2024; call (617) 555-0143.\n")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "Seen by Dr. [NAME] on [DATE]; call [PHONE].\n");
}

#[test]
fn deid_leaves_bad_lines_out_reports_them_without_content_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("notes.jsonl");
    std::fs::write(
        &input,
        "{\"id\":\"a\",\"text\":\"Mrs. Okafor called 617-555-0143.\"}\n{\"text\": Mrs. Yamamoto broken\n",
    )
    .unwrap();
    let out = dir.path().join("out.jsonl");
    let spans = dir.path().join("spans.jsonl");
    let output =
        medllm().arg("deid").arg(&input).arg("-o").arg(&out).arg("--spans").arg(&spans).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr_of(&output);
    assert!(stderr.contains("notes.jsonl:2") && !stderr.contains("Yamamoto"), "{stderr}");
    let written = std::fs::read_to_string(&out).unwrap();
    assert_eq!(written.lines().count(), 1);
    assert!(written.contains("Mrs. [NAME] called [PHONE]."), "{written}");
    let spans = std::fs::read_to_string(&spans).unwrap();
    assert!(!spans.contains("Okafor") && spans.contains("\"category\":\"PHONE\""), "{spans}");
}

#[test]
fn deid_of_a_folder_needs_an_output_folder_and_mirrors_the_tree() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(input.join("ward")).unwrap();
    std::fs::write(input.join("ward/a.txt"), "Patient: Maria Garcia, MRN: 00482913\n").unwrap();
    let refused = medllm().arg("deid").arg(&input).output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr_of(&refused).contains("--out DIR"));
    let out = dir.path().join("out");
    let output = medllm().arg("deid").arg(&input).arg("-o").arg(&out).arg("-q").output().unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_eq!(std::fs::read_to_string(out.join("ward/a.txt")).unwrap(), "Patient: [NAME], MRN: [MRN]\n");
}

#[test]
fn prepare_reads_a_synth_folder_and_reports_rejections_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus");
    synth(&corpus, 60, 8);
    let out = dir.path().join("data");
    let output =
        medllm().arg("prepare").arg(&corpus).arg("-o").arg(&out).arg("--seed").arg("1").output().unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    for name in ["train.jsonl", "val.jsonl", "test.jsonl", "rejected.jsonl", "data_card.md", "data_card.json"]
    {
        assert!(out.join(name).is_file(), "{name} missing");
    }
    let card: Value = serde_json::from_slice(&std::fs::read(out.join("data_card.json")).unwrap()).unwrap();
    assert_eq!(card["deidentification"], "redact");
    assert!(card["examples"]["train"]["extraction"].as_u64().unwrap() > 20, "{card}");

    let csv = dir.path().join("notes.csv");
    std::fs::write(
        &csv,
        "id;patient;text\n1;p1;\"HPI: cough and fever for five days.\nAssessment: community acquired pneumonia.\nPlan: finish antibiotics.\"\n2;p2;too;many\n",
    )
    .unwrap();
    let out = dir.path().join("csv-data");
    let output = medllm().arg("prepare").arg(&csv).arg("-o").arg(&out).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    let rejected = std::fs::read_to_string(out.join("rejected.jsonl")).unwrap();
    // The ragged row starts on line 5 (the quoted note spans lines 2-4).
    assert!(rejected.contains("notes.csv:5"), "{rejected}");
}
