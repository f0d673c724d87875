//! The extraction prompt: instruction, schema and examples form a prefix shared by every
//! document (evaluated once), the document and the assistant's opening form the rest.

use serde::Deserialize;
use serde_json::Value;

use super::ExtractError;
use crate::llama::{ChatMessage, Model, PromptFormat, Token, resolve_template};

/// The default instruction.
pub const DEFAULT_INSTRUCTION: &str = "You extract structured data from medical documents. \
Answer with one JSON object that follows the schema. Copy values from the document as they are written; \
use null or an empty list when the document does not say. Do not guess.";

/// A worked example for few-shot prompting: a document and the JSON wanted for it.
#[derive(Debug, Clone, Deserialize)]
pub struct Example {
    /// The example document.
    pub text: String,
    /// The JSON that should be extracted from it.
    pub data: Value,
}

/// Reads `--examples FILE.jsonl`: one `{"text": ..., "data": {...}}` per line.
pub fn read_examples(path: &std::path::Path) -> Result<Vec<Example>, ExtractError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ExtractError::Examples(format!("cannot read {}: {e}", path.display())))?;
    parse_examples(&text, &path.display().to_string())
}

/// Parses examples from JSON lines; `origin` names them in errors.
pub fn parse_examples(text: &str, origin: &str) -> Result<Vec<Example>, ExtractError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|e| {
                ExtractError::Examples(format!("{origin}:{}: expected {{\"text\", \"data\"}}: {e}", i + 1))
            })
        })
        .collect()
}

/// The prompt split at the document.
#[derive(Debug, Clone)]
pub struct PromptTemplate {
    /// Tokens before the document: system message, examples, the user turn's opening.
    pub prefix: Vec<Token>,
    /// Text after the document: the user turn's end and the assistant's opening.
    suffix: String,
    /// Whether the template is the model's chat template (else a plain layout).
    pub chat: bool,
}

const MARKER: &str = "\u{1}MEDLLM_DOCUMENT\u{1}";

impl PromptTemplate {
    /// Builds the prompt for `model` in `format` (`None`: the model's own chat template, else
    /// plain text). `system` replaces the default instruction.
    pub fn new(
        model: &Model,
        format: Option<&PromptFormat>,
        system: Option<&str>,
        schema_text: &str,
        examples: &[Example],
    ) -> Result<PromptTemplate, ExtractError> {
        let instruction = format!("{}\nSchema: {schema_text}", system.unwrap_or(DEFAULT_INSTRUCTION));
        let mut messages = vec![ChatMessage::new("system", instruction.clone())];
        for example in examples {
            messages.push(ChatMessage::new("user", example.text.clone()));
            messages.push(ChatMessage::new(
                "assistant",
                serde_json::to_string(&example.data).unwrap_or_default(),
            ));
        }
        messages.push(ChatMessage::new("user", MARKER));
        let format = match format {
            Some(format) => format.clone(),
            None => resolve_template(None, model.chat_template())?.format,
        };
        let mut text = format.render(&messages, true)?;
        if !format.is_chat() {
            // Plain text separates messages by blank lines; the answer starts its own
            // paragraph, as the examples' answers do.
            text.push_str("\n\n");
        }
        let chat = format.is_chat();
        let at = text
            .find(MARKER)
            .ok_or_else(|| ExtractError::Prompt("the chat template dropped the document".into()))?;
        let (before, after) = (&text[..at], &text[at + MARKER.len()..]);
        // Control tokens written by the template are parsed as such; the document never is.
        let mut prefix = model.tokenize(before, model.adds_bos(), true)?;
        if prefix.is_empty() {
            prefix = model.bos().into_iter().collect();
        }
        Ok(PromptTemplate { prefix, suffix: after.to_string(), chat })
    }

    /// Tokens of one document and the text after it. Text in the document that looks like
    /// a control token (`<|im_end|>`) stays text: a document cannot steer the prompt.
    pub fn document_tokens(&self, model: &Model, document: &str) -> Result<Vec<Token>, ExtractError> {
        let mut tokens = model.tokenize(document, false, false)?;
        tokens.extend(model.tokenize(&self.suffix, false, true)?);
        Ok(tokens)
    }

    /// Tokens of the text after the document alone.
    pub fn suffix_tokens(&self, model: &Model) -> Result<Vec<Token>, ExtractError> {
        Ok(model.tokenize(&self.suffix, false, true)?)
    }
}
