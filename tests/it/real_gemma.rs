//! Tests on the second real model, Gemma 3 270M (base, Q4_K_M: Q4_K, Q5_0, Q6_K and Q8_0
//! tensors, no chat template, a 262,144-token vocabulary, sliding-window attention), which
//! `scripts/fetch-model.sh gemma3` fetches (Gemma Terms of Use). Ignored by a plain
//! `cargo test`; the README's test command runs them.

use std::path::{Path, PathBuf};

use crate::{medllm, stderr_of};

/// Where `scripts/fetch-model.sh gemma3` puts the model; `MEDLLM_TEST_GEMMA` overrides.
fn gemma() -> PathBuf {
    if let Some(path) = std::env::var_os("MEDLLM_TEST_GEMMA") {
        return PathBuf::from(path);
    }
    let models = std::env::var_os("MEDLLM_MODELS").map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
        home.join(".cache/medllm/models")
    });
    let path = models.join("gemma-3-270m-q4_k_m.gguf");
    assert!(path.is_file(), "{} is missing: run scripts/fetch-model.sh gemma3 first", path.display());
    path
}

const NOTE: &str = "the model has no chat template";

fn run(args: &[&std::ffi::OsStr]) -> std::process::Output {
    let output = medllm().args(args).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{args:?}: {}", stderr_of(&output));
    output
}

fn os(s: &str) -> &std::ffi::OsStr {
    s.as_ref()
}

