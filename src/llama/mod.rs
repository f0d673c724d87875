//! The safe wrapper over medllm's own patched llama.cpp: backend, model, context, batch,
//! sampler, LoRA adapter, chat templates, tokens, quantization. The only `unsafe` code
//! outside llama-sys.
#![allow(unsafe_code)]

mod adapter;
mod backend;
mod batch;
mod chat;
mod chat_template;
mod context;
mod model;
mod opt;
mod quantize;
mod sampler;
mod token;

#[cfg(test)]
mod opt_tests;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use adapter::LoraAdapter;
pub use backend::{exit_now, init_backend, system_info};
pub use batch::Batch;
pub use chat::{ChatMessage, apply_chat_template};
pub use chat_template::{
    BuiltinTemplate, ChatTemplateArg, NO_TEMPLATE_NOTE, PromptFormat, ResolvedTemplate, TemplateOrigin,
    resolve_template, template_names,
};
pub use context::{Context, ContextParams, PerfCounters, default_threads};
pub use model::{Model, ModelParams};
pub use opt::{IGNORED_LABEL, LoraInit, Optimizer, OptimizerStep, Trainable, Trainer, TrainerParams};
pub use quantize::{
    ModelQuantizeParams, TensorConversion, can_dequantize, can_quantize_without_importance, dequantize_rows,
    quantize_model, quantize_rows, rows_are_valid,
};
pub use sampler::{Sampler, SamplingParams};
pub use token::{Token, Utf8Stream};

/// What went wrong in llama.cpp or at its boundary.
#[derive(Debug, thiserror::Error)]
pub enum LlamaError {
    /// The model file does not exist or cannot be read.
    #[error("model file {path} cannot be read: {reason}")]
    ModelUnreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The GGUF header is broken; found before llama.cpp sees the file.
    #[error(transparent)]
    Gguf(#[from] crate::gguf::GgufError),
    /// llama.cpp refused to load the model.
    #[error(
        "llama.cpp could not load the model {path} (unsupported architecture or damaged tensors; run with --verbose for llama.cpp's reason)"
    )]
    ModelLoad {
        /// The file.
        path: PathBuf,
    },
    /// llama.cpp could not create a context (usually too little memory for `--ctx`).
    #[error("llama.cpp could not create a context of {n_ctx} tokens")]
    ContextCreate {
        /// Requested context size.
        n_ctx: u32,
    },
    /// The adapter is not a LoRA adapter for this model.
    #[error("adapter {path} does not fit the model: {reason}")]
    AdapterMismatch {
        /// The adapter file.
        path: PathBuf,
        /// What differs.
        reason: String,
    },
    /// llama.cpp refused the adapter.
    #[error("llama.cpp could not load the adapter {path}")]
    AdapterLoad {
        /// The adapter file.
        path: PathBuf,
    },
    /// A trainable adapter could not be made.
    #[error("cannot create the LoRA adapter: {reason}")]
    LoraInit {
        /// Why.
        reason: String,
    },
    /// llama.cpp could not write a file (adapter, optimizer state).
    #[error("llama.cpp could not write {path}")]
    Save {
        /// The file.
        path: PathBuf,
    },
    /// A training context could not be set up with these parameters.
    #[error("cannot set up training: {reason}")]
    TrainSetup {
        /// Why.
        reason: String,
    },
    /// The model's training graph holds an op that llama.cpp cannot differentiate; found
    /// before any gradient is computed, so nothing has changed.
    #[error(
        "architecture {architecture} cannot be trained here: llama.cpp has no backward pass for {op}; nothing was trained"
    )]
    Untrainable {
        /// `general.architecture`.
        architecture: String,
        /// The op (and variant) and the graph node it was found at.
        op: String,
    },
    /// A training window was refused.
    #[error("training step failed: {reason}")]
    TrainWindow {
        /// Why.
        reason: String,
    },
    /// Attaching adapters to a context failed.
    #[error("llama.cpp could not attach the LoRA adapters to the context")]
    AdapterAttach,
    /// The text could not be tokenised.
    #[error("tokenization failed: {0}")]
    Tokenize(String),
    /// The model computed NaN logits: its weights hold NaN (a NaN adapter merged in, or a
    /// damaged file), and any token a sampler picked from them would be arbitrary.
    #[error(
        "the model's predictions are not numbers (NaN logits): its weights are damaged (merged with a NaN adapter?); nothing was generated from them"
    )]
    NanLogits,
    /// The context asked for does not fit in 32 bits of tokens.
    #[error("--ctx {ctx_per_sequence} × {sequences} sequences is too large")]
    ContextTooLarge {
        /// Tokens per sequence.
        ctx_per_sequence: u32,
        /// Sequences.
        sequences: u32,
    },
    /// No free room in the KV cache for the batch.
    #[error("the context is full: no room for {n_tokens} more tokens (raise --ctx)")]
    ContextFull {
        /// Tokens in the batch.
        n_tokens: usize,
    },
    /// A batch names a sequence the context does not have.
    #[error("sequence {seq} is not one of the context's {n_seq_max} sequences")]
    BadSequence {
        /// The sequence id.
        seq: i32,
        /// Sequences the context holds.
        n_seq_max: u32,
    },
    /// A batch larger than the context accepts in one call.
    #[error("a batch of {n_tokens} tokens exceeds the context's batch size {n_batch}")]
    BatchTooLarge {
        /// Tokens in the batch.
        n_tokens: usize,
        /// The context's batch size.
        n_batch: usize,
    },
    /// `llama_decode` failed.
    #[error("decoding failed with llama.cpp status {status}")]
    Decode {
        /// llama.cpp's return code.
        status: i32,
    },
    /// A batch has no room for another token.
    #[error("batch is full ({capacity} tokens)")]
    BatchFull {
        /// Its capacity.
        capacity: usize,
    },
    /// The model has no chat template, or llama.cpp does not know it.
    #[error("chat template not supported by llama.cpp: {0}")]
    ChatTemplate(String),
    /// A GBNF grammar did not parse.
    #[error("the GBNF grammar did not parse (llama.cpp rejected it; run with --verbose for where)")]
    Grammar,
    /// llama.cpp's quantizer failed.
    #[error("llama.cpp could not quantize {path}: {reason}")]
    Quantize {
        /// The input model.
        path: PathBuf,
        /// llama.cpp's reason, from its log.
        reason: String,
    },
    /// A tensor type ggml cannot convert this way.
    #[error("tensors of type {ty} cannot be {what}")]
    UnsupportedType {
        /// The type's name.
        ty: String,
        /// The conversion asked for.
        what: &'static str,
    },
    /// Row data whose size does not match its element count.
    #[error("{bytes} bytes do not hold {elements} values of type {ty} in whole rows")]
    RowSize {
        /// The type's name.
        ty: String,
        /// Bytes given.
        bytes: usize,
        /// Elements expected.
        elements: usize,
    },
    /// A string for C contained a NUL byte.
    #[error("text contains a NUL byte")]
    NulByte,
}
