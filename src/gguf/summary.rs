//! A model file at a glance: what `medllm info` shows.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{GgufFile, file_type_name};

/// The facts about a GGUF file that users ask for first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSummary {
    /// The file.
    pub path: PathBuf,
    /// Size of the file in bytes.
    pub file_bytes: u64,
    /// GGUF format version.
    pub gguf_version: u32,
    /// `general.type` (`model`, `adapter`), when present.
    pub kind: Option<String>,
    /// `general.architecture`.
    pub architecture: Option<String>,
    /// `general.name`.
    pub name: Option<String>,
    /// Parameters: the elements of all tensors.
    pub parameters: u64,
    /// `<arch>.context_length`: the training context.
    pub context_length: Option<u64>,
    /// Tokens in the vocabulary.
    pub vocab_size: Option<u64>,
    /// Whether `tokenizer.chat_template` is present.
    pub chat_template: bool,
    /// `general.file_type` by name (`Q4_1`).
    pub file_type: Option<String>,
    /// Number of tensors.
    pub tensor_count: usize,
    /// Bytes of tensor data.
    pub tensor_bytes: u64,
    /// Tensors and bytes per tensor type, by type name.
    pub tensor_types: BTreeMap<String, TypeUsage>,
    /// Every tensor, when asked for (`medllm info --tensors`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tensors: Option<Vec<TensorRow>>,
}

/// One tensor of a file, as `medllm info --tensors` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorRow {
    /// Tensor name.
    pub name: String,
    /// Type name (`Q4_K`).
    pub ggml_type: String,
    /// Dimensions, ggml order (fastest first).
    pub dims: Vec<u64>,
    /// Bytes of data.
    pub bytes: u64,
    /// Absolute offset of the data in the file.
    pub offset: u64,
}

/// How much of a file one tensor type takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeUsage {
    /// Tensors of this type.
    pub tensors: usize,
    /// Their bytes.
    pub bytes: u64,
}

impl ModelSummary {
    /// Summarises a GGUF file already read.
    pub fn of(file: &GgufFile) -> ModelSummary {
        let architecture = file.architecture().map(str::to_string);
        let context_length =
            architecture.as_deref().and_then(|a| file.get_u64(&format!("{a}.context_length")));
        let vocab_size = file
            .get("tokenizer.ggml.tokens")
            .and_then(|v| v.as_array())
            .map(|tokens| tokens.len() as u64)
            .or_else(|| architecture.as_deref().and_then(|a| file.get_u64(&format!("{a}.vocab_size"))));
        let mut tensor_types: BTreeMap<String, TypeUsage> = BTreeMap::new();
        for tensor in &file.tensors {
            let usage =
                tensor_types.entry(tensor.ggml_type.name()).or_insert(TypeUsage { tensors: 0, bytes: 0 });
            usage.tensors += 1;
            usage.bytes += tensor.n_bytes;
        }
        ModelSummary {
            path: file.path.clone(),
            file_bytes: file.file_size,
            gguf_version: file.version,
            kind: file.get_str("general.type").map(str::to_string),
            architecture,
            name: file.get_str("general.name").map(str::to_string),
            parameters: file.tensors.iter().map(|t| t.elements()).sum(),
            context_length,
            vocab_size,
            chat_template: file.get("tokenizer.chat_template").is_some(),
            file_type: file.get_u64("general.file_type").map(|t| file_type_name(t as u32)),
            tensor_count: file.tensors.len(),
            tensor_bytes: file.tensors.iter().map(|t| t.n_bytes).sum(),
            tensor_types,
            tensors: None,
        }
    }

    /// The summary with every tensor listed.
    pub fn with_tensors(mut self, file: &GgufFile) -> ModelSummary {
        self.tensors = Some(
            file.tensors
                .iter()
                .map(|t| TensorRow {
                    name: t.name.clone(),
                    ggml_type: t.ggml_type.name(),
                    dims: t.dims.clone(),
                    bytes: t.n_bytes,
                    offset: t.offset,
                })
                .collect(),
        );
        self
    }
}
