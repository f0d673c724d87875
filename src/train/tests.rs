//! The fine-tuning driver on the tiny model: data rendering and masking, packing, a whole
//! run that lowers the loss, bad lines, and stopping then resuming exactly.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use super::*;
use crate::gguf::GgufFile;
use crate::llama::{IGNORED_LABEL, ModelParams};
use crate::test_support::tiny_model_path;

fn tiny_model() -> Model {
    Model::load(tiny_model_path(), &ModelParams::default()).unwrap()
}

fn chat_line(report: &str, answer: &str) -> String {
    serde_json::json!({"messages": [
        {"role": "system", "content": "Extract the diagnosis."},
        {"role": "user", "content": report},
        {"role": "assistant", "content": answer},
    ]})
    .to_string()
}

fn example(tokens: &[i32], train: &[bool]) -> Example {
    Example { tokens: tokens.iter().map(|&t| Token(t)).collect(), train: train.to_vec() }
}

#[test]
fn packing_labels_the_next_token_only_where_it_is_trained() {
    let a = example(&[1, 2, 3, 4], &[false, false, true, true]);
    let b = example(&[5, 6, 7], &[false, true, true]);
    let windows = pack_windows(&[&a, &b], 8, Token(0), true);
    assert_eq!(windows.len(), 1);
    let w = &windows[0];
    assert_eq!(w.tokens.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5, 6, 7, 0]);
    let i = IGNORED_LABEL;
    // Position 1 predicts token 3 (trained), 2 predicts 4; the last of a packed example never
    // predicts the next example's first token; padding has no label.
    assert_eq!(w.labels, vec![i, 3, 4, i, 6, 7, i, i]);
    assert_eq!(w.trained, 4);

    // An example that does not fit starts a new window instead of being split.
    let windows = pack_windows(&[&a, &b], 6, Token(0), true);
    assert_eq!(windows.len(), 2);
    assert_eq!(windows[1].tokens[..3].iter().map(|t| t.0).collect::<Vec<_>>(), vec![5, 6, 7]);
    // Without packing, one example per window.
    assert_eq!(pack_windows(&[&a, &b], 8, Token(0), false).len(), 2);
}

/// The model's own chat template, as a run without --chat-template uses it.
fn own_template(model: &Model) -> crate::llama::PromptFormat {
    crate::llama::resolve_template(None, model.chat_template()).unwrap().format
}

#[test]
fn chat_examples_train_on_the_response_only_unless_asked() {
    let model = tiny_model();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train.jsonl");
    std::fs::write(&path, chat_line("Pain in the chest.", "angina") + "\n").unwrap();
    let data =
        load_examples(&model, &own_template(&model), &path, DataFormat::Chat, false, 512, Overlong::Skip)
            .unwrap();
    assert_eq!(data.examples.len(), 1);
    let ex = &data.examples[0];
    let trained: Vec<Token> = ex.tokens.iter().zip(&ex.train).filter(|(_, t)| **t).map(|(t, _)| *t).collect();
    let text = model.detokenize(&trained, true);
    assert!(text.trim_start().starts_with("angina"), "the trained tokens are the response: {text:?}");
    assert!(!text.contains("chest"), "the prompt is not trained: {text:?}");
    assert!(ex.train.iter().filter(|t| !**t).count() > 5);

    let all =
        load_examples(&model, &own_template(&model), &path, DataFormat::Chat, true, 512, Overlong::Skip)
            .unwrap();
    assert!(all.examples[0].train.iter().skip(1).all(|t| *t));
    assert_eq!(all.examples[0].tokens, ex.tokens, "the same tokens either way");
}

#[test]
fn bad_and_overlong_lines_are_counted_by_line_number() {
    let model = tiny_model();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train.jsonl");
    let long = "very long report ".repeat(200);
    let lines = [
        chat_line("Cough.", "bronchitis"),
        "{not json".to_string(),
        r#"{"messages": [{"role": "user", "content": "no answer"}]}"#.to_string(),
        chat_line(&long, "x"),
    ];
    std::fs::write(&path, lines.join("\n")).unwrap();
    let data =
        load_examples(&model, &own_template(&model), &path, DataFormat::Chat, false, 128, Overlong::Skip)
            .unwrap();
    assert_eq!(data.examples.len(), 1);
    assert_eq!(data.bad_lines.iter().map(|b| b.line).collect::<Vec<_>>(), vec![2, 3]);
    assert_eq!(data.skipped_overlong, 1);
    let truncated =
        load_examples(&model, &own_template(&model), &path, DataFormat::Chat, true, 128, Overlong::Truncate)
            .unwrap();
    assert_eq!(truncated.truncated, 1);
    assert_eq!(truncated.examples.len(), 2);
    assert!(truncated.examples.iter().all(|e| e.tokens.len() <= 128));
}

