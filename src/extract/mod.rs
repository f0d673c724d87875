//! Medical text → schema-valid JSON with every string traced to its place in the source.
//! Schemas are checked fail-closed, compiled to a token constraint (llguidance), and
//! documents are decoded together as sequences of one context.

mod constraint;
mod extractive;
mod grounding;
mod prompt;
mod runner;
mod schema;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use constraint::{ConstraintFactory, DocumentConstraint};
pub use grounding::{GroundingSpan, MatchKind, SourceIndex, ground, walk_strings};
pub use prompt::{DEFAULT_INSTRUCTION, Example, PromptTemplate, parse_examples, read_examples};
pub use runner::{ExtractOptions, ExtractionPlan, Extractor, OutputConstraint, RunError, RunSummary};
pub use schema::{BUILT_IN_SCHEMAS, ExtractionSchema, SchemaLimits, SchemaSource, load_schema};

/// Token counts of one document.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCounts {
    /// Prompt tokens: shared prefix plus the document.
    pub prompt: usize,
    /// Tokens generated (sampled and forced by the schema).
    pub generated: usize,
}

/// The result for one document: one JSON line of `medllm extract`'s output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExtractionRecord {
    /// The document's id.
    pub id: String,
    /// The extracted JSON (null when nothing usable was produced).
    pub data: Option<Value>,
    /// Where each grounded string value came from.
    pub grounding: Vec<GroundingSpan>,
    /// JSON pointers of string values not found in the source.
    pub ungrounded: Vec<String>,
    /// Whether `data` is complete and valid under the schema (and grounded, when required).
    pub valid: bool,
    /// Why the record is not valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Token counts.
    pub tokens: TokenCounts,
    /// Milliseconds from the document's start to its record.
    pub ms: u64,
    /// Things the user should know (e.g. the document was truncated to fit the context).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl ExtractionRecord {
    /// A record for a document that could not be read or processed.
    pub fn failed(id: String, error: String) -> ExtractionRecord {
        ExtractionRecord {
            id,
            data: None,
            grounding: Vec::new(),
            ungrounded: Vec::new(),
            valid: false,
            error: Some(error),
            tokens: TokenCounts::default(),
            ms: 0,
            warnings: Vec::new(),
        }
    }
}

/// What went wrong in extraction set-up or in the engine.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// The schema file cannot be read or is not JSON.
    #[error("schema {name} cannot be read: {reason}")]
    SchemaUnreadable {
        /// File or name given.
        name: String,
        /// Why.
        reason: String,
    },
    /// Neither a file nor a built-in schema.
    #[error("no schema file or built-in schema named {name} (built in: {known})")]
    SchemaUnknown {
        /// What was asked for.
        name: String,
        /// The built-in names.
        known: String,
    },
    /// A keyword the decoder cannot enforce: refused before any token is generated.
    #[error("schema keyword \"{keyword}\" at {pointer} cannot be enforced: {reason}")]
    SchemaUnenforceable {
        /// The keyword.
        keyword: String,
        /// Its JSON pointer in the schema.
        pointer: String,
        /// Why.
        reason: String,
    },
    /// Part of the schema allows output of unbounded size.
    #[error("schema at {pointer} has no bounded size: {reason}")]
    SchemaUnbounded {
        /// JSON pointer in the schema.
        pointer: String,
        /// Why.
        reason: String,
    },
    /// llguidance refused the schema or grammar, or failed while decoding.
    #[error("constraint: {0}")]
    Constraint(String),
    /// The examples file is malformed.
    #[error("examples: {0}")]
    Examples(String),
    /// The prompt could not be built.
    #[error("prompt: {0}")]
    Prompt(String),
    /// llama.cpp failed.
    #[error(transparent)]
    Llama(#[from] crate::llama::LlamaError),
}
