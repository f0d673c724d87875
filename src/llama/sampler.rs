//! Token sampling through llama.cpp's sampler chain: greedy, temperature, top-k, top-p,
//! min-p, repetition and DRY penalties, a seed, and optionally a GBNF grammar.

use std::ffi::{CString, c_char};
use std::ptr::NonNull;

use serde::Serialize;

use super::{Context, LlamaError, Model, Token};

/// Sampling settings. `temperature <= 0` means greedy decoding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SamplingParams {
    /// Softmax temperature; 0 picks the most likely token every time.
    pub temperature: f32,
    /// Keep the k most likely tokens (0: off).
    pub top_k: i32,
    /// Keep the smallest set of tokens whose probability reaches p (1: off).
    pub top_p: f32,
    /// Drop tokens less likely than min_p times the best one (0: off).
    pub min_p: f32,
    /// Penalty on tokens seen in the last `repeat_last_n` (1: off).
    pub repeat_penalty: f32,
    /// Window of the repetition penalties, in tokens.
    pub repeat_last_n: i32,
    /// Penalty growing with how often a token was seen (0: off).
    pub frequency_penalty: f32,
    /// Penalty for any token seen at all (0: off).
    pub presence_penalty: f32,
    /// DRY ("don't repeat yourself") multiplier against repeated sequences (0: off).
    pub dry_multiplier: f32,
    /// DRY base of the exponential penalty.
    pub dry_base: f32,
    /// Repeats shorter than this are not penalised by DRY.
    pub dry_allowed_length: i32,
    /// Random seed.
    pub seed: u32,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            dry_multiplier: 0.0,
            dry_base: 1.75,
            dry_allowed_length: 2,
            seed: 0,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding with no penalties.
    pub fn greedy() -> SamplingParams {
        SamplingParams { temperature: 0.0, ..SamplingParams::default() }
    }
}

/// A sampler chain. It borrows the model whose vocabulary its grammar and DRY stages use.
#[derive(Debug)]
pub struct Sampler<'m> {
    ptr: NonNull<llama_sys::llama_sampler>,
    model: &'m Model,
}

// SAFETY: a sampler chain is plain owned state with no thread affinity; `&mut self` on
// every mutating method keeps use single-threaded.
unsafe impl Send for Sampler<'_> {}

impl<'m> Sampler<'m> {
    /// The chain for `params`: grammar (if any), truncation, penalties, then the final pick.
    pub fn new(model: &'m Model, params: &SamplingParams) -> Sampler<'m> {
        Self::build(model, params, None).expect("a chain without a grammar cannot fail")
    }

    /// As [`Sampler::new`], constrained by a GBNF grammar starting at rule `root`.
    pub fn with_grammar(
        model: &'m Model,
        params: &SamplingParams,
        grammar: &str,
        root: &str,
    ) -> Result<Sampler<'m>, LlamaError> {
        Self::build(model, params, Some((grammar, root)))
    }

