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
