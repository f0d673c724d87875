//! Integration tests: the real `medllm` binary driven as users run it.
#![allow(missing_docs)]

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