    fn build(
        model: &'m Model,
        params: &SamplingParams,
        grammar: Option<(&str, &str)>,
    ) -> Result<Sampler<'m>, LlamaError> {
        // SAFETY: returns a struct of plain values by copy.
        let mut chain_params = unsafe { llama_sys::llama_sampler_chain_default_params() };
        chain_params.no_perf = true;
        // SAFETY: creates an empty chain we own; freed in Drop.
        let chain = unsafe { llama_sys::llama_sampler_chain_init(chain_params) };
        let ptr = NonNull::new(chain).expect("llama.cpp allocates sampler chains infallibly");
        let sampler = Sampler { ptr, model };
        let vocab = model.vocab_ptr();
        if let Some((grammar, root)) = grammar {
            let grammar = CString::new(grammar).map_err(|_| LlamaError::NulByte)?;
            let root = CString::new(root).map_err(|_| LlamaError::NulByte)?;
            // SAFETY: the vocab is valid while the model lives, and the sampler borrows the
            // model; both strings are NUL-terminated.
            let g = unsafe { llama_sys::llama_sampler_init_grammar(vocab, grammar.as_ptr(), root.as_ptr()) };
            if g.is_null() {
                return Err(LlamaError::Grammar);
            }
            sampler.push(g);
        }
        let greedy = params.temperature <= 0.0;
        if !greedy && params.top_k > 0 {
            // SAFETY: constructors return fresh samplers that the chain takes over.
            sampler.push(unsafe { llama_sys::llama_sampler_init_top_k(params.top_k) });
        }
        let penalties =
            params.repeat_penalty != 1.0 || params.frequency_penalty != 0.0 || params.presence_penalty != 0.0;
        if penalties && params.repeat_last_n != 0 {
            // SAFETY: as above.
            sampler.push(unsafe {
                llama_sys::llama_sampler_init_penalties(
                    model.n_vocab() as i32,
                    params.repeat_last_n,
                    params.repeat_penalty,
                    params.frequency_penalty,
                    params.presence_penalty,
                )
            });
        }
        if params.dry_multiplier > 0.0 {
            // Sequence breakers: a new line or punctuation ends a repeated run.
            let breakers: Vec<CString> =
                ["\n", ":", "\"", "*"].iter().map(|s| CString::new(*s).expect("no NUL")).collect();
            let mut breaker_ptrs: Vec<*const c_char> = breakers.iter().map(|b| b.as_ptr()).collect();
            // SAFETY: the vocab is valid; llama.cpp copies the breaker strings during the call.
            sampler.push(unsafe {
                llama_sys::llama_sampler_init_dry(
                    vocab,
                    params.dry_multiplier,
                    params.dry_base,
                    params.dry_allowed_length,
                    params.repeat_last_n,
                    breaker_ptrs.as_mut_ptr(),
                    breaker_ptrs.len(),
                )
            });
        }
        if greedy {
            // SAFETY: as above.
            sampler.push(unsafe { llama_sys::llama_sampler_init_greedy() });
        } else {
            if params.top_p < 1.0 {
                // SAFETY: as above.
                sampler.push(unsafe { llama_sys::llama_sampler_init_top_p(params.top_p, 1) });
            }
            if params.min_p > 0.0 {
                // SAFETY: as above.
                sampler.push(unsafe { llama_sys::llama_sampler_init_min_p(params.min_p, 1) });
            }
            // SAFETY: as above.
            sampler.push(unsafe { llama_sys::llama_sampler_init_temp(params.temperature) });
            // SAFETY: as above.
            sampler.push(unsafe { llama_sys::llama_sampler_init_dist(params.seed) });
        }
        Ok(sampler)
    }

    fn push(&self, sampler: *mut llama_sys::llama_sampler) {
        assert!(!sampler.is_null(), "llama.cpp returned no sampler");
        // SAFETY: the chain is valid; it takes ownership of `sampler` and frees it with
        // the chain.
        unsafe { llama_sys::llama_sampler_chain_add(self.ptr.as_ptr(), sampler) }
    }

    /// Picks the next token from output `i` of the context's last batch and records it in
    /// the sampler's history (penalties, grammar state).
    ///
    /// # Panics
    /// When the context runs another model, or output `i` has no logits: both are
    /// programming errors that llama.cpp would turn into an abort.
    pub fn sample(&mut self, ctx: &Context<'_>, i: usize) -> Token {
        assert!(std::ptr::eq(ctx.model(), self.model), "a sampler samples only contexts of its own model");
        assert!(ctx.logits(i).is_some(), "output {i} of the last batch has no logits");
        // SAFETY: the chain and context are valid and of the same model; output `i` has
        // logits (checked above).
        Token(unsafe { llama_sys::llama_sampler_sample(self.ptr.as_ptr(), ctx.as_ptr(), i as i32) })
    }

    /// Records a token chosen elsewhere (e.g. a prompt token) in the sampler's history.
    pub fn accept(&mut self, token: Token) {
        // SAFETY: the chain is valid and used by this thread only.
        unsafe { llama_sys::llama_sampler_accept(self.ptr.as_ptr(), token.0) }
    }

    /// Forgets history and grammar state.
    pub fn reset(&mut self) {
        // SAFETY: the chain is valid and used by this thread only.
        unsafe { llama_sys::llama_sampler_reset(self.ptr.as_ptr()) }
    }
}

impl Drop for Sampler<'_> {
    fn drop(&mut self) {
        // SAFETY: the chain was created by llama_sampler_chain_init and is freed once,
        // together with the samplers it owns.
        unsafe { llama_sys::llama_sampler_free(self.ptr.as_ptr()) }
    }
}
