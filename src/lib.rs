//! medllm: run language models on medical text entirely offline, on llama.cpp.
//!
//! Capabilities live one per module; the CLI in [`cli`] only turns arguments into calls.
//! `unsafe` code is confined to [`llama`] (and the `llama-sys` crate).

pub mod atomic_file;
pub mod cli;
pub mod data;
pub mod eval;
pub mod extract;
pub mod generate;
pub mod gguf;
pub mod llama;
pub mod lora;
pub mod ollama;
pub mod quant;
pub mod serve;
pub mod train;

#[cfg(test)]
mod test_support;
