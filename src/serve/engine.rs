//! The engine: one thread owns the context and decodes every request as a sequence of it.
//! Continuous batching: each step decodes one batch holding the next token of every
//! generating sequence plus prompt tokens of starting ones; a request starts as soon as a
//! sequence is free. A free sequence keeps its cached tokens, and a new request goes to the
//! one sharing the longest prefix with its prompt, which is then not evaluated again, but
//! only within the request's [`CacheScope`]: one client's cached prompt never serves (or
//! shows in the counts of) another's.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::mpsc::UnboundedSender;

use super::metrics::Metrics;
use crate::engine::{self, BATCH, Chooser, Finish, Generation, GenerationSettings};
use crate::extract::{ConstraintFactory, DocumentConstraint};
use crate::llama::{Batch, Context, LoraAdapter, Model, Sampler, SamplingParams, Token, Utf8Stream};

/// Whose cached prompts a request may reuse: the API key it came with and the
/// `cache_salt` it names. Reuse of a cached prefix is observable (in `cached_tokens` and in
/// time), so it is allowed only between requests of one scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CacheScope([u8; 32]);

impl CacheScope {
    /// The scope of a request made with the key whose sha256 is `key` (none on a server
    /// without keys) and naming `salt`.
    pub fn new(key: Option<&[u8; 32]>, salt: Option<&str>) -> CacheScope {
        let mut hasher = Sha256::new();
        hasher.update(b"medllm cache scope\0");
        match key {
            Some(digest) => {
                hasher.update([1]);
                hasher.update(digest);
            }
            None => hasher.update([0]),
        }
        // The salt's length first, so that no key and salt pair reads as another.
        match salt {
            Some(salt) => {
                hasher.update([1]);
                hasher.update((salt.len() as u64).to_le_bytes());
                hasher.update(salt.as_bytes());
            }
            None => hasher.update([0]),
        }
        CacheScope(hasher.finalize().into())
    }
}

/// One generation request, as the engine takes it.
pub(crate) struct Job {
    /// The whole prompt, already templated and tokenised.
    pub prompt: Vec<Token>,
    /// Which cached prompts it may reuse.
    pub cache_scope: CacheScope,
    /// A schema or grammar every token must follow.
    pub constraint: Option<DocumentConstraint>,
    /// Sampling of unconstrained text; temperature and seed also apply under a constraint.
    pub sampling: SamplingParams,
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Texts that end the answer (not included in it).
    pub stop: Vec<String>,
    /// Under a constraint: roll back a repeated array item and close the array, as
    /// `medllm extract` does. The text is then sent whole at the end (it may be taken back).
    pub repeat_control: bool,
    /// After this the request ends with [`FinishReason::Timeout`].
    pub deadline: Instant,
    /// Where text and the end go; a closed receiver (the client left) cancels the job.
    pub events: UnboundedSender<Event>,
}

/// What the engine tells a request.
#[derive(Debug)]
pub(crate) enum Event {
    /// Generated text (whole characters).
    Text(String),
    /// The end, with counts.
    Done(Finished),
}

/// Why a generation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FinishReason {
    /// End of turn, end of the constraint, or a stop text.
    Stop,
    /// The token limit (or the sequence's room in the context) was reached.
    Length,
    /// The per-request time ran out.
    Timeout,
    /// The engine failed; the message holds no request text.
    Error(String),
}

/// The end of a request.
#[derive(Debug, Clone)]
pub(crate) struct Finished {
    /// Why.
    pub reason: FinishReason,
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Of those, tokens found already cached (not evaluated again).
    pub cached_tokens: usize,
    /// Tokens generated.
    pub generated_tokens: usize,
    /// From the start of the request in the engine to its first generated token.
    pub prompt_time: Duration,
    /// From then to the end.
    pub generation_time: Duration,
}

/// How the engine's context is laid out.
#[derive(Debug, Clone)]
pub(crate) struct EngineSettings {
    /// Sequences decoded together.
    pub parallel: usize,
    /// Context tokens per sequence (llama.cpp may round the context up; a sequence still
    /// holds no more than this).
    pub ctx_per_sequence: u32,
    /// Threads.
    pub threads: i32,
    /// Speculative copying from the prompt for greedy constrained requests.
    pub speculate: bool,
}

