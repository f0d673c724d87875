//! A context: the KV cache and compute state for decoding, possibly several sequences
//! at once. It borrows its model (and any adapters attached to it).

use std::marker::PhantomData;
use std::ptr::NonNull;

use super::{Batch, LlamaError, LoraAdapter, Model};

/// How to create a context.
#[derive(Debug, Clone)]
pub struct ContextParams {
    /// Context length in tokens shared by all sequences (0: the model's training length).
    pub n_ctx: u32,
    /// Most tokens one `decode` call may submit.
    pub n_batch: u32,
    /// Most tokens computed in one physical step.
    pub n_ubatch: u32,
    /// Sequences that may live in the context at once.
    pub n_seq_max: u32,
    /// Threads for generation (one token per sequence).
    pub n_threads: i32,
    /// Threads for prompt processing (many tokens).
    pub n_threads_batch: i32,
    /// One KV buffer shared by all sequences (cells of a copied prefix are shared, not
    /// copied) instead of one stream per sequence.
    pub unified_kv: bool,
    /// Keep keys and values in F32 instead of F16: training back-propagates through them and
    /// the CPU has no F16 outer product.
    pub f32_kv: bool,
}

impl Default for ContextParams {
    fn default() -> Self {
        let threads = default_threads();
        ContextParams {
            n_ctx: 4096,
            n_batch: 512,
            n_ubatch: 512,
            n_seq_max: 1,
            n_threads: threads,
            n_threads_batch: threads,
            unified_kv: false,
            f32_kv: false,
        }
    }
}

impl ContextParams {
    /// A context of `sequences` sequences of `ctx_per_sequence` tokens each, taking up to
    /// `max_batch` tokens per decode call. The cache is one buffer for all sequences: a
    /// copied prefix shares its cells, and a batch is computed in one step (per-sequence
    /// streams split it into steps with as many tokens of each sequence, whose results then
    /// depend on what else is decoded).
    pub fn per_sequence(
        ctx_per_sequence: u32,
        sequences: u32,
        threads: i32,
        max_batch: u32,
    ) -> Result<ContextParams, LlamaError> {
        let n_ctx = ctx_per_sequence
            .checked_mul(sequences)
            .ok_or(LlamaError::ContextTooLarge { ctx_per_sequence, sequences })?;
        let n_batch = max_batch.min(n_ctx).max(1);
        Ok(ContextParams {
            n_ctx,
            n_batch,
            n_ubatch: n_batch.min(512),
            n_seq_max: sequences,
            n_threads: threads,
            n_threads_batch: threads,
            unified_kv: true,
            f32_kv: false,
        })
    }
}

/// The number of CPU cores, the thread count llama.cpp is fastest with on a laptop.
pub fn default_threads() -> i32 {
    std::thread::available_parallelism().map_or(4, |n| n.get() as i32)
}

/// Timing counters kept by llama.cpp for a context.
#[derive(Debug, Clone, Copy, Default)]
pub struct PerfCounters {
    /// Milliseconds spent evaluating prompt tokens.
    pub prompt_ms: f64,
    /// Prompt tokens evaluated.
    pub prompt_tokens: i32,
    /// Milliseconds spent evaluating generated tokens.
    pub generation_ms: f64,
    /// Generated tokens evaluated.
    pub generation_tokens: i32,
}

/// A llama.cpp context over a borrowed model.
#[derive(Debug)]
pub struct Context<'m> {
    ptr: NonNull<llama_sys::llama_context>,
    model: &'m Model,
    n_vocab: usize,
    _not_sync: PhantomData<std::cell::Cell<()>>,
}

// SAFETY: a llama_context may be used from any one thread at a time; `Context` is not
// `Sync` (PhantomData<Cell>), so Rust's borrow rules keep use single-threaded.
unsafe impl Send for Context<'_> {}

