//! Perplexity of one model (with its adapters) on a text, by llama.cpp's perplexity
//! method: non-overlapping chunks of `ctx` tokens, each starting with BOS when the model
//! wants one, and only the second half of each chunk scored. The same chunking and
//! scoring as `medllm quality` (shared code), so the two agree where they overlap.
//!
//! The standard error is llama-perplexity's: the delta method on the mean negative
//! log-likelihood, `PPL × sqrt(var(nll) / (n − 1))`.

use serde::{Deserialize, Serialize};

use super::EvalError;
use crate::llama::{Context, LoraAdapter, Model};
use crate::quant::{ChunkPlan, score_chunks, token_nll};

/// Settings of a perplexity run.
#[derive(Debug, Clone)]
pub struct PerplexitySettings {
    /// Tokens per chunk.
    pub ctx: usize,
    /// Most chunks to score (None: the whole text).
    pub max_chunks: Option<usize>,
    /// CPU threads.
    pub threads: i32,
}

/// The result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerplexityReport {
    /// Tokens per chunk used (smaller than asked when the text is shorter).
    pub ctx: usize,
    /// Chunks scored.
    pub chunks: usize,
    /// Tokens scored.
    pub tokens_scored: usize,
    /// Mean negative log-likelihood per scored token, in nats.
    pub mean_nll: f64,
    /// exp(mean_nll).
    pub perplexity: f64,
    /// Its standard error.
    pub perplexity_stderr: f64,
}

/// The text of a file to score: plain text as it is, or, for a `.jsonl` file, the
/// `text` field of every line, separated by blank lines (a `medllm synth` corpus).
pub fn read_perplexity_text(path: &std::path::Path) -> Result<String, EvalError> {
    let text = std::fs::read_to_string(path).map_err(|source| EvalError::Io { path: path.into(), source })?;
    if path.extension().is_none_or(|e| e != "jsonl") {
        return Ok(text);
    }
    let parts: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("text").and_then(serde_json::Value::as_str).map(str::to_string))
        .collect();
    Ok(parts.join("\n\n"))
}

/// Scores `text` with `model` and `adapters`.
pub fn perplexity(
    model: &Model,
    adapters: &[(&LoraAdapter<'_>, f32)],
    text: &str,
    settings: &PerplexitySettings,
) -> Result<PerplexityReport, EvalError> {
    let tokens = model.tokenize(text, false, false)?;
    let plan = ChunkPlan::new(tokens.len(), settings.ctx, settings.max_chunks)?;
    let mut ctx = Context::new(model, &plan.context_params(settings.threads))?;
    if !adapters.is_empty() {
        ctx.set_adapters(adapters)?;
    }
    let (mut n, mut sum, mut sum_sq) = (0usize, 0.0f64, 0.0f64);
    score_chunks(&mut [&mut ctx], &tokens, &plan, &mut |_, logits, next| {
        let nll = token_nll(logits[0], next);
        n += 1;
        sum += nll;
        sum_sq += nll * nll;
    })?;
    let count = n.max(1) as f64;
    let mean = sum / count;
    let variance = (sum_sq / count - mean * mean).max(0.0);
    let perplexity = mean.exp();
    let stderr = if n > 1 { perplexity * (variance / (count - 1.0)).sqrt() } else { 0.0 };
    Ok(PerplexityReport {
        ctx: plan.ctx,
        chunks: plan.chunks,
        tokens_scored: n,
        mean_nll: mean,
        perplexity,
        perplexity_stderr: stderr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llama::ModelParams;
    use crate::quant::{QualitySettings, compare_quality};
    use crate::test_support::tiny_model_path;

    const TEXT: &str = "The patient was admitted with chest pain and shortness of breath. \
        An ECG showed sinus rhythm. Troponin was negative twice. She was discharged on aspirin \
        and atorvastatin with follow-up in cardiology clinic in two weeks. ";

    #[test]
    fn agrees_with_quality_on_the_same_text_and_chunks() {
        let text = TEXT.repeat(6);
        let settings = PerplexitySettings { ctx: 64, max_chunks: Some(3), threads: 1 };
        let model = Model::load(tiny_model_path(), &ModelParams::default()).unwrap();
        let ours = perplexity(&model, &[], &text, &settings).unwrap();
        let quality = compare_quality(
            &QualitySettings {
                reference: tiny_model_path().into(),
                model: tiny_model_path().into(),
                ctx: 64,
                max_chunks: Some(3),
                threads: 1,
            },
            &text,
        )
        .unwrap();
        assert_eq!((ours.chunks, ours.tokens_scored), (quality.chunks, quality.tokens_scored));
        assert_eq!(ours.tokens_scored, 3 * (64 / 2 - 1));
        assert!((ours.perplexity - quality.model_perplexity).abs() < 1e-9 * quality.model_perplexity);
        assert!(ours.perplexity > 1.0 && ours.perplexity_stderr > 0.0);
        assert!(ours.perplexity_stderr < ours.perplexity);
    }
}
