use std::io::Read;
use std::process::Stdio;

use crate::{medllm, stderr_of, tiny_model};

fn generate(extra: &[&str]) -> std::process::Output {
    medllm().arg("generate").arg("-m").arg(tiny_model()).args(extra).output().unwrap()
}

#[test]
fn generate_produces_tokens_and_greedy_is_repeatable() {
    let args = ["-p", "the patient", "--temp", "0", "-n", "12", "--ctx", "256"];
    let first = generate(&args);
    assert_eq!(first.status.code(), Some(0), "{}", stderr_of(&first));
    assert!(first.stdout.len() > 1, "no text generated");
    assert_eq!(first.stdout, generate(&args).stdout);
    let other = generate(&["-p", "history of pain", "--temp", "0", "-n", "12", "--ctx", "256"]);
    assert_ne!(first.stdout, other.stdout);
}

#[test]
fn seed_makes_sampling_repeatable() {
    let run = |seed: &str| {
        generate(&["-p", "the", "--temp", "1.2", "-n", "16", "--seed", seed, "--top-k", "0"]).stdout
    };
    assert_eq!(run("5"), run("5"));
    assert_ne!(run("5"), run("6"));
}

#[test]
fn verbose_reports_prompt_then_generation_speed() {
    let output = generate(&["-p", "the patient", "-n", "8", "--temp", "0", "--verbose"]);
    assert_eq!(output.status.code(), Some(0));
    let err = stderr_of(&output);
    let pp = err.find("prompt processing:").expect(&err);
    let tg = err.find("generation:").expect(&err);
    assert!(pp < tg && err.contains("tokens/s"), "{err}");
}

#[test]
fn prompt_from_stdin() {
    let from_arg = generate(&["-p", "the patient", "--temp", "0", "-n", "8"]);
    let from_stdin = medllm()
        .arg("generate")
        .arg("-m")
        .arg(tiny_model())
        .args(["-p", "-", "--temp", "0", "-n", "8"])
        .write_stdin("the patient")
        .output()
        .unwrap();
    assert_eq!(from_stdin.status.code(), Some(0), "{}", stderr_of(&from_stdin));
    assert_eq!(from_stdin.stdout, from_arg.stdout);
    let empty = medllm().arg("generate").arg("-m").arg(tiny_model()).write_stdin("  \n").output().unwrap();
    assert_eq!(empty.status.code(), Some(2));
    assert!(stderr_of(&empty).contains("empty"));
}

#[test]
fn raw_mode_skips_the_chat_template() {
    let templated = generate(&["-p", "the patient", "--temp", "0", "-n", "8"]);
    let raw = generate(&["-p", "the patient", "--temp", "0", "-n", "8", "--raw"]);
    assert_eq!(raw.status.code(), Some(0));
    assert_ne!(templated.stdout, raw.stdout);
}

#[test]
fn missing_model_exits_2_naming_it() {
    let output = medllm().args(["generate", "-p", "x", "-m", "/no/such/model.gguf"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr_of(&output).contains("/no/such/model.gguf"));
}

#[test]
fn adapter_of_another_architecture_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other-arch.gguf");
    let spec = medllm::gguf::TinyModelSpec { architecture: "qwen2".into(), ..Default::default() };
    medllm::gguf::write_tiny_model(&other, &spec).unwrap();
    let output = generate(&["-p", "x", "--lora", other.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr_of(&output).contains("not a LoRA adapter"), "{}", stderr_of(&output));
}

/// A model whose weights hold NaN predicts NaN logits; generation from them once printed
/// nothing and exited 0 (issue 16 item 4).
#[test]
fn a_model_with_nan_weights_is_an_error_not_silence() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("nan.gguf");
    crate::write_model_with_nan_weights(&model);
    let output = medllm()
        .arg("generate")
        .arg("-m")
        .arg(&model)
        .args(["-p", "the patient", "-n", "8"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr_of(&output));
    assert!(stderr_of(&output).contains("not numbers (NaN logits)"), "{}", stderr_of(&output));
    assert!(output.stdout.is_empty(), "{:?}", String::from_utf8_lossy(&output.stdout));
}

#[test]
fn closed_pipe_is_not_an_error() {
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("medllm"))
        .arg("generate")
        .arg("-m")
        .arg(tiny_model())
        .args(["-p", "the patient", "-n", "400", "--temp", "1", "--top-k", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 1];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_full_context_is_reported_without_verbose() {
    let output = generate(&[
        "-p",
        "the patient",
        "--raw",
        "--temp",
        "0",
        "--ignore-eos",
        "-n",
        "2000",
        "--ctx",
        "256",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let err = stderr_of(&output);
    assert!(err.contains("the context of 256 tokens is full") && err.contains("raise --ctx"), "{err}");
    // Stopping at -n is what was asked for: nothing to report.
    let output =
        generate(&["-p", "the patient", "--raw", "--temp", "0", "--ignore-eos", "-n", "4", "--ctx", "256"]);
    assert!(!stderr_of(&output).contains("is full"), "{}", stderr_of(&output));
}
