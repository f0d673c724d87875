//! Evaluation: metrics that say whether a model, or a fine-tuned one, can be trusted.
//! Extraction and de-identification scores, multiple-choice accuracy, ROUGE/BLEU,
//! perplexity, and a base-vs-tuned report over a suite of tasks.

mod bleu;
mod deid;
mod extract;
mod porter;
mod rouge;
mod stats;

pub use bleu::{Bleu, corpus_bleu, tokenize_13a};
pub use deid::{DeidMiss, DeidScores, GoldPhiDocument, PhiScore, score_deid};
pub use extract::{ExtractionScores, FieldScore, GoldRecord, normalize, score_extraction};
pub use porter::porter_stem;
pub use rouge::{CorpusRouge, Prf, RougeScores, corpus_rouge, rouge, rouge_tokens};
pub use stats::{Estimate, mean_interval, wilson_interval};
