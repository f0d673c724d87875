//! Integration tests: the real `medllm` binary driven as users run it.
#![allow(missing_docs)]

mod cli_chat_template;
mod cli_data;
mod cli_eval;
mod cli_extract;
mod cli_flags;
mod cli_generate;
mod cli_gguf_tools;
mod cli_info;
mod cli_ollama;
mod cli_outputs;
mod docs;
mod model_metadata_fuzz;
mod real_gemma;
mod real_model;
mod repository;
mod serve;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use assert_cmd::Command;

/// The `medllm` binary under test, with logs quiet and no model from the environment.
pub fn medllm() -> Command {
    let mut cmd = Command::cargo_bin("medllm").unwrap();
    cmd.env_remove("MEDLLM_MODEL").env_remove("MEDLLM_LOG");
    cmd
}

/// A tiny random llama model shared by the tests of this process.
pub fn tiny_model() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = DIR.get_or_init(|| tempfile::tempdir().unwrap());
        let path = dir.path().join("tiny.gguf");
        medllm::gguf::write_tiny_model(&path, &medllm::gguf::TinyModelSpec::default()).unwrap();
        path
    })
}

/// Text of a command's stderr.
pub fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A LoRA adapter for the tiny model: rank 2 on `blk.0.attn_q.weight`, of `architecture`,
/// B `n_out` wide (64 fits the tiny model), small random-looking values.
pub fn write_lora_adapter(path: &Path, architecture: &str, n_out: u64) {
    use medllm::gguf::{GgmlType, MetadataValue, TensorSpec, write_gguf};
    let text = |s: &str| MetadataValue::String(s.into());
    let metadata = vec![
        ("general.architecture".to_string(), text(architecture)),
        ("general.type".to_string(), text("adapter")),
        ("adapter.type".to_string(), text("lora")),
        ("adapter.lora.alpha".to_string(), MetadataValue::F32(2.0)),
    ];
    let specs = [("lora_a", vec![64, 2]), ("lora_b", vec![2, n_out])].map(|(half, dims)| TensorSpec {
        name: format!("blk.0.attn_q.weight.{half}"),
        dims,
        ggml_type: GgmlType::F32,
    });
    let mut file = std::fs::File::create(path).unwrap();
    write_gguf(&mut file, &metadata, &specs, |i, out| {
        let n: u64 = specs[i].dims.iter().product();
        let bytes: Vec<u8> = (0..n).flat_map(|k| (0.01 * ((k % 7) as f32 - 3.0)).to_le_bytes()).collect();
        out.write_all(&bytes)
    })
    .unwrap();
}

/// The tiny model with every weight of `output_norm.weight` made NaN, so that every logit is
/// NaN: what merging a NaN adapter used to write.
pub fn write_model_with_nan_weights(path: &Path) {
    use medllm::gguf::{GgmlType, GgufFile, TensorSpec, write_gguf};
    let base = GgufFile::open(tiny_model()).unwrap();
    let specs: Vec<TensorSpec> = base
        .tensors
        .iter()
        .map(|t| TensorSpec { name: t.name.clone(), dims: t.dims.clone(), ggml_type: t.ggml_type })
        .collect();
    let source = base.reopen().unwrap();
    let mut bytes = Vec::new();
    let mut file = std::fs::File::create(path).unwrap();
    write_gguf(&mut file, &base.metadata, &specs, |i, out| {
        let tensor = &base.tensors[i];
        base.read_tensor_data_into(&source, tensor, &mut bytes).map_err(std::io::Error::other)?;
        if tensor.name == "output_norm.weight" {
            assert_eq!(tensor.ggml_type, GgmlType::F32);
            bytes = f32::NAN.to_le_bytes().repeat(bytes.len() / 4);
        }
        out.write_all(&bytes)
    })
    .unwrap();
}