struct Active<'m> {
    job: Job,
    generation: Generation<'m>,
    /// Tokens of the job's prompt already in the cache when it started.
    reused: usize,
    /// Generated tokens whose text was sent (or held back for stop texts).
    streamed: usize,
    text: Utf8Stream,
    /// Text held back because it may be the start of a stop text.
    held: String,
    started: Instant,
    first_token: Option<Instant>,
    finished: Option<FinishReason>,
}

struct Sequence<'m> {
    /// Tokens in this sequence's KV cache, in order from position 0 (while a request
    /// runs: those it reused).
    cached: Vec<Token>,
    /// The scope of the request that left them there.
    scope: Option<CacheScope>,
    active: Option<Active<'m>>,
}

/// Runs the engine until every sender of `jobs` is gone. Model load errors are the
/// caller's; this returns an error only when the context cannot be made.
pub(crate) fn run<'m>(
    model: &'m Model,
    adapters: &[(&'m LoraAdapter<'m>, f32)],
    factory: Option<&ConstraintFactory>,
    settings: &EngineSettings,
    jobs: Receiver<Job>,
    metrics: Arc<Metrics>,
    ready: impl FnOnce(),
) -> Result<(), crate::llama::LlamaError> {
    let parallel = settings.parallel.max(1);
    let mut ctx = engine::open_context(
        model,
        adapters,
        settings.ctx_per_sequence,
        parallel as u32,
        settings.threads,
        BATCH as u32,
    )?;
    ready();
    let room = (ctx.n_ctx_per_sequence() as usize).min(settings.ctx_per_sequence as usize);
    let mut sequences: Vec<Sequence<'_>> =
        (0..parallel).map(|_| Sequence { cached: Vec::new(), scope: None, active: None }).collect();
    // llama.cpp takes no more tokens per decode than its batch size, which it lowers to a
    // small context's size.
    let mut batch = Batch::new(BATCH.min(ctx.n_batch() as usize).max(1), 1);
    let mut open = true;
    loop {
        // Take new requests into free sequences; wait for one when nothing runs.
        while open && sequences.iter().any(|s| s.active.is_none()) {
            let busy = sequences.iter().any(|s| s.active.is_some());
            let job = if busy {
                match jobs.try_recv() {
                    Ok(job) => job,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            } else {
                match jobs.recv_timeout(Duration::from_millis(500)) {
                    Ok(job) => job,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            };
            metrics.queued.fetch_sub(1, Ordering::Relaxed);
            start(model, factory, &mut ctx, &mut sequences, job, room, settings.speculate, &metrics);
        }
        if !open && sequences.iter().all(|s| s.active.is_none()) {
            return Ok(());
        }

        // Requests whose client left or whose time is up end here, freeing their sequence.
        let now = Instant::now();
        for sequence in sequences.iter_mut() {
            if let Some(active) = &mut sequence.active
                && active.finished.is_none()
            {
                if active.job.events.is_closed() {
                    metrics.cancelled.fetch_add(1, Ordering::Relaxed);
                    active.finished = Some(FinishReason::Stop);
                } else if now >= active.job.deadline {
                    active.finished = Some(FinishReason::Timeout);
                }
            }
        }
        finish_done(&mut sequences, &metrics);
        if sequences.iter().all(|s| s.active.is_none()) {
            continue;
        }

        let mut running: Vec<&mut Generation<'m>> =
            sequences.iter_mut().filter_map(|s| s.active.as_mut()).map(|a| &mut a.generation).collect();
        match engine::decode_step(model, factory, &mut ctx, &mut batch, &mut running) {
            Ok(times) => {
                metrics.decoded_tokens.fetch_add(times.tokens as u64, Ordering::Relaxed);
            }
            // Not expected (room is checked at admission): the requests in the batch fail.
            Err(e) => tracing::error!("decoding failed: {e}"),
        }
        for sequence in sequences.iter_mut() {
            if let Some(active) = &mut sequence.active {
                after_step(active);
            }
        }
        finish_done(&mut sequences, &metrics);
    }
}

/// Puts `job` into the free sequence sharing the longest prompt prefix with it.
#[allow(clippy::too_many_arguments)]
fn start<'m>(
    model: &'m Model,
    factory: Option<&ConstraintFactory>,
    ctx: &mut Context<'m>,
    sequences: &mut [Sequence<'m>],
    mut job: Job,
    room: usize,
    speculate: bool,
    metrics: &Metrics,
) {
    let fail = |job: Job, message: &str| {
        metrics.failed.fetch_add(1, Ordering::Relaxed);
        let _ = job.events.send(Event::Done(Finished {
            reason: FinishReason::Error(message.to_string()),
            prompt_tokens: job.prompt.len(),
            cached_tokens: 0,
            generated_tokens: 0,
            prompt_time: Duration::ZERO,
            generation_time: Duration::ZERO,
        }));
    };
    if job.prompt.is_empty() {
        return fail(job, "the prompt is empty");
    }
    if job.prompt.len() >= room {
        let message =
            format!("the prompt has {} tokens but a sequence holds {room} (raise --ctx)", job.prompt.len());
        return fail(job, &message);
    }
    // The longest prefix within the request's scope; failing that an empty sequence, so
    // that other scopes' caches stay for them.
    let (index, common) = sequences
        .iter()
        .enumerate()
        .filter(|(_, s)| s.active.is_none())
        .map(|(i, s)| {
            let common =
                if s.scope == Some(job.cache_scope) { common_prefix(&s.cached, &job.prompt) } else { 0 };
            (i, common, s.cached.is_empty())
        })
        .max_by_key(|&(i, n, empty)| (n, empty, std::cmp::Reverse(i)))
        .map(|(i, n, _)| (i, n))
        .expect("start is called with a free sequence");
    // At least the last prompt token is decoded again, for its logits.
    let mut keep = common.min(job.prompt.len() - 1);
    let sequence = &mut sequences[index];
    if !ctx.remove_positions(index as i32, Some(keep as i32), None) {
        ctx.remove_positions(index as i32, None, None);
        keep = 0;
    }
    sequence.cached.truncate(keep);
    sequence.scope = Some(job.cache_scope);
    metrics.prompt_tokens.fetch_add(job.prompt.len() as u64, Ordering::Relaxed);
    metrics.cached_prompt_tokens.fetch_add(keep as u64, Ordering::Relaxed);
    let chooser = match job.constraint.take() {
        Some(constraint) => Chooser::Guided(Box::new(constraint)),
        None => Chooser::Sampler(Sampler::new(model, &job.sampling)),
    };
    let budget = job.max_tokens.min(room.saturating_sub(job.prompt.len() + 1));
    let settings = GenerationSettings {
        budget,
        temperature: job.sampling.temperature,
        seed: u64::from(job.sampling.seed),
        repeat_control: job.repeat_control,
        speculate_from: speculate.then(|| job.prompt.clone()),
    };
    let prompt = job.prompt[keep..].to_vec();
    let generation = Generation::new(model, factory, index as i32, keep, prompt, chooser, settings);
    sequence.active = Some(Active {
        job,
        generation,
        reused: keep,
        streamed: 0,
        text: Utf8Stream::default(),
        held: String::new(),
        started: Instant::now(),
        first_token: None,
        finished: None,
    });
    set_active_gauge(sequences, metrics);
}

/// `medllm_sequences_active`, updated whenever a sequence starts or ends (before the end
/// is reported, so that a client that has its answer reads the gauge without it).
fn set_active_gauge(sequences: &[Sequence<'_>], metrics: &Metrics) {
    metrics.active.store(sequences.iter().filter(|s| s.active.is_some()).count() as i64, Ordering::Relaxed);
}

fn common_prefix(a: &[Token], b: &[Token]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// After a decoding step: sends the text chosen since the last one (under repetition
/// control, which may take text back, the text goes whole at the end) and maps the
/// engine's end of the sequence to the request's.
fn after_step(active: &mut Active<'_>) {
    let generation = &active.generation;
    if active.first_token.is_none() && !generation.in_prompt() {
        active.first_token = Some(Instant::now());
    }
    if !active.job.repeat_control && generation.tokens.len() > active.streamed {
        let start = if active.streamed == 0 { 0 } else { generation.token_ends[active.streamed - 1] };
        let bytes = generation.output[start..].to_vec();
        active.streamed = generation.tokens.len();
        let piece = active.text.push(&bytes);
        if emit(active, &piece) {
            return;
        }
    }
    if active.finished.is_none() {
        active.finished = match &active.generation.finish {
            None => None,
            Some(Finish::Stop) => Some(FinishReason::Stop),
            Some(Finish::Length) => Some(FinishReason::Length),
            Some(Finish::Failed(message)) => {
                tracing::warn!("a request failed while choosing tokens: {message}");
                Some(FinishReason::Error("the constraint failed".into()))
            }
        };
    }
}

/// Sends `piece`, holding back text that may begin a stop text, and ending the request at
/// a stop text.
fn emit(active: &mut Active<'_>, piece: &str) -> bool {
    if piece.is_empty() {
        return false;
    }
    if active.job.stop.is_empty() {
        let _ = active.job.events.send(Event::Text(piece.to_string()));
        return false;
    }
    active.held.push_str(piece);
    if let Some(at) = active.job.stop.iter().filter_map(|s| active.held.find(s.as_str())).min() {
        let before = active.held[..at].to_string();
        if !before.is_empty() {
            let _ = active.job.events.send(Event::Text(before));
        }
        active.held.clear();
        active.finished = Some(FinishReason::Stop);
        return true;
    }
    // Keep the longest tail that is a prefix of some stop text.
    let keep = active
        .job
        .stop
        .iter()
        .map(|s| {
            (1..s.len().min(active.held.len()) + 1)
                .rev()
                .find(|&n| {
                    active.held.is_char_boundary(active.held.len() - n)
                        && s.starts_with(&active.held[active.held.len() - n..])
                })
                .unwrap_or(0)
        })
        .max()
        .unwrap_or(0);
    let send = active.held.len() - keep;
    if send > 0 {
        let out: String = active.held.drain(..send).collect();
        let _ = active.job.events.send(Event::Text(out));
    }
    false
}

/// Ends every request that finished: flushes held text, reports, frees the sequence.
fn finish_done(sequences: &mut [Sequence<'_>], metrics: &Metrics) {
    for sequence in sequences.iter_mut() {
        let done = sequence.active.as_ref().is_some_and(|a| a.finished.is_some());
        if !done {
            continue;
        }
        let mut active = sequence.active.take().expect("checked above");
        let reason = active.finished.take().expect("checked above");
        metrics.active.fetch_sub(1, Ordering::Relaxed);
        if active.job.repeat_control {
            let text = String::from_utf8_lossy(&active.generation.output).into_owned();
            emit(&mut active, &text);
        } else {
            let rest = active.text.finish();
            emit(&mut active, &rest);
        }
        if !active.held.is_empty() {
            let held = std::mem::take(&mut active.held);
            let _ = active.job.events.send(Event::Text(held));
        }
        // What is cached stays for reuse (tokens chosen but not decoded are not in it).
        match active.generation.cached_tokens() {
            Some(tokens) => sequence.cached.extend(tokens),
            None => sequence.cached.clear(),
        }
        let first = active.first_token.unwrap_or_else(Instant::now);
        let generated = active.generation.tokens.len();
        metrics.generated_tokens.fetch_add(generated as u64, Ordering::Relaxed);
        let _ = active.job.events.send(Event::Done(Finished {
            reason,
            prompt_tokens: active.job.prompt.len(),
            cached_tokens: active.reused,
            generated_tokens: generated,
            prompt_time: first.duration_since(active.started),
            generation_time: first.elapsed(),
        }));
    }
}
