//! Quantization and what it costs: whole models re-typed through llama.cpp's quantizer,
//! and how closely a model follows a reference (perplexity, KL divergence, top-1 agreement).

mod imatrix;
mod quality;
mod quantize;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use imatrix::read_importance_matrix;
pub(crate) use quality::{ChunkPlan, score_chunks, token_nll};
pub use quality::{
    MIN_CHUNK_TOKENS, QualityReport, QualitySettings, TokenStats, compare_quality, parse_chunk_ctx,
};
pub use quantize::{QuantizeReport, QuantizeSettings, TensorRetype, parse_file_type, quantize};

/// What went wrong quantizing or comparing models.
#[derive(Debug, thiserror::Error)]
pub enum QuantError {
    /// A GGUF file could not be read.
    #[error(transparent)]
    Gguf(#[from] crate::gguf::GgufError),
    /// llama.cpp failed.
    #[error(transparent)]
    Llama(#[from] crate::llama::LlamaError),
    /// The output would replace the input.
    #[error("the output {path} is the input file; write the quantized model to another path")]
    OutputIsInput {
        /// The path given twice.
        path: PathBuf,
    },
    /// An importance matrix file that cannot be used.
    #[error("importance matrix {path}: {reason}")]
    ImportanceMatrix {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Two models that cannot be compared token by token.
    #[error("{0}")]
    Incomparable(String),
    /// The context asked for cannot hold a scorable chunk.
    #[error(
        "the context of {ctx} tokens is too small to score: a chunk needs at least {minimum} tokens (its second half is scored); use --ctx {minimum} or more, 512 is usual"
    )]
    ContextTooSmall {
        /// Tokens asked for.
        ctx: usize,
        /// The smallest that works.
        minimum: usize,
    },
    /// A model's predictions are not numbers: no figure computed from them would mean anything.
    #[error(
        "{model} predicts logits that are not finite numbers (NaN or infinity) at token {position} of the text: its weights are damaged (merged with a NaN adapter?)"
    )]
    NonFiniteLogits {
        /// The model.
        model: PathBuf,
        /// Token position in the text.
        position: usize,
    },
    /// The text to score is too short.
    #[error("the text has {tokens} tokens; at least {needed} are needed (give more text)")]
    TextTooShort {
        /// Tokens in the text.
        tokens: usize,
        /// Tokens needed.
        needed: usize,
    },
    /// Neither an output path nor a dry run.
    #[error("an output path is needed unless this is a dry run")]
    NoOutput,
    /// Writing the output failed (full disk, no permission).
    #[error("cannot write the output")]
    Write(#[from] std::io::Error),
    /// Reading or writing a file failed.
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}
