//! A LoRA adapter loaded for a model. It borrows the model: an adapter cannot outlive
//! the weights it modifies.

use std::path::{Path, PathBuf};
use std::ptr::NonNull;

use super::model::path_to_cstring;
use super::quantize::rows_are_valid;
use super::{LlamaError, Model};
use crate::gguf::{GgufFile, TensorInfo, lora_pairs};

/// A LoRA adapter (GGUF, `general.type = adapter`) for one model.
#[derive(Debug)]
pub struct LoraAdapter<'m> {
    ptr: NonNull<llama_sys::llama_adapter_lora>,
    path: PathBuf,
    model: &'m Model,
}

impl<'m> LoraAdapter<'m> {
    /// Loads the adapter at `path` for `model`, after checking in Rust that it is a LoRA
    /// adapter whose matrices fit the model's weights and hold only finite numbers (a NaN
    /// would turn every output of the model into NaN).
    pub fn load(model: &'m Model, path: &Path) -> Result<LoraAdapter<'m>, LlamaError> {
        let mismatch = |reason: String| LlamaError::AdapterMismatch { path: path.to_path_buf(), reason };
        let header = GgufFile::open(path)?;
        let base = GgufFile::open(model.path())?;
        let pairs = lora_pairs(&header, &base).map_err(|problem| mismatch(problem.to_string()))?;
        if let Some(tensor) = first_non_finite_tensor(&header, pairs.iter().flat_map(|p| [p.a, p.b]))? {
            return Err(mismatch(format!("tensor {tensor} holds NaN or infinite values")));
        }
        let c_path = path_to_cstring(path)?;
        let _exclusive = model.adapters_write();
        // SAFETY: the model pointer is valid for 'm; `c_path` is NUL-terminated; the write
        // lock keeps contexts of other threads from reading the adapter set meanwhile; null
        // (llama.cpp found shapes or names it cannot use) is handled below.
        let ptr = unsafe { llama_sys::llama_adapter_lora_init(model.as_ptr(), c_path.as_ptr()) };
        let ptr = NonNull::new(ptr).ok_or_else(|| LlamaError::AdapterLoad { path: path.to_path_buf() })?;
        Ok(LoraAdapter { ptr, path: path.to_path_buf(), model })
    }

    /// Wraps an adapter llama.cpp made (a trainable one): freed on drop like a loaded one.
    pub(crate) fn from_raw(
        ptr: NonNull<llama_sys::llama_adapter_lora>,
        path: &Path,
        model: &'m Model,
    ) -> Self {
        LoraAdapter { ptr, path: path.to_path_buf(), model }
    }

    pub(crate) fn as_ptr(&self) -> *mut llama_sys::llama_adapter_lora {
        self.ptr.as_ptr()
    }

    /// The model this adapter was loaded for.
    pub fn model(&self) -> &'m Model {
        self.model
    }

    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The name of the first of `tensors` (records of `file`) whose data holds a NaN or an
/// infinity, in values or in quantisation scales.
pub(crate) fn first_non_finite_tensor<'t>(
    file: &GgufFile,
    tensors: impl IntoIterator<Item = &'t TensorInfo>,
) -> Result<Option<&'t str>, LlamaError> {
    let source = file.reopen()?;
    let mut bytes = Vec::new();
    for tensor in tensors {
        file.read_tensor_data_into(&source, tensor, &mut bytes)?;
        if !rows_are_valid(tensor.ggml_type, &bytes) {
            return Ok(Some(&tensor.name));
        }
    }
    Ok(None)
}

impl Drop for LoraAdapter<'_> {
    fn drop(&mut self) {
        let _exclusive = self.model.adapters_write();
        // SAFETY: `ptr` came from llama_adapter_lora_init and is freed exactly once, before
        // its model (the borrow guarantees the model is still alive), under the write lock.
        unsafe { llama_sys::llama_adapter_lora_free(self.ptr.as_ptr()) }
    }
}
