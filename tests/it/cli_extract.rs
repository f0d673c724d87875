use std::path::Path;

use medllm::extract::ExtractionRecord;

use crate::{medllm, stderr_of, tiny_model};

/// A small schema, so that a random model's longest answers stay short.
const SMALL_SCHEMA: &str = r#"{"type":"object","properties":{
  "medications":{"type":"array","maxItems":3,"items":{"type":"object","properties":{
    "name":{"type":"string","maxLength":16},"dose":{"type":["string","null"],"maxLength":8}},
    "required":["name","dose"]}},
  "allergies":{"type":"array","maxItems":2,"items":{"type":"string","maxLength":12}}},
  "required":["medications","allergies"]}"#;

fn small_schema() -> &'static str {
    static PATH: std::sync::OnceLock<(tempfile::TempDir, String)> = std::sync::OnceLock::new();
    let (_, path) = PATH.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("small.schema.json");
        std::fs::write(&path, SMALL_SCHEMA).unwrap();
        let path = path.to_str().unwrap().to_string();
        (dir, path)
    });
    path
}

/// Runs extract on the tiny model with room for any answer the bounded schema allows.
fn extract(schema: &str, extra: &[&str], stdin: Option<&str>) -> std::process::Output {
    let schema = if schema == "small" { small_schema() } else { schema };
    let mut cmd = medllm();
    cmd.arg("extract").arg("-m").arg(tiny_model());
    cmd.args(["--schema", schema, "--max-tokens", "2000", "--ctx", "4096", "-P", "2"]).args(extra);
    if let Some(input) = stdin {
        cmd.write_stdin(input);
    }
    cmd.output().unwrap()
}

fn records(output: &std::process::Output) -> Vec<ExtractionRecord> {
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a record: {e}: {l}")))
        .collect()
}

#[test]
fn unenforceable_keyword_fails_before_the_model_loads() {
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("s.json");
    std::fs::write(&schema, r#"{"type":"object","properties":{"meds":{"type":"array","uniqueItems":true,"items":{"type":"string"}}}}"#).unwrap();
    // The model does not exist: the schema must be refused first.
    let output = medllm()
        .args(["extract", "-m", "/no/such/model.gguf", "--schema"])
        .arg(&schema)
        .write_stdin("text")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let err = stderr_of(&output);
    assert!(err.contains("\"uniqueItems\" at /properties/meds/uniqueItems"), "{err}");
    assert!(!err.contains("/no/such/model.gguf"), "the model must not be touched: {err}");
}

#[test]
fn unknown_schema_name_lists_the_built_in_ones() {
    let output = medllm()
        .args(["extract", "-m", "/x.gguf", "--schema", "discharge"])
        .write_stdin("x")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr_of(&output).contains("discharge_summary, radiology_report"), "{}", stderr_of(&output));
}

#[test]
fn jsonl_file_gives_one_valid_record_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("notes.jsonl");
    std::fs::write(&input, "{\"id\":\"a\",\"text\":\"Metformin 500 mg twice daily.\"}\n{\"id\":\"b\",\"text\":\"Lisinopril 10 mg daily. Allergic to sulfa.\"}\n{\"id\":\"c\",\"text\":\"No meds.\"}\n").unwrap();
    let output = extract("small", &[input.to_str().unwrap()], None);
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let mut records = records(&output);
    records.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(records.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
    for r in &records {
        assert!(r.valid, "{:?}", r.error);
        assert!(r.data.as_ref().unwrap()["medications"].as_array().unwrap().len() <= 3);
        assert!(r.tokens.prompt > 0);
    }
    assert!(stderr_of(&output).contains("extracted 3 documents"));
}

