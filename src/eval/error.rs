//! What can go wrong in evaluation.

use std::path::PathBuf;

/// Errors of the evaluation capability.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A file could not be read or written.
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// llama.cpp failed.
    #[error(transparent)]
    Llama(#[from] crate::llama::LlamaError),
    /// Chunking or scoring failed (e.g. a text too short for perplexity).
    #[error(transparent)]
    Quant(#[from] crate::quant::QuantError),
    /// The decoding engine failed.
    #[error("{0}")]
    Engine(String),
    /// Settings that cannot work together.
    #[error("{0}")]
    Settings(String),
    /// A suite file that cannot be used.
    #[error("suite {path}: {reason}")]
    Suite {
        /// The suite file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A chart could not be drawn.
    #[error("chart {path}: {reason}")]
    Chart {
        /// The PNG file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}
