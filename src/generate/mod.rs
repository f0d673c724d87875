//! Text generation: evaluate a prompt, then sample and stream tokens until the model ends
//! its turn or a limit is reached. Used by `medllm generate` and the server.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::llama::{Batch, Context, LlamaError, Sampler, Token, Utf8Stream};

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model produced an end-of-generation token.
    EndOfGeneration,
    /// `max_tokens` were generated.
    MaxTokens,
    /// The context has no room for more tokens.
    ContextFull,
    /// The caller asked to stop (e.g. the reader went away).
    Cancelled,
}

/// What a generation took.
#[derive(Debug, Clone, Serialize)]
pub struct GenerationStats {
    /// Prompt tokens evaluated.
    pub prompt_tokens: usize,
    /// Tokens generated (the end token not counted).
    pub generated_tokens: usize,
    /// Time to evaluate the prompt.
    pub prompt_time: Duration,
    /// Time from the first sampled token to the last.
    pub generation_time: Duration,
    /// Why it stopped.
    pub stop: StopReason,
}

impl GenerationStats {
    /// Prompt tokens per second.
    pub fn prompt_tokens_per_second(&self) -> f64 {
        per_second(self.prompt_tokens, self.prompt_time)
    }

    /// Generated tokens per second, sampling included.
    pub fn generation_tokens_per_second(&self) -> f64 {
        per_second(self.generated_tokens, self.generation_time)
    }
}

fn per_second(n: usize, time: Duration) -> f64 {
    if time.is_zero() { 0.0 } else { n as f64 / time.as_secs_f64() }
}

/// What to do with each piece of generated text: `Ok(true)` goes on, `Ok(false)` stops.
pub type OnText<'a, E> = dyn FnMut(&str) -> Result<bool, E> + 'a;

/// Errors of generation: the engine's, or the text sink's.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError<E: std::error::Error + 'static> {
    /// llama.cpp failed.
    #[error(transparent)]
    Llama(#[from] LlamaError),
    /// The prompt is empty.
    #[error("the prompt is empty")]
    EmptyPrompt,
    /// The prompt does not fit the context.
    #[error(
        "the prompt has {prompt} tokens but the context holds {n_ctx}; raise --ctx or shorten the prompt"
    )]
    PromptTooLong {
        /// Prompt tokens.
        prompt: usize,
        /// Context size.
        n_ctx: u32,
    },
    /// The sink refused text.
    #[error(transparent)]
    Sink(E),
}

/// When generation stops.
#[derive(Debug, Clone, Copy)]
pub struct GenerationLimits {
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Go on past end-of-generation tokens (for benchmarks).
    pub ignore_end: bool,
}

impl GenerationLimits {
    /// Up to `max_tokens`, stopping where the model ends its turn.
    pub fn new(max_tokens: usize) -> GenerationLimits {
        GenerationLimits { max_tokens, ignore_end: false }
    }
}

/// Evaluates `prompt` in sequence 0 of a fresh `ctx`, then generates within `limits`,
/// handing text to `on_text` as soon as it forms whole characters.
pub fn generate<E: std::error::Error + 'static>(
    ctx: &mut Context<'_>,
    sampler: &mut Sampler<'_>,
    prompt: &[Token],
    limits: GenerationLimits,
    on_text: &mut OnText<'_, E>,
) -> Result<GenerationStats, GenerateError<E>> {
    let max_tokens = limits.max_tokens;
    if prompt.is_empty() {
        return Err(GenerateError::EmptyPrompt);
    }
    let n_ctx = ctx.n_ctx_per_sequence();
    if prompt.len() >= n_ctx as usize {
        return Err(GenerateError::PromptTooLong { prompt: prompt.len(), n_ctx });
    }
    let model = ctx.model();
    let n_batch = ctx.n_batch() as usize;
    let mut batch = Batch::new(n_batch, 1);

    let started = Instant::now();
    let mut pos = 0i32;
    for chunk in prompt.chunks(n_batch) {
        batch.clear();
        let last_chunk = pos as usize + chunk.len() == prompt.len();
        batch.add_sequence(chunk, pos, 0, last_chunk)?;
        ctx.decode(&batch)?;
        pos += chunk.len() as i32;
    }
    let prompt_time = started.elapsed();
    let mut logits_index = batch.len() - 1;

    let started = Instant::now();
    let mut text = Utf8Stream::default();
    let mut generated = 0usize;
    let stop = loop {
        if generated >= max_tokens {
            break StopReason::MaxTokens;
        }
        ctx.check_logits(logits_index)?;
        let token = sampler.sample(ctx, logits_index);
        if !limits.ignore_end && model.is_end_of_generation(token) {
            break StopReason::EndOfGeneration;
        }
        generated += 1;
        let piece = text.push(&model.token_piece(token, false));
        if !piece.is_empty() && !on_text(&piece).map_err(GenerateError::Sink)? {
            break StopReason::Cancelled;
        }
        if pos as u32 + 1 >= n_ctx {
            break StopReason::ContextFull;
        }
        if generated >= max_tokens {
            break StopReason::MaxTokens;
        }
        batch.clear();
        logits_index = batch.add(token, pos, &[0], true)?;
        ctx.decode(&batch)?;
        pos += 1;
    };
    let rest = text.finish();
    if !rest.is_empty() {
        on_text(&rest).map_err(GenerateError::Sink)?;
    }
    Ok(GenerationStats {
        prompt_tokens: prompt.len(),
        generated_tokens: generated,
        prompt_time,
        generation_time: started.elapsed(),
        stop,
    })
}