#[test]
fn csv_with_a_bad_row_reports_it_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("notes.csv");
    std::fs::write(
        &input,
        "id;text\nr1;\"Aspirin 81 mg daily;\nno allergies\"\nr2;x;extra\nr3;Warfarin 5 mg\n",
    )
    .unwrap();
    let output = extract("small", &[input.to_str().unwrap()], None);
    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    let records = records(&output);
    assert_eq!(records.len(), 3);
    // A ragged row is named by its line (4: the quoted note spans lines 2-3), never by a
    // cell that may hold a piece of the note.
    let bad = records.iter().find(|r| r.id.ends_with("notes.csv:4")).unwrap();
    assert!(!bad.valid && bad.error.as_deref().unwrap().contains("fields"));
    assert!(records.iter().filter(|r| !r.id.ends_with("notes.csv:4")).all(|r| r.valid));
}

#[test]
fn stdin_text_and_stdin_jsonl() {
    let text = extract("small", &[], Some("Pt on metformin 500 mg b.i.d."));
    assert_eq!(text.status.code(), Some(0), "{}", stderr_of(&text));
    let records = records(&text);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].id, "stdin");
    let jsonl = extract(
        "small",
        &["-"],
        Some("{\"id\":\"x1\",\"text\":\"aspirin\"}\n{\"id\":\"x2\",\"text\":\"heparin\"}\n"),
    );
    let mut ids: Vec<String> = records_of(&jsonl);
    ids.sort();
    assert_eq!(ids, ["x1", "x2"]);
}

fn records_of(output: &std::process::Output) -> Vec<String> {
    records(output).into_iter().map(|r| r.id).collect()
}

#[test]
fn out_file_is_written_whole_and_stdout_stays_empty() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("records.jsonl");
    let output = extract("small", &["-o", out.to_str().unwrap()], Some("Aspirin 81 mg daily."));
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert!(output.stdout.is_empty());
    let text = std::fs::read_to_string(&out).unwrap();
    let record: ExtractionRecord = serde_json::from_str(text.trim()).unwrap();
    assert!(record.valid);
    // No temporary files left beside it.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

/// NaN logits make every token choice arbitrary: each document is an error record.
#[test]
fn a_model_with_nan_weights_gives_error_records() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("nan.gguf");
    crate::write_model_with_nan_weights(&model);
    let output = medllm()
        .arg("extract")
        .arg("-m")
        .arg(&model)
        .args(["--schema", small_schema(), "--max-tokens", "64"])
        .write_stdin("Aspirin 81 mg daily.")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    let records = records(&output);
    assert_eq!(records.len(), 1);
    assert!(!records[0].valid);
    let error = records[0].error.as_deref().unwrap_or_default();
    assert!(error.contains("NaN logits"), "{error}");
}

#[test]
fn empty_document_is_an_error_record() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), "Aspirin 81 mg daily").unwrap();
    std::fs::write(dir.path().join("b.txt"), "   \n").unwrap();
    let output = extract("small", &[dir.path().to_str().unwrap()], None);
    assert_eq!(output.status.code(), Some(1));
    let records = records(&output);
    let empty = records.iter().find(|r| r.id.ends_with("b.txt")).unwrap();
    assert_eq!(empty.error.as_deref(), Some("empty document"));
    assert!(records.iter().find(|r| r.id.ends_with("a.txt")).unwrap().valid);
}

#[test]
fn gbnf_grammar_constrains_the_output() {
    let grammar = Path::new(env!("CARGO_MANIFEST_DIR")).join("grammars/triage.gbnf");
    let output = medllm()
        .arg("extract")
        .arg("-m")
        .arg(tiny_model())
        .arg("--grammar")
        .arg(&grammar)
        .args(["--max-tokens", "600", "--ctx", "2048"])
        .write_stdin("Chest pain radiating to the left arm, diaphoretic.")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let record: ExtractionRecord = serde_json::from_slice(&output.stdout).unwrap();
    let data = record.data.expect("the grammar writes JSON");
    let acuity = data["acuity"].as_u64().unwrap();
    assert!((1..=5).contains(&acuity));
    assert!(data["chief_complaint"].is_string());
}