#[test]
#[ignore = "needs Gemma 3 (scripts/fetch-model.sh gemma3); run by scripts/test.sh"]
fn gemma3_answers_in_plain_text_with_one_note() {
    let output = medllm()
        .args(["generate", "--temp", "0", "-n", "4", "-t", "2", "-m"])
        .arg(gemma())
        .args(["-p", "Question: What is the capital of France?\nAnswer:"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert_eq!(stderr_of(&output).matches(NOTE).count(), 1, "{}", stderr_of(&output));
    let answer = String::from_utf8(output.stdout).unwrap();
    assert!(answer.contains("Paris"), "answer: {answer:?}");
}

#[test]
#[ignore = "needs Gemma 3 (scripts/fetch-model.sh gemma3); run by scripts/test.sh"]
fn gemma3_extracts_valid_records_with_exact_grounding() {
    let text = "Clinic note. 62-year-old female with a three-day history of productive cough and fever. \
                Former smoker. Assessment: community-acquired pneumonia.";
    let output = medllm()
        .args(["extract", "--schema", "clinic_note", "--extractive", "-t", "2", "-m"])
        .arg(gemma())
        .write_stdin(text)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let record: medllm::extract::ExtractionRecord = serde_json::from_slice(&output.stdout).unwrap();
    assert!(record.valid, "{:?}", record.error);
    let data = record.data.clone().unwrap();
    assert_eq!(data["patient_age"], 62, "{data}");
    assert_eq!(data["sex"], "female", "{data}");
    // --extractive: free strings are copied from the note, so they are grounded, each span
    // the note's own characters (strings under a pattern, such as a blood pressure, are not
    // free and may stay ungrounded).
    let json = serde_json::to_value(&record).unwrap();
    let spans = json["grounding"].as_array().unwrap();
    assert!(!spans.is_empty(), "{json}");
    let chars: Vec<char> = text.chars().collect();
    for span in spans {
        assert_eq!(span["match"], "exact", "{span}");
        let (start, end) = (span["start"].as_u64().unwrap() as usize, span["end"].as_u64().unwrap() as usize);
        let source: String = chars[start..end].iter().collect();
        assert_eq!(source, span["text"].as_str().unwrap(), "{span}");
    }
}

/// Six copies of one conversation in `medllm prepare`'s chat format: every window holds the
/// same text, so the loss of successive steps falls unless training is broken.
fn repeated_chat(path: &Path) {
    let line = serde_json::json!({"messages": [
        {"role": "system", "content": "You extract the main diagnosis."},
        {"role": "user", "content": "Discharge summary: 72-year-old woman admitted with decompensated heart failure, treated with furosemide."},
        {"role": "assistant", "content": "{\"diagnosis\": \"heart failure\"}"}]});
    std::fs::write(path, format!("{line}\n").repeat(6)).unwrap();
}

/// Training losses of a run, step by step.
fn losses(run_dir: &Path) -> Vec<f64> {
    std::fs::read_to_string(run_dir.join("train_log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].as_f64().unwrap())
        .collect()
}

/// Logits at every position of `prompt` from the model at `path`, with `adapter` attached.
fn logits(path: &Path, adapter: Option<&Path>, prompt: &str) -> Vec<f32> {
    use medllm::llama::{Batch, Context, ContextParams, LoraAdapter, Model, ModelParams};
    let model = Model::load(path, &ModelParams::default()).unwrap();
    let adapter = adapter.map(|a| LoraAdapter::load(&model, a).unwrap());
    let params = ContextParams { n_ctx: 64, n_batch: 64, n_ubatch: 64, ..Default::default() };
    let mut ctx = Context::new(&model, &params).unwrap();
    if let Some(adapter) = &adapter {
        ctx.set_adapters(&[(adapter, 1.0)]).unwrap();
    }
    let tokens = model.tokenize(prompt, true, false).unwrap();
    let mut batch = Batch::new(64, 1);
    for (pos, token) in tokens.iter().enumerate() {
        batch.add(*token, pos as i32, &[0], true).unwrap();
    }
    ctx.decode(&batch).unwrap();
    (0..tokens.len()).flat_map(|i| ctx.logits(i).unwrap().to_vec()).collect()
}

fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// The chain on Gemma 3: LoRA on chat data with the Gemma template (loss falling), merged into
/// the mixed-type tensors (agreeing with the adapter at run time), quantized, its quality
/// measured against the base, and packaged for Ollama with the Gemma template.
#[test]
#[ignore = "needs Gemma 3 (scripts/fetch-model.sh gemma3); run by scripts/test.sh"]
fn gemma3_chat_lora_trains_merges_quantizes_and_packages() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    let base = gemma();
    repeated_chat(&p("train.jsonl"));
    let output = run(&[
        os("finetune"),
        os("-m"),
        base.as_os_str(),
        os("--train"),
        p("train.jsonl").as_os_str(),
        os("--chat-template"),
        os("gemma"),
        os("-o"),
        p("lora").as_os_str(),
        os("-c"),
        os("256"),
        os("--lr"),
        os("1e-3"),
        os("--warmup"),
        os("0"),
        os("-t"),
        os("2"),
    ]);
    assert!(!stderr_of(&output).contains(NOTE), "a chosen template needs no note");
    let loss = losses(&p("lora"));
    assert_eq!(loss.len(), 2, "six conversations pack into two windows: {loss:?}");
    assert!(loss[1] < loss[0] * 0.9, "the loss falls on repeated data: {loss:?}");

    // Merged into the F32 model (the base dequantized), the adapter gives the logits it
    // gives at run time, to float rounding. Merged into the Q4_K/Q5_0/Q6_K/Q8_0 tensors,
    // each tensor is re-quantised to its own type, byte for byte what quantizing the F32
    // merge gives: the only gap to the run-time adapter is that rounding, which for a
    // two-step adapter (changes below a quantization step) is most of its effect.
    run(&[os("quantize"), base.as_os_str(), p("f32.gguf").as_os_str(), os("--type"), os("f32"), os("-q")]);
    let merge = |into: &Path, out: &str| {
        run(&[
            os("lora"),
            os("merge"),
            os("--base"),
            into.as_os_str(),
            os("--adapter"),
            p("lora/adapter.gguf").as_os_str(),
            os("-o"),
            p(out).as_os_str(),
            os("-q"),
        ])
    };
    merge(&p("f32.gguf"), "merged-f32.gguf");
    merge(&base, "merged.gguf");
    let prompt = "<start_of_turn>user\nYou extract the main diagnosis.\n\nDischarge summary: 72-year-old woman admitted with decompensated heart failure, treated with furosemide.<end_of_turn>\n<start_of_turn>model\n";
    let before = logits(&p("f32.gguf"), None, prompt);
    let runtime = logits(&p("f32.gguf"), Some(&p("lora/adapter.gguf")), prompt);
    let merged = logits(&p("merged-f32.gguf"), None, prompt);
    let effect = max_difference(&before, &runtime);
    let gap = max_difference(&merged, &runtime);
    assert!(effect > 1.0, "two steps change the logits: by {effect}");
    assert!(gap < 0.02 * effect, "merged F32 differs from the run-time adapter by {gap} (effect {effect})");

    run(&[
        os("quantize"),
        p("merged-f32.gguf").as_os_str(),
        p("merged-f32-q4km.gguf").as_os_str(),
        os("--type"),
        os("q4_k_m"),
        os("-q"),
    ]);
    let direct = medllm::gguf::GgufFile::open(&p("merged.gguf")).unwrap();
    let via_f32 = medllm::gguf::GgufFile::open(&p("merged-f32-q4km.gguf")).unwrap();
    let original = medllm::gguf::GgufFile::open(&base).unwrap();
    assert!(direct.tensors.iter().zip(&original.tensors).all(|(a, b)| a.ggml_type == b.ggml_type));
    let adapted: Vec<_> =
        direct.tensors.iter().filter(|t| t.name.starts_with("blk.") && t.dims.len() == 2).collect();
    assert_eq!(adapted.len(), 18 * 7, "seven linear kinds in 18 blocks");
    for tensor in adapted {
        assert_eq!(
            direct.read_tensor_data(&tensor.name).unwrap(),
            via_f32.read_tensor_data(&tensor.name).unwrap(),
            "{}",
            tensor.name
        );
    }

    std::fs::write(p("text.txt"), "Discharge summary. The patient is a 72-year-old woman admitted with decompensated heart failure. She was treated with intravenous furosemide and discharged home on day four with a follow-up in the heart failure clinic.\n".repeat(3)).unwrap();
    let output = run(&[
        os("quality"),
        os("--ref"),
        p("merged-f32.gguf").as_os_str(),
        p("merged.gguf").as_os_str(),
        os("--text"),
        p("text.txt").as_os_str(),
        os("--json"),
        os("-t"),
        os("2"),
    ]);
    let quality: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let kl = quality["kl_divergence"]["mean"].as_f64().unwrap();
    assert!(kl.is_finite() && kl > 0.0 && kl < 0.2, "Q4_K_M of the merge stays near its F32: {quality}");

    run(&[
        os("ollama"),
        os("package"),
        p("merged.gguf").as_os_str(),
        os("--name"),
        os("medllm/gemma3-lora:270m"),
        os("--chat-template"),
        os("gemma"),
        os("-o"),
        p("ollama").as_os_str(),
        os("-q"),
    ]);
    let modelfile = std::fs::read_to_string(p("ollama/Modelfile")).unwrap();
    assert!(modelfile.contains(medllm::ollama::ChatFamily::Gemma.go_template()), "{modelfile}");
    assert!(modelfile.contains("PARAMETER stop <end_of_turn>"), "{modelfile}");
}

#[test]
#[ignore = "needs Gemma 3 (scripts/fetch-model.sh gemma3); run by scripts/test.sh"]
fn gemma3_trains_on_plain_text_and_fully_for_a_step() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    let base = gemma();
    std::fs::write(p("text.txt"), "Discharge summary. The patient was admitted with decompensated heart failure and treated with furosemide. ".repeat(40)).unwrap();
    let common = |out: &str| -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> =
            ["finetune", "--text", "-c", "256", "-t", "2", "--warmup", "0"].iter().map(Into::into).collect();
        args.extend(["-m".into(), base.clone().into_os_string()]);
        args.extend(["--train".into(), p("text.txt").into_os_string(), "-o".into(), p(out).into_os_string()]);
        args
    };
    let mut lora = common("lora");
    lora.extend(["--max-steps", "3", "--lr", "1e-3"].map(Into::into));
    let refs: Vec<&std::ffi::OsStr> = lora.iter().map(|a| a.as_os_str()).collect();
    run(&refs);
    let loss = losses(&p("lora"));
    assert_eq!(loss.len(), 3);
    assert!(loss[2] < loss[0], "the loss falls on repeated text: {loss:?}");

    // Full fine-tuning dequantizes the base to F32 and trains every weight for one step.
    let mut full = common("full");
    full.extend(["--full", "--max-steps", "1", "--lr", "1e-5"].map(Into::into));
    let refs: Vec<&std::ffi::OsStr> = full.iter().map(|a| a.as_os_str()).collect();
    run(&refs);
    assert_eq!(losses(&p("full")).len(), 1);
    let trained = medllm::gguf::GgufFile::open(&p("full/model.gguf")).unwrap();
    assert_eq!(trained.architecture(), Some("gemma3"));
    assert!(trained.tensors.iter().all(|t| t.ggml_type == medllm::gguf::GgmlType::F32));
}
