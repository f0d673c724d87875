//! LoRA adapters as files: PEFT adapters (safetensors + config) converted to GGUF adapters,
//! and GGUF adapters merged into a base model's weights, re-quantized to the base's types.

mod convert;
mod fixture;
mod merge;
mod names;
mod peft;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use convert::{ConvertReport, ConvertSettings, convert_peft};
pub use fixture::{PeftDtype, PeftFixtureSpec, write_peft_adapter};
pub use merge::{AdapterInput, MergeProgress, MergeReport, MergeSettings, MergedAdapter, merge_adapters};
pub use names::{LoraSlot, PeftName, Projection, parse_peft_name, permute_rows_for_rope};
pub use peft::{CONFIG_FILE, PeftAdapter, PeftConfig, PeftMatrix, WEIGHTS_FILE, read_safetensors};

/// What went wrong converting or merging adapters.
#[derive(Debug, thiserror::Error)]
pub enum LoraError {
    /// A GGUF file could not be read or written.
    #[error(transparent)]
    Gguf(#[from] crate::gguf::GgufError),
    /// llama.cpp's conversions failed.
    #[error(transparent)]
    Llama(#[from] crate::llama::LlamaError),
    /// The PEFT adapter folder holds something that cannot be converted.
    #[error("{path}: {reason}")]
    Peft {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An adapter on a module GGUF adapters cannot carry.
    #[error("{name}: {reason}")]
    UnsupportedModule {
        /// The tensor or module.
        name: String,
        /// Why it is refused.
        reason: String,
    },
    /// A tensor name we cannot place.
    #[error("tensor {name} is not a LoRA matrix of a known layer (q/k/v/o/gate/up/down_proj of a block)")]
    UnknownTensor {
        /// The name.
        name: String,
    },
    /// The base model's architecture is not one the converter knows.
    #[error(
        "base architecture {architecture} is not supported by lora convert (llama, mistral as llama, qwen2, gemma, gemma2, gemma3)"
    )]
    UnsupportedArchitecture {
        /// `general.architecture` of the base.
        architecture: String,
    },
    /// Shapes of an adapter and its base disagree.
    #[error("{name}: {reason}")]
    Shape {
        /// The module or tensor.
        name: String,
        /// What differs.
        reason: String,
    },
    /// A file that should be a LoRA adapter is not one, or not for this base.
    #[error("adapter {path}: {reason}")]
    Adapter {
        /// The adapter file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Merging gave values that are not finite numbers; nothing was written.
    #[error(
        "merging gives {tensor} a value that is not a finite number (row {row}): the base weight holds NaN or infinity, or the update overflows; nothing was written"
    )]
    NonFiniteMerge {
        /// The base tensor.
        tensor: String,
        /// The first row found.
        row: usize,
    },
    /// The output would overwrite an input.
    #[error("the output {path} is one of the inputs; write to another path")]
    OutputIsInput {
        /// The path.
        path: PathBuf,
    },
    /// Reading a file failed.
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Writing the output failed (full disk, no permission).
    #[error("cannot write the output")]
    Write(#[from] std::io::Error),
}

/// sha256 of `bytes`, lowercase hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}
