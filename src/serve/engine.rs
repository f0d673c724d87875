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

use llguidance::toktrie::SimpleVob;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc::UnboundedSender;

use super::metrics::Metrics;
use crate::extract::{
    ArrayRepeatScanner, ConstraintFactory, DocumentConstraint, ExtractError, SplitMix, choose, only_token,
};
use crate::llama::{
    Batch, Context, ContextParams, LoraAdapter, Model, Sampler, SamplingParams, Token, Utf8Stream,
};

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
}

const BATCH: usize = 512;

struct Active<'m> {
    job: Job,
    /// Tokens to decode next, starting at `pos`.
    pending: Vec<Token>,
    /// Whether `pending` is (still) prompt.
    in_prompt: bool,
    sampler: Option<Sampler<'m>>,
    rng: SplitMix,
    next_mask: Option<SimpleVob>,
    /// Generated tokens, the output bytes, and where each token's bytes end.
    tokens: Vec<Token>,
    output: Vec<u8>,
    token_ends: Vec<usize>,
    scanner: ArrayRepeatScanner,
    text: Utf8Stream,
    /// Text held back because it may be the start of a stop text.
    held: String,
    cached_tokens: usize,
    started: Instant,
    first_token: Option<Instant>,
    logits_at: Option<usize>,
    finished: Option<FinishReason>,
}

struct Sequence<'m> {
    /// Tokens in this sequence's KV cache, in order from position 0.
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
    let params = ContextParams {
        n_ctx: settings.ctx_per_sequence.saturating_mul(parallel as u32),
        n_batch: BATCH as u32,
        n_ubatch: BATCH as u32,
        n_seq_max: parallel as u32,
        n_threads: settings.threads,
        n_threads_batch: settings.threads,
        unified_kv: false,
        f32_kv: false,
    };
    let mut ctx = Context::new(model, &params)?;
    if !adapters.is_empty() {
        ctx.set_adapters(adapters)?;
    }
    ready();
    let room = (ctx.n_ctx_per_sequence() as usize).min(settings.ctx_per_sequence as usize);
    let mut sequences: Vec<Sequence<'_>> =
        (0..parallel).map(|_| Sequence { cached: Vec::new(), scope: None, active: None }).collect();
    // llama.cpp takes no more tokens per decode than its batch size, which it lowers to a
    // small context's size.
    let mut batch = Batch::new(BATCH.min(ctx.n_batch() as usize).max(1), 1);
    let eos = factory.map(ConstraintFactory::eos);
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
            start(model, &mut ctx, &mut sequences, job, room, &metrics);
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

        // One batch: generating sequences first (a token, or a few forced ones), then
        // prompt tokens of starting ones in what room is left.
        batch.clear();
        let mut order: Vec<usize> = (0..parallel).filter(|&i| sequences[i].active.is_some()).collect();
        order.sort_by_key(|&i| sequences[i].active.as_ref().is_some_and(|a| a.in_prompt));
        let mut added: Vec<(usize, usize)> = Vec::new();
        for &i in &order {
            let sequence = &mut sequences[i];
            let active = sequence.active.as_mut().expect("ordered sequences are active");
            let take = active.pending.len().min(batch.remaining());
            if take == 0 {
                continue;
            }
            let pos = sequence.cached.len() as i32;
            let whole = take == active.pending.len();
            let tokens: Vec<Token> = active.pending.drain(..take).collect();
            for (k, &token) in tokens.iter().enumerate() {
                let last = whole && k + 1 == tokens.len();
                let index = batch.add(token, pos + k as i32, &[i as i32], last).expect("room was checked");
                if last {
                    active.logits_at = Some(index);
                }
            }
            sequence.cached.extend(tokens);
            added.push((i, take));
        }
        let decoded = ctx.decode(&batch);
        if let Err(e) = decoded {
            // Not expected (room is checked at admission): fail what was in the batch.
            tracing::error!("decoding failed: {e}");
            for &(i, _) in &added {
                let sequence = &mut sequences[i];
                ctx.remove_positions(i as i32, None, None);
                sequence.cached.clear();
                if let Some(active) = &mut sequence.active {
                    active.finished = Some(FinishReason::Error("the engine failed to decode".into()));
                }
            }
            finish_done(&mut sequences, &metrics);
            continue;
        }
        metrics.decoded_tokens.fetch_add(batch.len() as u64, Ordering::Relaxed);
        for &(i, _) in &added {
            let Sequence { cached, active, .. } = &mut sequences[i];
            let Some(active) = active.as_mut() else { continue };
            let Some(index) = active.logits_at.take() else { continue };
            active.in_prompt = false;
            if let Err(e) = step(model, &mut ctx, i as i32, cached, factory, eos, active, index, room) {
                tracing::warn!("a request failed while choosing tokens: {e}");
                active.finished = Some(FinishReason::Error("the constraint failed".into()));
            }
        }
        finish_done(&mut sequences, &metrics);
    }
}

