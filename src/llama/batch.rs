//! A batch of tokens to decode, each with its position, sequences and whether its logits
//! are wanted.

use super::{LlamaError, Token};

/// An owned llama.cpp batch.
#[derive(Debug)]
pub struct Batch {
    raw: llama_sys::llama_batch,
    capacity: usize,
    n_seq_max: usize,
}

// SAFETY: the batch owns its heap arrays outright; nothing else points into them.
unsafe impl Send for Batch {}

impl Batch {
    /// A batch with room for `capacity` tokens, each in up to `n_seq_max` sequences.
    pub fn new(capacity: usize, n_seq_max: usize) -> Batch {
        let capacity = capacity.clamp(1, i32::MAX as usize);
        let n_seq_max = n_seq_max.clamp(1, i32::MAX as usize);
        // SAFETY: allocates arrays for `capacity` tokens (both counts fit i32); freed exactly
        // once in Drop.
        let mut raw = unsafe { llama_sys::llama_batch_init(capacity as i32, 0, n_seq_max as i32) };
        assert!(
            !raw.token.is_null() && !raw.pos.is_null() && !raw.seq_id.is_null() && !raw.logits.is_null(),
            "out of memory allocating a batch of {capacity} tokens"
        );
        raw.n_tokens = 0;
        Batch { raw, capacity, n_seq_max }
    }

    /// Tokens in the batch.
    pub fn len(&self) -> usize {
        self.raw.n_tokens as usize
    }

    /// Whether the batch holds no tokens.
    pub fn is_empty(&self) -> bool {
        self.raw.n_tokens == 0
    }

    /// Room for more tokens.
    pub fn remaining(&self) -> usize {
        self.capacity - self.len()
    }

    /// Empties the batch (the memory is kept).
    pub fn clear(&mut self) {
        self.raw.n_tokens = 0;
    }

    /// Adds `token` at position `pos` of `sequences`; `logits` asks for its output row.
    /// Returns the token's index in the batch, which `Context::logits` takes.
    pub fn add(
        &mut self,
        token: Token,
        pos: i32,
        sequences: &[i32],
        logits: bool,
    ) -> Result<usize, LlamaError> {
        let i = self.len();
        if i >= self.capacity {
            return Err(LlamaError::BatchFull { capacity: self.capacity });
        }
        assert!(
            !sequences.is_empty() && sequences.len() <= self.n_seq_max,
            "a token belongs to 1..={} sequences",
            self.n_seq_max
        );
        // SAFETY: `i < capacity`, and llama_batch_init allocated `capacity` entries in
        // each array and `n_seq_max` ids behind each `seq_id[i]`, checked just above.
        unsafe {
            *self.raw.token.add(i) = token.0;
            *self.raw.pos.add(i) = pos;
            *self.raw.n_seq_id.add(i) = sequences.len() as i32;
            let ids = *self.raw.seq_id.add(i);
            for (k, seq) in sequences.iter().enumerate() {
                *ids.add(k) = *seq;
            }
            *self.raw.logits.add(i) = i8::from(logits);
        }
        self.raw.n_tokens += 1;
        Ok(i)
    }

    /// Tokens of the batch that ask for logits.
    pub fn outputs(&self) -> usize {
        // SAFETY: the first `len()` entries of the logits array were written by `add`.
        (0..self.len()).filter(|&i| unsafe { *self.raw.logits.add(i) } != 0).count()
    }

    /// Asks for the logits of the token at `index` too (an index `add` returned).
    pub fn request_logits(&mut self, index: usize) {
        assert!(index < self.len(), "token {index} is not in the batch");
        // SAFETY: `index < len() <= capacity` entries were allocated and written.
        unsafe { *self.raw.logits.add(index) = 1 };
    }

    /// Adds a run of tokens of one sequence from position `start`; only the last asks for
    /// logits when `logits_last` is set.
    pub fn add_sequence(
        &mut self,
        tokens: &[Token],
        start: i32,
        seq: i32,
        logits_last: bool,
    ) -> Result<(), LlamaError> {
        if tokens.len() > self.remaining() {
            return Err(LlamaError::BatchFull { capacity: self.capacity });
        }
        for (k, token) in tokens.iter().enumerate() {
            let last = k + 1 == tokens.len();
            self.add(*token, start + k as i32, &[seq], logits_last && last)?;
        }
        Ok(())
    }

    /// Every sequence id used by the batch's tokens.
    pub(crate) fn sequences(&self) -> impl Iterator<Item = i32> + '_ {
        (0..self.len()).flat_map(move |i| {
            // SAFETY: `i < len <= capacity`; entries below `len` were written by `add`, which
            // stored `n_seq_id[i]` ids behind `seq_id[i]`.
            let (ids, n) = unsafe { (*self.raw.seq_id.add(i), *self.raw.n_seq_id.add(i)) };
            // SAFETY: as above: `n` ids were written behind `ids`.
            (0..n as usize).map(move |k| unsafe { *ids.add(k) })
        })
    }

    pub(crate) fn raw(&self) -> llama_sys::llama_batch {
        self.raw
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        // SAFETY: `raw` came from llama_batch_init and is freed exactly once.
        unsafe { llama_sys::llama_batch_free(self.raw) }
    }
}
