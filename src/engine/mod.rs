//! The one decoder: sequences of one llama.cpp context, each with its own output
//! constraint, budget, repetition control and speculative copying from its prompt.
//! `extract`, `serve`, `eval` and `generate` feed it prompts and read what it chose.

mod choice;
mod lookup;
mod repeats;
mod sequence;

#[cfg(test)]
mod tests;

pub(crate) use sequence::{Chooser, Finish, Generation, GenerationSettings};

use std::time::Instant;

use crate::extract;
use crate::llama::{Batch, Context, ContextParams, LlamaError, LoraAdapter, Model};

/// Most tokens one decode call takes (llama.cpp lowers it to a small context's size).
pub(crate) const BATCH: usize = 512;

/// Tokens drafted and accepted by speculative copying, summed over sequences.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpeculationCounts {
    /// Draft tokens decoded for verification.
    pub drafted: usize,
    /// Of those, tokens greedy decoding chose too (kept without a step of their own).
    pub accepted: usize,
}

impl SpeculationCounts {
    /// Adds another run's counts.
    pub fn add(&mut self, other: SpeculationCounts) {
        self.drafted += other.drafted;
        self.accepted += other.accepted;
    }
}

/// A context of `sequences` sequences of `ctx_per_sequence` tokens each, with the LoRA
/// `adapters` attached: the context every front end decodes in.
pub(crate) fn open_context<'m>(
    model: &'m Model,
    adapters: &[(&'m LoraAdapter<'m>, f32)],
    ctx_per_sequence: u32,
    sequences: u32,
    threads: i32,
    max_batch: u32,
) -> Result<Context<'m>, LlamaError> {
    let params = ContextParams::per_sequence(ctx_per_sequence, sequences, threads, max_batch)?;
    let mut ctx = Context::new(model, &params)?;
    if !adapters.is_empty() {
        ctx.set_adapters(adapters)?;
    }
    Ok(ctx)
}

/// What one step of [`decode_step`] did.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct StepTimes {
    /// Tokens decoded.
    pub tokens: usize,
    /// Seconds in llama.cpp.
    pub decode_seconds: f64,
    /// Seconds choosing tokens (masks, sampling, forced text, verification).
    pub choose_seconds: f64,
}

/// One step of continuous batching: fills `batch` with what each sequence decodes next
/// (fewest pending tokens first, so generating sequences are never held up by a long
/// prompt), decodes it, and lets every sequence that got logits choose. A sequence whose
/// choice fails ends with [`Finish::Failed`]. When llama.cpp fails, the sequences in the
/// batch end too, their cache emptied, and the error is returned.
pub(crate) fn decode_step<'m>(
    model: &Model,
    factory: Option<&extract::ConstraintFactory>,
    ctx: &mut Context<'m>,
    batch: &mut Batch,
    sequences: &mut [&mut Generation<'m>],
) -> Result<StepTimes, LlamaError> {
    let mut times = StepTimes::default();
    batch.clear();
    let mut order: Vec<usize> = (0..sequences.len()).filter(|&i| sequences[i].finish.is_none()).collect();
    order.sort_by_key(|&i| sequences[i].pending());
    let mut added = Vec::new();
    for i in order {
        if batch.remaining() == 0 {
            break;
        }
        if sequences[i].add_to_batch(model, batch)? > 0 {
            added.push(i);
        }
    }
    if batch.is_empty() {
        return Ok(times);
    }
    // llama.cpp computes one row of logits with other kernels than several (on the CPU,
    // matrix products of one column skip the tiled path), which changes the last bits and
    // so, at near ties, a greedy choice. A second output row in every batch keeps each
    // sequence's logits independent of what else is decoded with it: with or without
    // drafts, with or without other sequences, the choices are the same.
    if batch.outputs() == 1 {
        if batch.len() >= 2 {
            let spare = (0..batch.len()).rev().find(|&i| !sequences.iter().any(|s| s.asks_logits_at(i)));
            if let Some(index) = spare {
                batch.request_logits(index);
            }
        } else if let Some(&i) = added.first() {
            sequences[i].pad(batch)?;
        }
    }
    let decoding = Instant::now();
    let decoded = ctx.decode(batch);
    times.decode_seconds = decoding.elapsed().as_secs_f64();
    if let Err(e) = decoded {
        for &i in &added {
            let sequence = &mut *sequences[i];
            ctx.remove_positions(sequence.seq, None, None);
            sequence.lose_cache();
            sequence.finish = Some(Finish::Failed("the engine failed to decode".into()));
        }
        return Err(e);
    }
    times.tokens = batch.len();
    let choosing = Instant::now();
    for &i in &added {
        let sequence = &mut *sequences[i];
        if let Err(e) = sequence.after_decode(model, factory, ctx) {
            sequence.finish = Some(Finish::Failed(crate::with_causes(&e)));
        }
    }
    times.choose_seconds = choosing.elapsed().as_secs_f64();
    Ok(times)
}