#[test]
fn plain_text_format_trains_on_the_response_after_a_blank_line() {
    // A base model without a template: the prompt is the messages' text, the response
    // follows a blank line and is the only thing trained.
    let model = tiny_model();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train.jsonl");
    std::fs::write(&path, chat_line("Pain in the chest.", "angina") + "\n").unwrap();
    let plain = crate::llama::PromptFormat::Plain;
    let data = load_examples(&model, &plain, &path, DataFormat::Chat, false, 512, Overlong::Skip).unwrap();
    let ex = &data.examples[0];
    let all = model.detokenize(&ex.tokens, true);
    assert!(!all.contains("<|im_start|>"), "no chat markup: {all:?}");
    let trained: Vec<Token> = ex.tokens.iter().zip(&ex.train).filter(|(_, t)| **t).map(|(t, _)| *t).collect();
    let text = model.detokenize(&trained, true);
    assert_eq!(text.trim_start(), "angina", "{text:?}");
}

#[test]
fn repeated_bad_lines_give_one_note_with_a_count() {
    let bad = |line: usize, reason: &str| BadLine { file: "t.jsonl".into(), line, reason: reason.into() };
    let lines =
        [bad(2, "no assistant message to learn"), bad(5, "other"), bad(7, "no assistant message to learn")];
    let lines: Vec<&BadLine> = lines.iter().collect();
    let mut many = Vec::new();
    for i in 0..104 {
        many.push(bad(i + 1, "no assistant message to learn"));
    }
    assert_eq!(
        super::bad_line_notes(&lines),
        vec!["t.jsonl: 2 lines (first: line 2): no assistant message to learn", "t.jsonl:5: other"]
    );
    let many: Vec<&BadLine> = many.iter().collect();
    assert_eq!(
        super::bad_line_notes(&many),
        vec!["t.jsonl: 104 lines (first: line 1): no assistant message to learn"]
    );
}

struct Quiet;

impl TrainObserver for Quiet {
    fn step(&mut self, _record: &LogRecord, _planned_steps: u64) {}
    fn note(&mut self, _message: &str) {}
}

fn write_data(dir: &Path) -> (PathBuf, PathBuf) {
    let diagnoses = ["angina", "asthma", "gout", "anemia", "sepsis", "migraine"];
    let mut train = String::new();
    for i in 0..24 {
        let d = diagnoses[i % diagnoses.len()];
        train.push_str(&chat_line(&format!("Patient {i} has {d}."), d));
        train.push('\n');
    }
    let mut val = String::new();
    for (i, d) in diagnoses.iter().enumerate() {
        val.push_str(&chat_line(&format!("Patient {} has {d}.", 100 + i), d));
        val.push('\n');
    }
    let (train_path, val_path) = (dir.join("train.jsonl"), dir.join("val.jsonl"));
    std::fs::write(&train_path, train).unwrap();
    std::fs::write(&val_path, val).unwrap();
    (train_path, val_path)
}

fn settings(dir: &Path, output: &str) -> FinetuneSettings {
    let (train, val) = write_data(dir);
    FinetuneSettings {
        chat_template: None,
        model: tiny_model_path().to_path_buf(),
        train,
        val: Some(val),
        output: dir.join(output),
        method: Method::Lora { rank: 4, alpha: 8.0, targets: DEFAULT_TARGETS.map(String::from).to_vec() },
        format: DataFormat::Chat,
        train_on_prompt: false,
        ctx: 256,
        pack: true,
        overlong: Overlong::Skip,
        epochs: 8,
        max_steps: None,
        max_minutes: None,
        learning_rate: 5e-3,
        warmup_steps: 2,
        schedule: Schedule::Cosine,
        optimizer: Optimizer::AdamW,
        weight_decay: 0.0,
        grad_accumulation: 1,
        seed: 9,
        threads: 2,
        eval_every: 0,
        checkpoint_every: 0,
        resume: None,
    }
}

fn tensor_values(path: &Path) -> Vec<f32> {
    let file = GgufFile::open(path).unwrap();
    let mut values = Vec::new();
    for t in &file.tensors {
        let bytes = file.read_tensor_data(&t.name).unwrap().unwrap();
        values.extend(bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())));
    }
    values
}