impl<'m> Context<'m> {
    /// Creates a context for `model`.
    pub fn new(model: &'m Model, params: &ContextParams) -> Result<Context<'m>, LlamaError> {
        // SAFETY: returns a struct of plain values by copy.
        let mut raw = unsafe { llama_sys::llama_context_default_params() };
        raw.n_ctx = params.n_ctx;
        raw.n_batch = params.n_batch;
        raw.n_ubatch = params.n_ubatch.min(params.n_batch);
        raw.n_seq_max = params.n_seq_max.max(1);
        raw.n_threads = params.n_threads;
        raw.n_threads_batch = params.n_threads_batch;
        raw.no_perf = false;
        raw.kv_unified = params.unified_kv;
        if params.f32_kv {
            raw.type_k = llama_sys::GGML_TYPE_F32;
            raw.type_v = llama_sys::GGML_TYPE_F32;
        }
        let _shared = model.adapters_read();
        // SAFETY: the model pointer is valid for 'm, which outlives the context; `raw` is
        // a complete parameter struct; the read lock keeps the adapter set still; null
        // (failure) is handled below.
        let ptr = unsafe { llama_sys::llama_init_from_model(model.as_ptr(), raw) };
        let ptr = NonNull::new(ptr).ok_or(LlamaError::ContextCreate { n_ctx: params.n_ctx })?;
        Ok(Context { ptr, model, n_vocab: model.n_vocab(), _not_sync: PhantomData })
    }

    pub(crate) fn as_ptr(&self) -> *mut llama_sys::llama_context {
        self.ptr.as_ptr()
    }

    /// The model this context runs.
    pub fn model(&self) -> &'m Model {
        self.model
    }

    /// Context length in tokens.
    pub fn n_ctx(&self) -> u32 {
        // SAFETY: the context pointer is valid while `self` lives.
        unsafe { llama_sys::llama_n_ctx(self.ptr.as_ptr()) }
    }

    /// Context length available to each sequence.
    pub fn n_ctx_per_sequence(&self) -> u32 {
        // SAFETY: the context pointer is valid while `self` lives.
        unsafe { llama_sys::llama_n_ctx_seq(self.ptr.as_ptr()) }
    }

    /// Most tokens one `decode` call accepts.
    pub fn n_batch(&self) -> u32 {
        // SAFETY: the context pointer is valid while `self` lives.
        unsafe { llama_sys::llama_n_batch(self.ptr.as_ptr()) }
    }

    /// Sequences the context holds at most.
    pub fn n_seq_max(&self) -> u32 {
        // SAFETY: the context pointer is valid while `self` lives.
        unsafe { llama_sys::llama_n_seq_max(self.ptr.as_ptr()) }
    }

    /// Changes the thread counts.
    pub fn set_threads(&mut self, generation: i32, batch: i32) {
        // SAFETY: the context pointer is valid and used by this thread only.
        unsafe { llama_sys::llama_set_n_threads(self.ptr.as_ptr(), generation, batch) }
    }

    /// Evaluates a batch, appending its tokens to their sequences' KV cache.
    pub fn decode(&mut self, batch: &Batch) -> Result<(), LlamaError> {
        if batch.is_empty() {
            return Ok(());
        }
        // llama.cpp asserts (aborts the process) on a batch larger than n_batch.
        let n_batch = self.n_batch() as usize;
        if batch.len() > n_batch {
            return Err(LlamaError::BatchTooLarge { n_tokens: batch.len(), n_batch });
        }
        let max_seq = self.n_seq_max() as i32;
        if let Some(seq) = batch.sequences().find(|s| *s < 0 || *s >= max_seq) {
            return Err(LlamaError::BadSequence { seq, n_seq_max: max_seq as u32 });
        }
        let _shared = self.model.adapters_read();
        // SAFETY: the context is valid; `batch.raw()` describes `batch.len()` initialised
        // entries whose arrays stay alive for the call (the batch is borrowed); every
        // sequence id is in range (checked above); the adapter set is held still.
        let status = unsafe { llama_sys::llama_decode(self.ptr.as_ptr(), batch.raw()) };
        match status {
            0 => Ok(()),
            1 => Err(LlamaError::ContextFull { n_tokens: batch.len() }),
            status => Err(LlamaError::Decode { status }),
        }
    }

    /// Logits of the `i`-th output of the last batch (an index into the batch, the same
    /// index the token was added at), one per vocabulary entry.
    pub fn logits(&self, i: usize) -> Option<&[f32]> {
        let i = i32::try_from(i).ok()?;
        // SAFETY: the context is valid; llama.cpp returns null for an index that had no
        // output, which we turn into None.
        let ptr = unsafe { llama_sys::llama_get_logits_ith(self.ptr.as_ptr(), i) };
        if ptr.is_null() {
            return None;
        }
        // SAFETY: a non-null row holds n_vocab floats, valid until the next decode, which
        // needs `&mut self` and so cannot happen while this borrow lives.
        Some(unsafe { std::slice::from_raw_parts(ptr, self.n_vocab) })
    }

    /// Checks that the `i`-th output's logits are numbers. Damaged weights make every logit
    /// NaN; samplers then return some token without complaint (generation printed nothing
    /// and exited 0). Infinities are left alone: they still order tokens.
    pub fn check_logits(&self, i: usize) -> Result<(), LlamaError> {
        match self.logits(i) {
            Some(row) if row.iter().any(|l| l.is_nan()) => Err(LlamaError::NanLogits),
            _ => Ok(()),
        }
    }

