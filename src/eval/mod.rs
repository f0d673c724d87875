//! Evaluation: metrics that say whether a model, or a fine-tuned one, can be trusted.
//! Extraction and de-identification scoring now; MCQ accuracy, ROUGE/BLEU and perplexity to come.

mod deid;
mod extract;

pub use deid::{DeidMiss, DeidScores, GoldPhiDocument, PhiScore, score_deid};
pub use extract::{ExtractionScores, FieldScore, GoldRecord, normalize, score_extraction};
