//! A LoRA adapter loaded for a model. It borrows the model: an adapter cannot outlive
//! the weights it modifies.

use std::path::{Path, PathBuf};
use std::ptr::NonNull;

use super::model::path_to_cstring;
use super::{LlamaError, Model};
use crate::gguf::GgufFile;

/// A LoRA adapter (GGUF, `general.type = adapter`) for one model.
#[derive(Debug)]
pub struct LoraAdapter<'m> {
    ptr: NonNull<llama_sys::llama_adapter_lora>,
    path: PathBuf,
    model: &'m Model,
}

impl<'m> LoraAdapter<'m> {
    /// Loads the adapter at `path` for `model`, after checking in Rust that it is a LoRA
    /// adapter of the model's architecture.
    pub fn load(model: &'m Model, path: &Path) -> Result<LoraAdapter<'m>, LlamaError> {
        let mismatch = |reason: String| LlamaError::AdapterMismatch { path: path.to_path_buf(), reason };
        let header = GgufFile::open(path)?;
        if header.get_str("general.type") != Some("adapter") || header.get_str("adapter.type") != Some("lora")
        {
            return Err(mismatch("it is not a LoRA adapter (general.type/adapter.type)".into()));
        }
        let arch = header.architecture().unwrap_or("unknown");
        if arch != model.architecture() {
            return Err(mismatch(format!(
                "adapter is for architecture {arch}, the model is {}",
                model.architecture()
            )));
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

impl Drop for LoraAdapter<'_> {
    fn drop(&mut self) {
        let _exclusive = self.model.adapters_write();
        // SAFETY: `ptr` came from llama_adapter_lora_init and is freed exactly once, before
        // its model (the borrow guarantees the model is still alive), under the write lock.
        unsafe { llama_sys::llama_adapter_lora_free(self.ptr.as_ptr()) }
    }
}
