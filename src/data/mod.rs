//! The data side: reading documents, synthetic reports with gold labels, PHI
//! de-identification, and preparation of chat-format training sets.

pub mod deid;
mod ingest;
pub mod lexicon;
pub mod phi;
pub mod prepare;
pub mod rng;
pub mod synth;

pub(crate) use ingest::sniff_delimiter;
pub use ingest::{Document, InputItem, InputOptions, read_inputs};
