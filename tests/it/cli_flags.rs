//! Numbers on the command line are checked when it is parsed, before anything loads;
//! training that goes non-finite stops; errors name each cause once.

use crate::{medllm, stderr_of, tiny_model};

/// Runs `args` and checks that clap refused the value of `flag` (exit 2, before any file is
/// opened: the model paths given do not exist).
fn refused(args: &[&str], flag: &str) {
    let output = medllm().args(args).output().unwrap();
    let err = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2), "{args:?}: {err}");
    assert!(err.contains("invalid value") && err.contains(flag), "{args:?}: {err}");
}

#[test]
fn non_finite_and_out_of_range_numbers_are_refused_at_parse_time() {
    let train = ["finetune", "-m", "/no/base.gguf", "--train", "/no/t.jsonl", "-o", "/no/out"];
    for (value, flag) in [
        (&["--lr", "0"][..], "--lr"),
        (&["--lr=-1"], "--lr"),
        (&["--lr", "nan"], "--lr"),
        (&["--lr", "inf"], "--lr"),
        (&["--weight-decay", "nan"], "--weight-decay"),
        (&["--weight-decay", "2"], "--weight-decay"),
        (&["--lora-alpha", "nan"], "--lora-alpha"),
        (&["--lora-rank", "0"], "--lora-rank"),
        (&["--max-minutes=-5"], "--max-minutes"),
        (&["-t", "0"], "--threads"),
    ] {
        refused(&[&train[..], value].concat(), flag);
    }
    let generate = ["generate", "-m", "/no/model.gguf", "-p", "hi"];
    for (value, flag) in [
        (&["--temperature", "nan"][..], "--temperature"),
        (&["--temperature=-1"], "--temperature"),
        (&["--top-p", "1.5"], "--top-p"),
        (&["--min-p", "nan"], "--min-p"),
        (&["--repeat-penalty", "0"], "--repeat-penalty"),
        (&["--presence-penalty", "inf"], "--presence-penalty"),
        (&["--lora", "a.gguf:nan"], "--lora"),
        (&["-c", "0"], "--ctx"),
        (&["-n", "0"], "--max-tokens"),
    ] {
        refused(&[&generate[..], value].concat(), flag);
    }
    let extract = ["extract", "-m", "/no/model.gguf", "--schema", "lab_report"];
    for (value, flag) in [
        (&["--fuzzy-threshold", "7"][..], "--fuzzy-threshold"),
        (&["--temperature", "nan"], "--temperature"),
        (&["-P", "0"], "--parallel"),
    ] {
        refused(&[&extract[..], value].concat(), flag);
    }
    refused(&["synth", "-o", "/no/corpus", "--duplicate-rate", "nan"], "--duplicate-rate");
    refused(&["prepare", "/no/in", "-o", "/no/out", "--near-duplicate", "1.5"], "--near-duplicate");
    refused(&["quality", "--ref", "/no/a.gguf", "/no/b.gguf", "--text", "/no/t", "-c", "2"], "--ctx");
    refused(
        &["lora", "merge", "--base", "/no/b.gguf", "--adapter", "/no/a.gguf:inf", "-o", "/no/m"],
        "--adapter",
    );
}

#[test]
fn a_context_too_small_to_score_says_so_and_names_the_minimum() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("text.txt");
    std::fs::write(&text, "the patient was seen today with chest pain and given aspirin daily").unwrap();
    let output = medllm()
        .args(["eval", "perplexity", "-c", "2", "-m"])
        .arg(tiny_model())
        .arg("--text")
        .arg(&text)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let err = stderr_of(&output);
    assert!(err.contains("context of 2 tokens is too small") && err.contains("--ctx 4 or more"), "{err}");
    let output = medllm()
        .args(["quality", "-c", "3", "--ref"])
        .arg(tiny_model())
        .arg(tiny_model())
        .arg("--text")
        .arg(&text)
        .output()
        .unwrap();
    let err = stderr_of(&output);
    assert!(err.contains("too small") && err.contains("at least 4 tokens"), "{err}");
}

#[test]
fn training_that_goes_non_finite_stops_and_keeps_the_last_finite_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("train.jsonl");
    let mut lines = String::new();
    for i in 0..20 {
        let example = serde_json::json!({"messages": [
            {"role": "user", "content": format!("What dose of aspirin does patient {i} take?")},
            {"role": "assistant", "content": "The patient takes aspirin 81 mg daily."}]});
        lines.push_str(&format!("{example}\n"));
    }
    std::fs::write(&train, lines).unwrap();
    let out = dir.path().join("run");
    // A learning rate this high overflows the weights after the first update.
    let output = medllm()
        .args(["finetune", "-q", "-m"])
        .arg(tiny_model())
        .arg("--train")
        .arg(&train)
        .arg("-o")
        .arg(&out)
        .args(["-c", "256", "--lora-rank", "4", "--lr", "1e30", "--warmup", "0", "--schedule", "constant"])
        .args(["--max-steps", "6", "--checkpoint-every", "1", "-t", "2"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let err = stderr_of(&output);
    assert!(err.contains("non-finite at step"), "{err}");
    assert!(err.contains("--resume"), "names the checkpoint to continue from: {err}");
    assert!(!out.join("adapter.gguf").exists(), "nothing written from non-finite weights");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("checkpoint/state.json")).unwrap()).unwrap();
    let kept = state["step"].as_u64().unwrap();
    assert!(err.contains(&format!("(step {kept})")), "{err}");
    let log = std::fs::read_to_string(out.join("train_log.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert!(last["step"].as_u64().unwrap() > kept, "the log shows the step that went wrong: {log}");
}

#[test]
fn errors_name_each_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.gguf");
    let missing = missing.to_str().unwrap();
    let tiny = tiny_model().to_str().unwrap();
    let out = dir.path().join("out.gguf");
    let out = out.to_str().unwrap();
    for args in [
        vec!["info", missing],
        vec!["diff", tiny, missing],
        vec!["quantize", missing, out, "--type", "q8_0"],
        vec!["lora", "merge", "--base", tiny, "--adapter", missing, "-o", out],
        vec!["lora", "convert", "--peft", missing, "--base", tiny, "-o", out],
        vec!["generate", "-m", tiny, "--lora", missing, "-p", "hi"],
        vec!["eval", "perplexity", "-m", tiny, "--text", missing],
        vec!["quality", "--ref", tiny, missing, "--text", missing],
        vec!["ollama", "create", "--name", "a/b", "-f", missing],
    ] {
        let output = medllm().args(&args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let err = stderr_of(&output);
        assert_eq!(err.matches("os error 2").count(), 1, "{args:?}: {err}");
    }
}
