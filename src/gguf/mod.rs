//! GGUF files in pure Rust: read the metadata and tensor index, write new files.
//! Needs no llama.cpp, so `info`, `ollama` and `lora` can inspect files without a model.

mod diff;
mod loadable;
mod lora_adapter;
mod read;
mod summary;
mod tiny_model;
mod types;
mod write;

use std::path::PathBuf;

use serde::Serialize;

pub use diff::{ChangedTensor, ChangedValue, GgufDiff};
pub use loadable::{LoadScope, MAX_BLOCKS, MAX_EXPERTS};
pub use lora_adapter::{AdapterProblem, LoraPair, lora_alpha, lora_pairs};
pub use read::GgufFile;
pub use summary::{ModelSummary, TensorRow, TypeUsage};
pub use tiny_model::{TINY_ARCHITECTURES, TinyModelSpec, write_tiny_model};
pub use types::{GgmlType, file_type_from_name, file_type_name, file_type_names};
pub use write::{ALIGNMENT, TensorSpec, write_gguf};

/// One metadata value.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
#[allow(missing_docs)]
pub enum MetadataValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Vec<MetadataValue>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl MetadataValue {
    /// The GGUF value type number.
    pub fn type_id(&self) -> u32 {
        match self {
            MetadataValue::U8(_) => 0,
            MetadataValue::I8(_) => 1,
            MetadataValue::U16(_) => 2,
            MetadataValue::I16(_) => 3,
            MetadataValue::U32(_) => 4,
            MetadataValue::I32(_) => 5,
            MetadataValue::F32(_) => 6,
            MetadataValue::Bool(_) => 7,
            MetadataValue::String(_) => 8,
            MetadataValue::Array(_) => 9,
            MetadataValue::U64(_) => 10,
            MetadataValue::I64(_) => 11,
            MetadataValue::F64(_) => 12,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetadataValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// A non-negative integer of any width, widened to u64.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            MetadataValue::U8(v) => Some(v.into()),
            MetadataValue::U16(v) => Some(v.into()),
            MetadataValue::U32(v) => Some(v.into()),
            MetadataValue::U64(v) => Some(v),
            MetadataValue::I8(v) => u64::try_from(v).ok(),
            MetadataValue::I16(v) => u64::try_from(v).ok(),
            MetadataValue::I32(v) => u64::try_from(v).ok(),
            MetadataValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The items, if this is an array.
    pub fn as_array(&self) -> Option<&[MetadataValue]> {
        match self {
            MetadataValue::Array(items) => Some(items),
            _ => None,
        }
    }

    /// The value as an error message may show it: numbers as they are, a string only when
    /// it looks like a name (see [`quoted_name`]), an array by its length. Keeps free text
    /// from a file (which a fine-tuned model's metadata could hold) out of logs and terminals.
    pub fn shown_in_error(&self) -> String {
        match self {
            MetadataValue::String(s) => quoted_name(s),
            MetadataValue::Array(items) => format!("an array of {} items", items.len()),
            other => other.summary(),
        }
    }

    /// A short human rendering: arrays show their length and first items.
    pub fn summary(&self) -> String {
        match self {
            MetadataValue::String(s) if s.chars().count() > 60 => {
                format!("{:?}… ({} chars)", s.chars().take(57).collect::<String>(), s.chars().count())
            }
            MetadataValue::String(s) => format!("{s:?}"),
            MetadataValue::Array(items) => {
                let head: Vec<String> = items.iter().take(3).map(MetadataValue::summary).collect();
                let more = if items.len() > 3 { ", …" } else { "" };
                format!("[{}{more}] ({} items)", head.join(", "), items.len())
            }
            other => serde_json::to_string(other).unwrap_or_default(),
        }
    }
}

/// A metadata string read as a name (an architecture, a tokenizer, a scaling type), for an
/// error message: quoted when it is a short name of ASCII letters, digits and `_-.+`, as every
/// name llama.cpp knows is; otherwise only its length, so no free text is echoed.
pub fn quoted_name(value: &str) -> String {
    if is_name_like(value) {
        format!("{value:?}")
    } else {
        format!("a text of {} characters", value.chars().count())
    }
}

/// Whether `value` could be a name llama.cpp knows: short, ASCII letters, digits and `_-.+`.
pub(crate) fn is_name_like(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 40
        && value.chars().all(|c| c.is_ascii_alphanumeric() || "_-.+".contains(c))
}

/// One tensor record of a GGUF file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TensorInfo {
    /// Tensor name.
    pub name: String,
    /// Dimensions in ggml order.
    pub dims: Vec<u64>,
    /// Element type.
    pub ggml_type: GgmlType,
    /// Absolute offset of the data in the file.
    pub offset: u64,
    /// Bytes of data.
    pub n_bytes: u64,
}

impl TensorInfo {
    /// Number of elements.
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// What went wrong reading or writing GGUF.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file does not start with the GGUF magic.
    #[error("{path} is not a GGUF file (no GGUF magic at its start)")]
    NotGguf {
        /// The file.
        path: PathBuf,
    },
    /// A GGUF version we do not read.
    #[error("{path} is GGUF version {version}; medllm reads versions 2 and 3")]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version found.
        version: u32,
    },
    /// The file ends before what its header promises.
    #[error("{path} is truncated: it ends before the {what}")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// What was being read.
        what: String,
    },
    /// The header holds something impossible.
    #[error("{path} is corrupt at byte {offset}: {what}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Where reading stopped.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// Metadata that llama.cpp would abort on (or load into a vocabulary that aborts at the
    /// first tokenization), found before llama.cpp sees the file.
    #[error(
        "{path} is not a model llama.cpp can load: {key} {problem} (is the file damaged, or was its metadata edited?)"
    )]
    Unloadable {
        /// The file.
        path: PathBuf,
        /// The metadata key at fault.
        key: String,
        /// What is wrong with its value.
        problem: String,
    },
    /// A tensor handed to the writer is inconsistent.
    #[error("tensor {name}: {reason}")]
    BadTensor {
        /// Tensor name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// Writing failed.
    #[error("cannot write GGUF")]
    Write {
        /// The cause.
        source: std::io::Error,
    },
}