/// Puts `job` into the free sequence sharing the longest prompt prefix with it.
fn start<'m>(
    model: &'m Model,
    ctx: &mut Context<'m>,
    sequences: &mut [Sequence<'m>],
    job: Job,
    room: usize,
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
    let sampler = match &job.constraint {
        Some(_) => None,
        None => Some(Sampler::new(model, &job.sampling)),
    };
    let rng = SplitMix::new(u64::from(job.sampling.seed));
    let pending = job.prompt[keep..].to_vec();
    sequence.active = Some(Active {
        job,
        pending,
        in_prompt: true,
        sampler,
        rng,
        next_mask: None,
        tokens: Vec::new(),
        output: Vec::new(),
        token_ends: Vec::new(),
        scanner: ArrayRepeatScanner::default(),
        text: Utf8Stream::default(),
        held: String::new(),
        cached_tokens: keep,
        started: Instant::now(),
        first_token: None,
        logits_at: None,
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

/// Chooses the next token of `active` from logits row `index`, sends its text, and queues
/// it (with any tokens the constraint forces after it) for the next batch. Under
/// repetition control a repeated array item is rolled back (from the KV cache too) and the
/// array closed, as `medllm extract` does.
#[allow(clippy::too_many_arguments)]
fn step<'m>(
    model: &'m Model,
    ctx: &mut Context<'m>,
    seq: i32,
    cached: &mut Vec<Token>,
    factory: Option<&ConstraintFactory>,
    eos: Option<Token>,
    active: &mut Active<'m>,
    index: usize,
    room: usize,
) -> Result<(), ExtractError> {
    if active.first_token.is_none() {
        active.first_token = Some(Instant::now());
    }
    let budget = active.job.max_tokens.min(room.saturating_sub(active.job.prompt.len() + 1));
    let decoded = active.tokens.len();
    let token = match (&mut active.sampler, &mut active.job.constraint) {
        (Some(sampler), _) => sampler.sample(ctx, index),
        (None, Some(constraint)) => {
            let mut mask = match active.next_mask.take() {
                Some(mask) => mask,
                None => constraint.allowed()?,
            };
            // A token repeated many times in a row inside a string is a loop, not data.
            if active.job.repeat_control
                && let Some(&last) = active.tokens.last()
                && active.scanner.in_string()
                && active.tokens.len() >= MAX_TOKEN_RUN
                && active.tokens[active.tokens.len() - MAX_TOKEN_RUN..].iter().all(|&t| t == last)
                && mask.num_set() > 1
            {
                mask.disallow_token(last.0 as u32);
            }
            let logits = ctx.logits(index).ok_or_else(|| ExtractError::Constraint("no logits".into()))?;
            choose(logits, &mask, active.job.sampling.temperature, &mut active.rng)
                .ok_or_else(|| ExtractError::Constraint("the schema allows no token here".into()))?
        }
        (None, None) => unreachable!("a job has a sampler or a constraint"),
    };
    if model.is_end_of_generation(token) || (active.job.constraint.is_some() && Some(token) == eos) {
        active.finished = Some(FinishReason::Stop);
        return Ok(());
    }
    push_token(model, active, token)?;
    if active.job.constraint.is_some() {
        follow_forced(model, factory, eos, active, budget)?;
        if active.job.repeat_control
            && active.finished.is_none()
            && let Some(repeat) = active.scanner.scan(&active.output)
            && cut_repeat(model, ctx, seq, cached, active, repeat.cut_at, decoded)?
        {
            follow_forced(model, factory, eos, active, budget)?;
        }
    }
    if !active.job.repeat_control {
        // Streamed as it comes (repetition control, which may take text back, buffers).
        let from = decoded.min(active.tokens.len());
        let start = if from == 0 { 0 } else { active.token_ends[from - 1] };
        let bytes = active.output[start..].to_vec();
        let piece = active.text.push(&bytes);
        if emit(active, &piece) {
            return Ok(());
        }
    }
    if active.finished.is_none() && active.tokens.len() >= budget {
        active.finished = Some(FinishReason::Length);
    }
    if active.finished.is_none() {
        let in_cache = cached.len().saturating_sub(active.job.prompt.len()).min(active.tokens.len());
        active.pending = active.tokens[in_cache..].to_vec();
    }
    Ok(())
}

/// Longest run of one token allowed inside a string under repetition control.
const MAX_TOKEN_RUN: usize = 8;

fn push_token(model: &Model, active: &mut Active<'_>, token: Token) -> Result<(), ExtractError> {
    if let Some(constraint) = &mut active.job.constraint {
        constraint.accept(token)?;
    }
    active.output.extend(model.token_piece(token, false));
    active.tokens.push(token);
    active.token_ends.push(active.output.len());
    Ok(())
}

/// Takes the text the constraint forces (keys, punctuation) without asking the model,
/// until a real choice or the end.
fn follow_forced(
    model: &Model,
    factory: Option<&ConstraintFactory>,
    eos: Option<Token>,
    active: &mut Active<'_>,
    budget: usize,
) -> Result<(), ExtractError> {
    let factory = factory.expect("constrained jobs come with a factory");
    loop {
        let Some(constraint) = &mut active.job.constraint else { return Ok(()) };
        if constraint.is_stopped() {
            active.finished = Some(match constraint.error() {
                Some(_) => FinishReason::Error("the constraint failed".into()),
                None => FinishReason::Stop,
            });
            return Ok(());
        }
        let forced = constraint.forced_bytes();
        if !forced.is_empty() {
            let mut tokens = factory.tokenize_forced(model, &forced);
            tokens.truncate(budget.saturating_sub(active.tokens.len()));
            let accepted = constraint.accept_prefix(&tokens)?;
            for &token in &tokens[..accepted] {
                active.output.extend(model.token_piece(token, false));
                active.tokens.push(token);
                active.token_ends.push(active.output.len());
            }
            if accepted > 0 {
                continue;
            }
        }
        let Some(constraint) = &mut active.job.constraint else { return Ok(()) };
        let mask = constraint.allowed()?;
        match only_token(&mask) {
            Some(t) if Some(t) == eos => {
                active.finished = Some(FinishReason::Stop);
                return Ok(());
            }
            Some(t) if active.tokens.len() < budget => push_token(model, active, t)?,
            _ => {
                active.next_mask = Some(mask);
                return Ok(());
            }
        }
    }
}

/// Removes the output from byte `cut_at` on (a repeated array item and its comma), closes
/// the array, and drops what was decoded past the kept tokens from the KV cache. Returns
/// false, leaving everything as it was, when the schema does not allow the array to end
/// there or the cache cannot be cut.
fn cut_repeat(
    model: &Model,
    ctx: &mut Context<'_>,
    seq: i32,
    cached: &mut Vec<Token>,
    active: &mut Active<'_>,
    cut_at: usize,
    decoded: usize,
) -> Result<bool, ExtractError> {
    let Some(constraint) = &mut active.job.constraint else { return Ok(false) };
    let saved = (constraint.clone(), active.tokens.clone(), active.token_ends.clone(), active.output.clone());
    let keep = active.token_ends.partition_point(|&end| end <= cut_at);
    let kept_end = if keep == 0 { 0 } else { active.token_ends[keep - 1] };
    let mut tail = active.output[kept_end..cut_at].to_vec();
    tail.push(b']');
    constraint.rollback(active.tokens.len() - keep)?;
    active.tokens.truncate(keep);
    active.token_ends.truncate(keep);
    active.output.truncate(kept_end);
    let restore = |active: &mut Active<'_>, saved: (DocumentConstraint, Vec<Token>, Vec<usize>, Vec<u8>)| {
        if let Some(constraint) = &mut active.job.constraint {
            *constraint = saved.0;
        }
        (active.tokens, active.token_ends, active.output) = (saved.1, saved.2, saved.3);
    };
    let mut rest: &[u8] = &tail;
    while !rest.is_empty() {
        let Some(constraint) = &mut active.job.constraint else { return Ok(false) };
        let mask = constraint.allowed()?;
        let mut best: Option<(Token, usize)> = None;
        mask.iter_set_entries(|i| {
            let piece = model.token_piece(Token(i as i32), false);
            if !piece.is_empty() && rest.starts_with(&piece) && best.is_none_or(|(_, n)| piece.len() > n) {
                best = Some((Token(i as i32), piece.len()));
            }
        });
        let Some((token, len)) = best else {
            restore(active, saved);
            return Ok(false);
        };
        push_token(model, active, token)?;
        rest = &rest[len..];
    }
    if keep < decoded {
        let prompt = active.job.prompt.len();
        if !ctx.remove_positions(seq, Some((prompt + keep) as i32), None) {
            restore(active, saved);
            active.scanner.scan(&active.output);
            return Ok(false);
        }
        cached.truncate(prompt + keep);
    }
    active.next_mask = None;
    active.scanner = ArrayRepeatScanner::default();
    active.scanner.scan(&active.output);
    Ok(true)
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
            let text = String::from_utf8_lossy(&active.output).into_owned();
            emit(&mut active, &text);
        } else {
            let rest = active.text.finish();
            emit(&mut active, &rest);
        }
        if !active.held.is_empty() {
            let held = std::mem::take(&mut active.held);
            let _ = active.job.events.send(Event::Text(held));
        }
        // Tokens chosen but not decoded are not in the cache; what is cached stays for reuse.
        let first = active.first_token.unwrap_or_else(Instant::now);
        metrics.generated_tokens.fetch_add(active.tokens.len() as u64, Ordering::Relaxed);
        let _ = active.job.events.send(Event::Done(Finished {
            reason,
            prompt_tokens: active.job.prompt.len(),
            cached_tokens: active.cached_tokens,
            generated_tokens: active.tokens.len(),
            prompt_time: first.duration_since(active.started),
            generation_time: first.elapsed(),
        }));
    }
}
