//! Evaluation: metrics that say whether a model, or a fine-tuned one, can be trusted.
//! Extraction scoring now; MCQ accuracy, ROUGE/BLEU and perplexity to come.

mod extract;

pub use extract::{ExtractionScores, FieldScore, GoldRecord, normalize, score_extraction};
