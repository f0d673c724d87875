//! Tests on the real SmolLM2-135M-Instruct model, which `scripts/fetch-model.sh` fetches.
//! Ignored by a plain `cargo test`; the README's test command runs them.

use std::path::PathBuf;

use crate::{medllm, stderr_of};

/// Where `scripts/fetch-model.sh` puts the model; `MEDLLM_TEST_MODEL` overrides.
pub fn real_model() -> PathBuf {
    if let Some(path) = std::env::var_os("MEDLLM_TEST_MODEL") {
        return PathBuf::from(path);
    }
    let models = std::env::var_os("MEDLLM_MODELS").map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
        home.join(".cache/medllm/models")
    });
    let path = models.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(path.is_file(), "{} is missing: run scripts/fetch-model.sh first", path.display());
    path
}

#[test]
#[ignore = "needs the real model (scripts/fetch-model.sh); run by scripts/test.sh"]
fn smollm2_answers_a_chat_question() {
    let output = medllm()
        .args(["generate", "--temp", "0", "-n", "48", "-m"])
        .arg(real_model())
        .args(["-p", "What is the capital of France? Answer in one word."])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let answer = String::from_utf8(output.stdout).unwrap();
    assert!(answer.contains("Paris"), "answer: {answer}");
}

/// The checks that keep damaged files from aborting llama.cpp must not refuse a real model.
#[test]
#[ignore = "needs the real model (scripts/fetch-model.sh); run by scripts/test.sh"]
fn smollm2_passes_every_load_check() {
    let file = medllm::gguf::GgufFile::open(&real_model()).unwrap();
    for scope in [
        medllm::gguf::LoadScope::Hyperparameters,
        medllm::gguf::LoadScope::Vocabulary,
        medllm::gguf::LoadScope::Everything,
    ] {
        file.check_loadable(scope).unwrap();
    }
}

#[test]
#[ignore = "needs the real model (scripts/fetch-model.sh); run by scripts/test.sh"]
fn smollm2_info_matches_the_published_model() {
    let output = medllm().args(["info", "--json"]).arg(real_model()).output().unwrap();
    let summary: medllm::gguf::ModelSummary = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary.architecture.as_deref(), Some("llama"));
    assert_eq!(summary.vocab_size, Some(49152));
    assert_eq!(summary.context_length, Some(8192));
    assert_eq!(summary.file_type.as_deref(), Some("Q4_1"));
    assert_eq!(summary.parameters, 134_515_008);
}

#[test]
#[ignore = "needs the real model (scripts/fetch-model.sh); run by scripts/test.sh"]
fn smollm2_extracts_age_and_sex_from_short_notes() {
    let notes = [
        (
            "Clinic note. 62-year-old female with a three-day history of productive cough and fever. \
             Former smoker. Assessment: community-acquired pneumonia.",
            62,
            "female",
        ),
        (
            "Progress note: 57 yo M with COPD exacerbation, on prednisone 40 mg daily and azithromycin.",
            57,
            "male",
        ),
    ];
    for (text, age, sex) in notes {
        let output = medllm()
            .args(["extract", "--schema", "clinic_note", "-m"])
            .arg(real_model())
            .write_stdin(text)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
        let record: medllm::extract::ExtractionRecord = serde_json::from_slice(&output.stdout).unwrap();
        assert!(record.valid, "{:?}", record.error);
        let data = record.data.unwrap();
        assert_eq!(data["patient_age"], age, "{data}");
        assert_eq!(data["sex"], sex, "{data}");
    }
}

