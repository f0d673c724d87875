//! Helpers shared by unit tests.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::gguf::{TinyModelSpec, write_tiny_model};

/// One tiny random llama model per test process, in a folder that lives as long as it.
pub fn tiny_model_path() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = DIR.get_or_init(|| tempfile::tempdir().unwrap());
        let path = dir.path().join("tiny.gguf");
        write_tiny_model(&path, &TinyModelSpec::default()).unwrap();
        path
    })
}
