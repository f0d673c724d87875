//! `quality`: how closely a model (typically quantized or merged) follows a reference
//! model on a text, the figures `llama-perplexity --kl-divergence` reports: perplexity of
//! both, KL divergence of the model's next-token distribution from the reference's (mean,
//! median, 99th percentile, maximum), and how often both rank the same token first.
//!
//! The text is cut into chunks of `ctx` tokens; as llama-perplexity does, only the second
//! half of each chunk is scored, so every scored token has at least half a chunk of context.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::QuantError;
use crate::llama::{Batch, Context, ContextParams, Model, ModelParams, Token};

/// What to compare, on what text.
#[derive(Debug, Clone)]
pub struct QualitySettings {
    /// The reference model (e.g. the F32 or F16 original).
    pub reference: PathBuf,
    /// The model to judge.
    pub model: PathBuf,
    /// Tokens per chunk.
    pub ctx: usize,
    /// Most chunks to score (None: the whole text).
    pub max_chunks: Option<usize>,
    /// CPU threads.
    pub threads: i32,
}

/// Summary of per-token KL divergences, in nats.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TokenStats {
    /// Mean.
    pub mean: f64,
    /// Standard error of the mean.
    pub mean_stderr: f64,
    /// Median.
    pub median: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

/// The comparison of a model with its reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualityReport {
    /// The reference model.
    pub reference: PathBuf,
    /// The model judged.
    pub model: PathBuf,
    /// Tokens per chunk.
    pub ctx: usize,
    /// Chunks scored.
    pub chunks: usize,
    /// Tokens scored (predictions compared).
    pub tokens_scored: usize,
    /// Perplexity of the reference on the scored tokens.
    pub reference_perplexity: f64,
    /// Perplexity of the model on the scored tokens.
    pub model_perplexity: f64,
    /// KL divergence of the model's distribution from the reference's, per token.
    pub kl_divergence: TokenStats,
    /// Share of tokens (0–1) where both models rank the same token first.
    pub top1_agreement: f64,
}

/// Runs both models over `text` and compares their predictions token by token.
pub fn compare_quality(settings: &QualitySettings, text: &str) -> Result<QualityReport, QuantError> {
    let reference = Model::load(&settings.reference, &ModelParams::default())?;
    let model = Model::load(&settings.model, &ModelParams::default())?;
    if reference.n_vocab() != model.n_vocab() {
        return Err(QuantError::Incomparable(format!(
            "the models have different vocabularies ({} and {} tokens)",
            reference.n_vocab(),
            model.n_vocab()
        )));
    }
    let tokens = reference.tokenize(text, false, false)?;
    if model.tokenize(text, false, false)? != tokens {
        return Err(QuantError::Incomparable("the models tokenize the text differently".into()));
    }
    let plan = ChunkPlan::new(tokens.len(), settings.ctx, settings.max_chunks)?;
    let params = plan.context_params(settings.threads);
    let mut reference_ctx = Context::new(&reference, &params)?;
    let mut model_ctx = Context::new(&model, &params)?;
    let mut totals = Totals::default();
    score_chunks(&mut [&mut reference_ctx, &mut model_ctx], &tokens, &plan, &mut |_, logits, next| {
        let [ref_logits, model_logits] = logits else { unreachable!("two contexts") };
        totals.add(&compare_position(ref_logits, model_logits, next.0 as usize));
    })?;
    let (ctx, n_chunks) = (plan.ctx, plan.chunks);
    Ok(totals.report(settings, ctx, n_chunks))
}

/// The smallest chunk that can be scored: the second half of each chunk is scored, and
/// each scored token predicts the next.
pub const MIN_CHUNK_TOKENS: usize = 4;

/// `--ctx` of a perplexity run: at least [`MIN_CHUNK_TOKENS`] (a clap value parser).
pub fn parse_chunk_ctx(text: &str) -> Result<usize, String> {
    let ctx: usize = text.trim().parse().map_err(|_| format!("`{text}` is not a number of tokens"))?;
    if ctx < MIN_CHUNK_TOKENS {
        return Err(QuantError::ContextTooSmall { ctx, minimum: MIN_CHUNK_TOKENS }.to_string());
    }
    Ok(ctx)
}