    fn memory(&self) -> llama_sys::llama_memory_t {
        // SAFETY: the context is valid; the memory handle lives as long as the context.
        unsafe { llama_sys::llama_get_memory(self.ptr.as_ptr()) }
    }

    /// Empties the KV cache of every sequence.
    pub fn clear_memory(&mut self) {
        // SAFETY: the memory handle belongs to this live context.
        unsafe { llama_sys::llama_memory_clear(self.memory(), true) }
    }

    fn has_sequence(&self, seq: i32) -> bool {
        seq >= 0 && (seq as u32) < self.n_seq_max()
    }

    /// Removes positions `[from, to)` of sequence `seq` (`None` = open end). Returns false
    /// when the cache cannot remove a partial range (recurrent models) or `seq` is not a
    /// sequence of this context.
    pub fn remove_positions(&mut self, seq: i32, from: Option<i32>, to: Option<i32>) -> bool {
        if !self.has_sequence(seq) {
            return false;
        }
        // SAFETY: the memory handle belongs to this live context; `seq` is in range (llama.cpp
        // asserts otherwise); -1 means "open".
        unsafe { llama_sys::llama_memory_seq_rm(self.memory(), seq, from.unwrap_or(-1), to.unwrap_or(-1)) }
    }

    /// Makes sequence `dst` share the cached positions `[from, to)` of `src`.
    pub fn copy_sequence(&mut self, src: i32, dst: i32, from: Option<i32>, to: Option<i32>) {
        // SAFETY: the memory handle belongs to this live context; -1 means "open".
        unsafe {
            llama_sys::llama_memory_seq_cp(self.memory(), src, dst, from.unwrap_or(-1), to.unwrap_or(-1))
        }
    }

    /// Drops every sequence but `seq`.
    pub fn keep_only_sequence(&mut self, seq: i32) {
        // SAFETY: the memory handle belongs to this live context.
        unsafe { llama_sys::llama_memory_seq_keep(self.memory(), seq) }
    }

    /// The last cached position of `seq`, or `None` when it is empty.
    pub fn last_position(&self, seq: i32) -> Option<i32> {
        // SAFETY: the memory handle belongs to this live context.
        let pos = unsafe { llama_sys::llama_memory_seq_pos_max(self.memory(), seq) };
        (pos >= 0).then_some(pos)
    }

    /// Attaches LoRA adapters with their scales, replacing any attached before.
    pub fn set_adapters(&mut self, adapters: &[(&'m LoraAdapter<'m>, f32)]) -> Result<(), LlamaError> {
        if let Some((adapter, _)) = adapters.iter().find(|(a, _)| !std::ptr::eq(a.model(), self.model)) {
            return Err(LlamaError::AdapterMismatch {
                path: adapter.path().to_path_buf(),
                reason: "it was loaded for another model".into(),
            });
        }
        let mut ptrs: Vec<*mut llama_sys::llama_adapter_lora> =
            adapters.iter().map(|(a, _)| a.as_ptr()).collect();
        let mut scales: Vec<f32> = adapters.iter().map(|(_, s)| *s).collect();
        // SAFETY: both arrays hold `adapters.len()` entries; each adapter belongs to this
        // context's model and outlives the context ('m).
        let status = unsafe {
            llama_sys::llama_set_adapters_lora(
                self.ptr.as_ptr(),
                ptrs.as_mut_ptr(),
                ptrs.len(),
                scales.as_mut_ptr(),
            )
        };
        if status == 0 { Ok(()) } else { Err(LlamaError::AdapterAttach) }
    }

    /// llama.cpp's timing counters since the context was created or last reset.
    pub fn perf(&self) -> PerfCounters {
        // SAFETY: the context is valid; returns a struct of plain values.
        let data = unsafe { llama_sys::llama_perf_context(self.ptr.as_ptr()) };
        PerfCounters {
            prompt_ms: data.t_p_eval_ms,
            prompt_tokens: data.n_p_eval,
            generation_ms: data.t_eval_ms,
            generation_tokens: data.n_eval,
        }
    }

    /// Resets the timing counters.
    pub fn reset_perf(&mut self) {
        // SAFETY: the context is valid and used by this thread only.
        unsafe { llama_sys::llama_perf_context_reset(self.ptr.as_ptr()) }
    }
}

impl Drop for Context<'_> {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from llama_init_from_model and is freed exactly once.
        unsafe { llama_sys::llama_free(self.ptr.as_ptr()) }
    }
}
