//! medllm: run language models on medical text entirely offline, on llama.cpp.
//!
//! Capabilities live one per module; the CLI in [`cli`] only turns arguments into calls.
//! `unsafe` code is confined to [`llama`] (and the `llama-sys` crate).

pub mod atomic_file;
pub mod cli;
pub mod data;
pub(crate) mod engine;
pub mod eval;
pub mod extract;
pub mod generate;
pub mod gguf;
pub mod interrupt;
pub mod llama;
pub mod lora;
pub mod ollama;
pub mod quant;
pub mod serve;
pub mod train;

#[cfg(test)]
mod test_support;

/// An error's message followed by those of its causes, `a: b: c`, for errors carried on as
/// text (a record's error field, another error's reason). Displays never repeat their
/// cause themselves, so that a chain printed with `{:#}` names each cause once.
pub(crate) fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