#[test]
#[ignore = "needs the real model (scripts/fetch-model.sh); run by scripts/test.sh"]
fn smollm2_packages_as_a_135m_q4_1_chatml_ollama_model() {
    let dir = tempfile::tempdir().unwrap();
    let output = medllm()
        .args(["ollama", "package"])
        .arg(real_model())
        .args(["--name", "medllm/smollm2:135m-q4_1", "--json", "-o"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let config: medllm::ollama::ModelConfig = serde_json::from_value(report["config"].clone()).unwrap();
    assert_eq!(config.model_family, "llama");
    assert_eq!(config.model_type, "135M");
    assert_eq!(config.file_type, "Q4_1");
    let modelfile = std::fs::read_to_string(dir.path().join("Modelfile")).unwrap();
    assert!(modelfile.contains("<|im_start|>assistant"), "ChatML template derived:\n{modelfile}");
    assert!(modelfile.contains("PARAMETER stop <|im_end|>"), "{modelfile}");
}

/// Logits at every position of `prompt` from the model at `path`, with `adapter` attached.
fn real_logits(path: &std::path::Path, adapter: Option<&std::path::Path>, prompt: &str) -> Vec<f32> {
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

/// On SmolLM2 (30 blocks, 9 query and 3 key heads of 64): a PEFT adapter on all 210 linear
/// tensors, converted and merged into the F32 model, gives the logits of the F32 model with
/// the adapter at run time; merged into the Q4_1 model it stays Q4_1, each merged tensor
/// exactly what quantizing the F32 merge gives.
#[test]
#[ignore = "needs the real model (scripts/fetch-model.sh); run by scripts/test.sh"]
fn smollm2_merged_adapter_matches_the_run_time_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let q41 = real_model();
    let run = |args: &[String]| {
        let output = medllm().args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{args:?}: {}", stderr_of(&output));
    };
    let f32 = path("f32.gguf");
    run(&["quantize".into(), s(&q41), s(&f32), "--type".into(), "f32".into(), "-q".into()]);
    run(&[
        "dev".into(),
        "peft-adapter".into(),
        "--base".into(),
        s(&f32),
        "-o".into(),
        s(&path("peft")),
        "--rank".into(),
        "8".into(),
        "--magnitude".into(),
        "0.05".into(),
        "-q".into(),
    ]);
    run(&[
        "lora".into(),
        "convert".into(),
        "--peft".into(),
        s(&path("peft")),
        "--base".into(),
        s(&f32),
        "-o".into(),
        s(&path("a.gguf")),
        "-q".into(),
    ]);
    run(&[
        "lora".into(),
        "merge".into(),
        "--base".into(),
        s(&f32),
        "--adapter".into(),
        s(&path("a.gguf")),
        "-o".into(),
        s(&path("m-f32.gguf")),
        "-q".into(),
    ]);
    run(&[
        "lora".into(),
        "merge".into(),
        "--base".into(),
        s(&q41),
        "--adapter".into(),
        s(&path("a.gguf")),
        "-o".into(),
        s(&path("m-q41.gguf")),
        "-q".into(),
    ]);

    let prompt = "Discharge summary: 72-year-old woman with heart failure, on furosemide";
    let base = real_logits(&f32, None, prompt);
    let runtime = real_logits(&f32, Some(&path("a.gguf")), prompt);
    let merged = real_logits(&path("m-f32.gguf"), None, prompt);
    let max_diff = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    let effect = max_diff(&base, &runtime);
    assert!(effect > 0.5, "the adapter must change the logits (by {effect})");
    let diff = max_diff(&merged, &runtime);
    assert!(diff < 0.02 * effect, "merged F32 differs from the run-time adapter by {diff} (effect {effect})");

    // Merging into the Q4_1 model re-quantises exactly as merging at full precision and then
    // quantizing to Q4_1 does: the same tensors, byte for byte.
    run(&[
        "quantize".into(),
        s(&path("m-f32.gguf")),
        s(&path("m-f32-q41.gguf")),
        "--type".into(),
        "q4_1".into(),
        "--pure".into(),
        "-q".into(),
    ]);
    let direct = medllm::gguf::GgufFile::open(&path("m-q41.gguf")).unwrap();
    let via_f32 = medllm::gguf::GgufFile::open(&path("m-f32-q41.gguf")).unwrap();
    let original = medllm::gguf::GgufFile::open(&q41).unwrap();
    let grown = direct.file_size - original.file_size;
    assert!(grown < 1024, "same tensors and sizes, only provenance added: {grown} bytes more");
    assert!(direct.tensors.iter().zip(&original.tensors).all(|(a, b)| a.ggml_type == b.ggml_type));
    let adapted: Vec<_> =
        direct.tensors.iter().filter(|t| t.name.starts_with("blk.") && t.dims.len() == 2).collect();
    assert_eq!(adapted.len(), 210);
    for tensor in adapted {
        assert_eq!(
            direct.read_tensor_data(&tensor.name).unwrap(),
            via_f32.read_tensor_data(&tensor.name).unwrap(),
            "{}",
            tensor.name
        );
    }
}