/// How a text of some tokens is cut into scored chunks, the llama-perplexity way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkPlan {
    /// Tokens per chunk (the asked size, or the whole text when shorter).
    pub ctx: usize,
    /// Chunks scored.
    pub chunks: usize,
}

impl ChunkPlan {
    /// Chunks of `ctx` tokens over `n_tokens`, at most `max_chunks` of them.
    pub(crate) fn new(
        n_tokens: usize,
        ctx: usize,
        max_chunks: Option<usize>,
    ) -> Result<ChunkPlan, QuantError> {
        if ctx < MIN_CHUNK_TOKENS {
            return Err(QuantError::ContextTooSmall { ctx, minimum: MIN_CHUNK_TOKENS });
        }
        let ctx = ctx.min(n_tokens);
        if ctx < MIN_CHUNK_TOKENS {
            return Err(QuantError::TextTooShort { tokens: n_tokens, needed: MIN_CHUNK_TOKENS });
        }
        let chunks = (n_tokens / ctx).min(max_chunks.unwrap_or(usize::MAX)).max(1);
        Ok(ChunkPlan { ctx, chunks })
    }

    /// A context that holds one chunk.
    pub(crate) fn context_params(&self, threads: i32) -> ContextParams {
        ContextParams {
            n_ctx: self.ctx as u32,
            n_batch: self.ctx as u32,
            n_ubatch: self.ctx.min(512) as u32,
            n_seq_max: 1,
            n_threads: threads,
            n_threads_batch: threads,
            unified_kv: false,
            f32_kv: false,
        }
    }
}

/// Hears (position in the chunk, each context's logits there, the true next token).
pub(crate) type PositionSink<'a> = dyn FnMut(usize, &[&[f32]], Token) + 'a;

/// Decodes every chunk of `tokens` in each of `contexts` (all of the same vocabulary) and
/// hands `on_position` the logits of each context at every scored position (the second
/// half of the chunk, as llama-perplexity does) with the token that truly follows.
pub(crate) fn score_chunks(
    contexts: &mut [&mut Context<'_>],
    tokens: &[Token],
    plan: &ChunkPlan,
    on_position: &mut PositionSink<'_>,
) -> Result<(), QuantError> {
    let ctx = plan.ctx;
    let Some(first) = contexts.first() else { return Ok(()) };
    let model = first.model();
    let mut batch = Batch::new(ctx, 1);
    let first_scored = ctx / 2;
    for (chunk_index, chunk) in tokens.chunks_exact(ctx).take(plan.chunks).enumerate() {
        let scored_so_far = chunk_index * ctx;
        batch.clear();
        for (pos, &token) in chunk.iter().enumerate() {
            // As llama-perplexity does: a chunk starts with BOS when the model expects one.
            let token = match (pos, model.adds_bos(), model.bos()) {
                (0, true, Some(bos)) => bos,
                _ => token,
            };
            batch.add(token, pos as i32, &[0], pos >= first_scored)?;
        }
        for context in contexts.iter_mut() {
            context.clear_memory();
            context.decode(&batch)?;
        }
        for pos in first_scored..ctx - 1 {
            let mut rows: Vec<&[f32]> = Vec::with_capacity(contexts.len());
            for context in contexts.iter() {
                let row = context
                    .logits(pos)
                    .ok_or_else(|| QuantError::Incomparable(format!("no logits at position {pos}")))?;
                // A NaN logit makes every figure NaN, which comparisons then read as "equal".
                if row.iter().any(|l| !l.is_finite()) {
                    return Err(QuantError::NonFiniteLogits {
                        model: context.model().path().to_path_buf(),
                        position: scored_so_far + pos,
                    });
                }
                rows.push(row);
            }
            on_position(pos, &rows, chunk[pos + 1]);
        }
    }
    Ok(())
}

/// Negative log-likelihood of `next` under `logits`, in nats.
pub(crate) fn token_nll(logits: &[f32], next: Token) -> f64 {
    -log_softmax(logits)[next.0 as usize]
}

/// The comparison at one position.
#[derive(Debug, Clone, Copy, PartialEq)]
struct PositionScore {
    reference_nll: f64,
    model_nll: f64,
    kl: f64,
    same_top1: bool,
}

/// Log-probabilities of both models at one position → NLL of the true next token, KL
/// divergence of the model from the reference, and whether the top tokens agree.
fn compare_position(reference: &[f32], model: &[f32], next: usize) -> PositionScore {
    let ref_log = log_softmax(reference);
    let model_log = log_softmax(model);
    let kl: f64 = ref_log.iter().zip(&model_log).map(|(&r, &m)| r.exp() * (r - m)).sum();
    PositionScore {
        reference_nll: -ref_log[next],
        model_nll: -model_log[next],
        // Rounding can make the divergence of near-identical distributions a hair negative;
        // `f64::max` would also turn a NaN into 0, so compare instead.
        kl: if kl < 0.0 { 0.0 } else { kl },
        same_top1: argmax(reference) == argmax(model),
    }
}

fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let log_sum = logits.iter().map(|&l| (l as f64 - max).exp()).sum::<f64>().ln();
    logits.iter().map(|&l| l as f64 - max - log_sum).collect()
}

fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| if v > best.1 { (i, v) } else { best })
        .0
}

#[derive(Debug, Default)]
struct Totals {
    reference_nll: f64,
    model_nll: f64,
    kl: Vec<f64>,
    agreements: usize,
}

impl Totals {
    fn add(&mut self, score: &PositionScore) {
        self.reference_nll += score.reference_nll;
        self.model_nll += score.model_nll;
        self.kl.push(score.kl);
        self.agreements += usize::from(score.same_top1);
    }

    fn report(mut self, settings: &QualitySettings, ctx: usize, chunks: usize) -> QualityReport {
        let n = self.kl.len().max(1) as f64;
        self.kl.sort_by(f64::total_cmp);
        let mean = self.kl.iter().sum::<f64>() / n;
        let variance = self.kl.iter().map(|k| (k - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
        QualityReport {
            reference: settings.reference.clone(),
            model: settings.model.clone(),
            ctx,
            chunks,
            tokens_scored: self.kl.len(),
            reference_perplexity: (self.reference_nll / n).exp(),
            model_perplexity: (self.model_nll / n).exp(),
            kl_divergence: TokenStats {
                mean,
                mean_stderr: (variance / n).sqrt(),
                median: percentile(&self.kl, 0.5),
                p99: percentile(&self.kl, 0.99),
                max: self.kl.last().copied().unwrap_or(0.0),
            },
            top1_agreement: self.agreements as f64 / n,
        }
    }
}

/// The value at quantile `q` of sorted values (nearest rank).
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_distributions_diverge_by_nothing() {
        let logits = [1.0f32, 2.0, 0.5, -1.0];
        let score = compare_position(&logits, &logits, 1);
        assert_eq!(score.kl, 0.0);
        assert!(score.same_top1);
        assert!((score.reference_nll - score.model_nll).abs() < 1e-12);
    }

    #[test]
    fn kl_divergence_matches_a_hand_computed_case() {
        // p = (0.5, 0.5), q = (0.9, 0.1): KL(p‖q) = 0.5 ln(0.5/0.9) + 0.5 ln(0.5/0.1).
        let p = [0.0f32, 0.0];
        let q = [(0.9f32).ln(), (0.1f32).ln()];
        let score = compare_position(&p, &q, 1);
        let expected = 0.5 * (0.5f64 / 0.9).ln() + 0.5 * (0.5f64 / 0.1).ln();
        assert!((score.kl - expected).abs() < 1e-6, "{} vs {expected}", score.kl);
        assert!((score.model_nll - -(0.1f64).ln()).abs() < 1e-6);
        assert!((score.reference_nll - (2.0f64).ln()).abs() < 1e-6);
    }

    #[test]
    fn a_nan_divergence_stays_nan() {
        let score = compare_position(&[0.0, 0.0], &[f32::NAN, 0.0], 0);
        assert!(score.kl.is_nan(), "{}", score.kl);
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 0.99), 99.0);
        assert_eq!(percentile(&values, 0.5), 50.0);
        assert_eq!(percentile(&[3.0], 0.99), 3.0);
    }
}