#[test]
fn a_lora_run_lowers_validation_loss_and_writes_its_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(dir.path(), "out");
    let report = finetune(&settings, &mut Quiet, &AtomicBool::new(false)).unwrap();
    let (before, after) = (report.val_loss_before.unwrap(), report.val_loss_after.unwrap());
    assert!(after < before * 0.7, "validation loss {before} → {after}");
    assert!(report.train_loss_end < report.train_loss_start);
    assert_eq!(report.steps, report.planned_steps);
    assert!(!report.interrupted);

    let adapter = settings.output.join("adapter.gguf");
    let header = GgufFile::open(&adapter).unwrap();
    assert_eq!(header.get_str("adapter.type"), Some("lora"));
    let model = tiny_model();
    crate::llama::LoraAdapter::load(&model, &adapter).unwrap();

    let log = std::fs::read_to_string(settings.output.join("train_log.jsonl")).unwrap();
    let records: Vec<LogRecord> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len() as u64, report.steps);
    assert!(records.iter().filter(|r| r.val_loss.is_some()).count() >= settings.epochs as usize);
    assert!(records.windows(2).all(|w| w[1].step == w[0].step + 1));
    assert!(settings.output.join("loss.png").exists());
}

#[test]
fn a_stopped_run_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    // Straight through 12 steps.
    let straight = FinetuneSettings { max_steps: Some(12), ..settings(dir.path(), "straight") };
    finetune(&straight, &mut Quiet, &AtomicBool::new(false)).unwrap();

    // Stopped by the time budget after the first step (as Ctrl-C would), then resumed.
    let first =
        FinetuneSettings { max_steps: Some(12), max_minutes: Some(0.0), ..settings(dir.path(), "stopped") };
    let report = finetune(&first, &mut Quiet, &AtomicBool::new(false)).unwrap();
    assert!(report.interrupted);
    assert_eq!(report.steps, 1);
    let checkpoint = first.output.join("checkpoint");
    assert!(checkpoint.join("state.json").exists());
    let resumed = FinetuneSettings { resume: Some(checkpoint), max_minutes: None, ..first.clone() };
    let report = finetune(&resumed, &mut Quiet, &AtomicBool::new(false)).unwrap();
    assert_eq!(report.steps, 12);

    let a = tensor_values(&straight.output.join("adapter.gguf"));
    let b = tensor_values(&resumed.output.join("adapter.gguf"));
    let gap = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(gap < 1e-5, "resumed run drifted by {gap}");
    let log = std::fs::read_to_string(resumed.output.join("train_log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 12, "one log line per step across the stop");

    // A checkpoint of other settings is refused.
    let other = FinetuneSettings { ctx: 512, ..resumed };
    assert!(matches!(finetune(&other, &mut Quiet, &AtomicBool::new(false)), Err(TrainError::Settings(_))));
}

#[test]
fn accumulated_steps_take_several_windows_and_resume_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let base =
        FinetuneSettings { max_steps: Some(4), grad_accumulation: 3, ..settings(dir.path(), "straight") };
    let report = finetune(&base, &mut Quiet, &AtomicBool::new(false)).unwrap();
    assert_eq!(report.steps, 4);
    let log = std::fs::read_to_string(base.output.join("train_log.jsonl")).unwrap();
    let records: Vec<LogRecord> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), 4, "one log line per optimizer step");
    for r in &records {
        let windows = r.epoch * report.windows_per_epoch as f64;
        assert!((windows - 3.0 * r.step as f64).abs() < 1e-9, "step {} after {windows} windows", r.step);
    }

    // Stopped after the first step, then resumed: the same adapter as straight through.
    let stopped = FinetuneSettings { max_minutes: Some(0.0), ..base.clone() };
    let stopped = FinetuneSettings { output: dir.path().join("stopped"), ..stopped };
    let first = finetune(&stopped, &mut Quiet, &AtomicBool::new(false)).unwrap();
    assert_eq!(first.steps, 1);
    let checkpoint = stopped.output.join("checkpoint");
    let resumed = FinetuneSettings { resume: Some(checkpoint.clone()), max_minutes: None, ..stopped.clone() };
    finetune(&resumed, &mut Quiet, &AtomicBool::new(false)).unwrap();
    let a = tensor_values(&base.output.join("adapter.gguf"));
    let b = tensor_values(&resumed.output.join("adapter.gguf"));
    let gap = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(gap < 1e-5, "resumed run drifted by {gap}");

    // One window per step moves the adapter differently over the same four steps.
    let single = FinetuneSettings { grad_accumulation: 1, output: dir.path().join("single"), ..base.clone() };
    finetune(&single, &mut Quiet, &AtomicBool::new(false)).unwrap();
    let c = tensor_values(&single.output.join("adapter.gguf"));
    assert!(a.iter().zip(&c).any(|(x, y)| (x - y).abs() > 1e-4));

    // A checkpoint made with another accumulation is refused.
    let other = FinetuneSettings { grad_accumulation: 2, ..resumed };
    assert!(matches!(finetune(&other, &mut Quiet, &AtomicBool::new(false)), Err(TrainError::Settings(_))));
}
