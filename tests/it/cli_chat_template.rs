//! `--chat-template` and the one rule for a model without a chat template, the same in every
//! command that builds prompts; Ollama's habits for such a model and for `create NAME`.

use std::path::{Path, PathBuf};

use medllm::gguf::{TinyModelSpec, write_tiny_model};

use crate::{medllm, stderr_of, tiny_model};

const NOTE: &str = "the model has no chat template";

/// The tiny model without `tokenizer.chat_template`, as base models come.
fn bare_model(dir: &Path) -> PathBuf {
    let path = dir.join("bare.gguf");
    write_tiny_model(&path, &TinyModelSpec { chat_template: false, ..Default::default() }).unwrap();
    path
}

fn generate(model: &Path, extra: &[&str]) -> std::process::Output {
    medllm()
        .args(["generate", "-p", "the patient", "--temp", "0", "-n", "8", "-m"])
        .arg(model)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn generate_on_a_bare_model_uses_plain_text_with_one_note() {
    let dir = tempfile::tempdir().unwrap();
    let bare = bare_model(dir.path());
    let default = generate(&bare, &[]);
    assert_eq!(default.status.code(), Some(0), "{}", stderr_of(&default));
    assert_eq!(stderr_of(&default).matches(NOTE).count(), 1, "{}", stderr_of(&default));
    let plain = generate(&bare, &["--chat-template", "none"]);
    assert_eq!(plain.status.code(), Some(0), "{}", stderr_of(&plain));
    assert!(!stderr_of(&plain).contains(NOTE), "a chosen format needs no note");
    assert_eq!(default.stdout, plain.stdout, "the default for a bare model is plain text");
}

#[test]
fn a_named_template_renders_as_the_models_own_of_that_family() {
    // The tiny model's own template is ChatML: `--chat-template chatml` on the bare copy
    // must lay the prompt out the same, so the same tokens come out.
    let dir = tempfile::tempdir().unwrap();
    let bare = bare_model(dir.path());
    let own = generate(tiny_model(), &[]);
    let named = generate(&bare, &["--chat-template", "chatml"]);
    assert_eq!(own.status.code(), Some(0), "{}", stderr_of(&own));
    assert_eq!(named.status.code(), Some(0), "{}", stderr_of(&named));
    assert_eq!(own.stdout, named.stdout);
    let plain = generate(tiny_model(), &["--chat-template", "none"]);
    assert_ne!(own.stdout, plain.stdout, "the choice overrides the model's own template");

    let file = dir.path().join("chatml.jinja");
    std::fs::write(&file, "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}").unwrap();
    let from_file = generate(&bare, &["--chat-template", file.to_str().unwrap()]);
    assert_eq!(from_file.status.code(), Some(0), "{}", stderr_of(&from_file));
    assert_eq!(own.stdout, from_file.stdout, "a Jinja file of the family renders the same");
}

#[test]
fn an_unknown_template_name_is_a_usage_error_listing_the_names() {
    let output = generate(tiny_model(), &["--chat-template", "nosuch"]);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr_of(&output);
    assert!(err.contains("chatml, llama3, gemma, mistral, phi3, none"), "{err}");
    let output = generate(tiny_model(), &["--chat-template", "gemma", "--raw"]);
    assert_eq!(output.status.code(), Some(2), "--raw and --chat-template conflict");
}

#[test]
fn extract_on_a_bare_model_notes_once_for_many_documents() {
    let dir = tempfile::tempdir().unwrap();
    let bare = bare_model(dir.path());
    let input = dir.path().join("notes.jsonl");
    let lines: Vec<String> =
        (0..3).map(|i| format!("{{\"id\": \"n{i}\", \"text\": \"{i} year old male with pain\"}}")).collect();
    std::fs::write(&input, lines.join("\n")).unwrap();
    let output = medllm()
        .args(["extract", "--schema", "clinic_note", "--max-tokens", "64", "-m"])
        .arg(&bare)
        .arg(&input)
        .output()
        .unwrap();
    let err = stderr_of(&output);
    assert!(matches!(output.status.code(), Some(0 | 1)), "{err}");
    assert_eq!(err.matches(NOTE).count(), 1, "{err}");
    assert_eq!(String::from_utf8(output.stdout).unwrap().lines().count(), 3, "a record per document");
}

/// Chat lines in `medllm prepare`'s format, `n` of them.
fn chat_lines(path: &Path, n: usize) {
    let mut lines = String::new();
    for i in 0..n {
        let example = serde_json::json!({"messages": [
            {"role": "system", "content": "You answer briefly."},
            {"role": "user", "content": format!("What dose of aspirin does patient {i} take?")},
            {"role": "assistant", "content": "The patient takes aspirin 81 mg daily."}]});
        lines.push_str(&format!("{example}\n"));
    }
    std::fs::write(path, lines).unwrap();
}

fn finetune(model: &Path, train: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    medllm()
        .args(["finetune", "-m"])
        .arg(model)
        .arg("--train")
        .arg(train)
        .arg("-o")
        .arg(out)
        .args(["-c", "256", "--lora-rank", "4", "--max-steps", "2", "-t", "2"])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn finetune_on_a_bare_model_trains_chat_data_with_one_note() {
    // Before: every line was refused with its own note, then the run failed.
    let dir = tempfile::tempdir().unwrap();
    let bare = bare_model(dir.path());
    let train = dir.path().join("train.jsonl");
    chat_lines(&train, 30);
    let output = finetune(&bare, &train, &dir.path().join("plain"), &[]);
    let err = stderr_of(&output);
    assert_eq!(output.status.code(), Some(0), "{err}");
    assert_eq!(err.matches(NOTE).count(), 1, "{err}");
    assert!(dir.path().join("plain/adapter.gguf").is_file());
    let named = finetune(&bare, &train, &dir.path().join("gemma"), &["--chat-template", "gemma"]);
    let err = stderr_of(&named);
    assert_eq!(named.status.code(), Some(0), "{err}");
    assert!(!err.contains(NOTE), "{err}");
}

#[test]
fn finetune_notes_a_repeated_bad_line_once_with_a_count() {
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("train.jsonl");
    chat_lines(&train, 10);
    let mut text = std::fs::read_to_string(&train).unwrap();
    for _ in 0..25 {
        text.push_str("{\"messages\": [{\"role\": \"user\", \"content\": \"no answer\"}]}\n");
    }
    std::fs::write(&train, text).unwrap();
    let output = finetune(tiny_model(), &train, &dir.path().join("run"), &[]);
    let err = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "some lines failed: {err}");
    assert_eq!(err.matches("no assistant message to learn").count(), 1, "{err}");
    assert!(err.contains("25 lines (first: line 11)"), "{err}");
}

#[test]
fn finetune_refuses_an_untrainable_architecture_naming_it_and_the_op() {
    // stablelm's LayerNorm has no backward pass in llama.cpp: a clear error, no abort.
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("stablelm.gguf");
    write_tiny_model(&model, &TinyModelSpec { architecture: "stablelm".into(), ..Default::default() })
        .unwrap();
    let train = dir.path().join("train.jsonl");
    chat_lines(&train, 10);
    let output = finetune(&model, &train, &dir.path().join("run"), &[]);
    let err = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(err.contains("architecture stablelm cannot be trained"), "{err}");
    assert!(err.contains("NORM"), "{err}");
    assert!(!dir.path().join("run/adapter.gguf").exists());
}

#[test]
fn prepare_counts_tokens_in_the_chosen_template_and_needs_a_model_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let synth = medllm()
        .args(["synth", "-q", "--n", "6", "--seed", "1", "-o"])
        .arg(dir.path().join("synth"))
        .output()
        .unwrap();
    assert_eq!(synth.status.code(), Some(0), "{}", stderr_of(&synth));
    let input = dir.path().join("synth/documents.jsonl");
    let mean_tokens = |extra: &[&str], out: &str| -> f64 {
        let output = medllm()
            .args(["prepare", "-q", "--date-shift-seed", "1", "-m"])
            .arg(tiny_model())
            .args(extra)
            .arg("-o")
            .arg(dir.path().join(out))
            .arg(&input)
            .output()
            .unwrap();
        // 1: near-duplicate notes are rejected (and counted); the rest are prepared.
        assert!(matches!(output.status.code(), Some(0 | 1)), "{}", stderr_of(&output));
        let card: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join(out).join("data_card.json")).unwrap())
                .unwrap();
        let lengths = card["token_lengths"].as_object().unwrap();
        assert!(!lengths.is_empty(), "{card}");
        lengths.values().map(|s| s["mean"].as_f64().unwrap()).sum()
    };
    // ChatML markup (the tiny model's own) adds tokens that plain text does not have.
    let own = mean_tokens(&[], "own");
    let plain = mean_tokens(&["--chat-template", "none"], "plain");
    let chatml = mean_tokens(&["--chat-template", "chatml"], "chatml");
    assert!(own > plain, "own {own}, plain {plain}");
    assert_eq!(own, chatml);

    let output = medllm()
        .args(["prepare", "--chat-template", "gemma", "-o"])
        .arg(dir.path().join("out"))
        .arg(&input)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr_of(&output).contains("--model"), "{}", stderr_of(&output));
}

