//! Evaluation: metrics that say whether a model, or a fine-tuned one, can be trusted.
//! Extraction and de-identification scores, multiple-choice accuracy, ROUGE/BLEU,
//! perplexity, and a base-vs-tuned report over a suite of tasks.

mod answer;
mod bleu;
pub mod chart;
mod deid;
mod error;
mod extract;
mod mcq;
mod perplexity;
mod porter;
mod report;
mod rouge;
mod stats;
mod summary;
mod synth_mcq;

pub use answer::{McqMethod, McqSettings, answer_questions};
pub use bleu::{Bleu, corpus_bleu, tokenize_13a};
pub use deid::{
    DeidMiss, DeidScores, GoldError, GoldPhiDocument, GoldSet, PhiScore, read_gold, read_marked_document,
    score_deid,
};
pub use error::EvalError;
pub use extract::{ExtractionScores, FieldScore, GoldRecord, normalize, score_extraction};
pub use mcq::{
    IndexBase, LETTERS, McqAnswer, McqScores, Question, QuestionSet, SkippedQuestion, parse_questions,
    read_questions, score_mcq,
};
pub use perplexity::{PerplexityReport, PerplexitySettings, perplexity, read_perplexity_text};
pub use porter::porter_stem;
pub use report::{
    DeidTask, ExtractTask, McqTask, PerplexityTask, Report, ReportSettings, Suite, SummaryTask, TaskOutcome,
    TaskResult, Tuned, render_markdown, run_report, write_report,
};
pub use rouge::{CorpusRouge, Prf, RougeScores, corpus_rouge, rouge, rouge_tokens};
pub use stats::{Estimate, mean_interval, wilson_interval};
pub use summary::{
    BadLine, DEFAULT_SUMMARY_INSTRUCTION, SummaryDocument, SummaryScores, SummarySettings,
    generate_summaries, read_documents, read_summaries, score_summaries,
};
pub use synth_mcq::questions_from_synth;