#[test]
fn ollama_gives_a_bare_model_its_default_template_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let bare = bare_model(dir.path());
    let out = dir.path().join("pkg");
    let output = medllm()
        .args(["ollama", "package"])
        .arg(&bare)
        .args(["--name", "clinic/bare:1", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    let err = stderr_of(&output);
    assert_eq!(output.status.code(), Some(0), "{err}");
    assert_eq!(err.matches("Ollama's default template").count(), 1, "{err}");
    let modelfile = std::fs::read_to_string(out.join("Modelfile")).unwrap();
    assert!(modelfile.contains("TEMPLATE \"\"\"{{ .Prompt }}\"\"\""), "{modelfile}");

    let named = dir.path().join("named");
    let output = medllm()
        .args(["ollama", "package"])
        .arg(&bare)
        .args(["--name", "clinic/bare:gemma", "--chat-template", "gemma", "-o"])
        .arg(&named)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let modelfile = std::fs::read_to_string(named.join("Modelfile")).unwrap();
    assert!(modelfile.contains("<start_of_turn>model"), "{modelfile}");
    assert!(modelfile.contains("PARAMETER stop <end_of_turn>"), "{modelfile}");
}

#[test]
fn ollama_create_takes_the_name_as_ollama_does() {
    let dir = tempfile::tempdir().unwrap();
    let modelfile = dir.path().join("Modelfile");
    std::fs::write(&modelfile, format!("FROM {}\n", tiny_model().display())).unwrap();
    let store = dir.path().join("store");
    let create = |name_args: &[&str]| {
        medllm()
            .args(["ollama", "create"])
            .args(name_args)
            .arg("-f")
            .arg(&modelfile)
            .arg("--store")
            .arg(&store)
            .output()
            .unwrap()
    };
    let positional = create(&["clinic/tiny:pos"]);
    assert_eq!(positional.status.code(), Some(0), "{}", stderr_of(&positional));
    let manifest =
        |tag: &str| store.join("manifests").join(medllm::ollama::DEFAULT_HOST).join("clinic/tiny").join(tag);
    assert!(manifest("pos").is_file());
    let flag = create(&["--name", "clinic/tiny:flag"]);
    assert_eq!(flag.status.code(), Some(0), "{}", stderr_of(&flag));
    assert!(manifest("flag").is_file());
    let both = create(&["clinic/tiny:a", "--name", "clinic/tiny:b"]);
    assert_eq!(both.status.code(), Some(2), "one name, not two");
    let neither = create(&[]);
    assert_eq!(neither.status.code(), Some(2));
}

#[test]
fn eval_mcq_choice_on_a_bare_model_notes_once_and_a_named_template_answers_as_the_own() {
    let dir = tempfile::tempdir().unwrap();
    let bare = bare_model(dir.path());
    let questions = dir.path().join("q.jsonl");
    let lines: Vec<String> = (0..6)
        .map(|i| format!(r#"{{"id":"q{i}","question":"Which drug is a statin, case {i}?","options":{{"A":"atorvastatin","B":"aspirin"}},"answer_idx":"A"}}"#))
        .collect();
    std::fs::write(&questions, lines.join("\n")).unwrap();
    let mcq = |model: &Path, extra: &[&str]| {
        let answers = dir.path().join("answers.jsonl");
        let output = medllm()
            .args(["eval", "mcq", "--method", "choice", "-t", "1", "-m"])
            .arg(model)
            .arg("--questions")
            .arg(&questions)
            .arg("--answers")
            .arg(&answers)
            .args(extra)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
        (stderr_of(&output), std::fs::read_to_string(&answers).unwrap())
    };
    let (err, _) = mcq(&bare, &[]);
    assert_eq!(err.matches(NOTE).count(), 1, "one note for six questions: {err}");
    let (_, own) = mcq(tiny_model(), &[]);
    let (err, named) = mcq(&bare, &["--chat-template", "chatml"]);
    assert!(!err.contains(NOTE), "{err}");
    assert_eq!(own, named, "the same prompts give the same answers");
}
