//! The batched runner: up to `parallel` documents decode together as sequences of one
//! context (continuous batching: a new document starts as soon as one finishes). The
//! shared prompt prefix is evaluated once, in its own sequence, and copied into each
//! document's sequence.

use std::time::Instant;

use llguidance::toktrie::SimpleVob;
use serde_json::Value;

use super::constraint::{ConstraintFactory, DocumentConstraint};
use super::extractive::extractive_grammar;
use super::grounding::ground;
use super::prompt::{Example, PromptTemplate};
use super::repeats::ArrayRepeatScanner;
use super::schema::{ExtractionSchema, enum_pointers, matches_pattern};
use super::{ExtractError, ExtractionRecord, TokenCounts};
use crate::data::{Document, InputItem};
use crate::llama::{Batch, Context, ContextParams, LoraAdapter, Model, Sampler, SamplingParams, Token};

/// How the output is constrained.
#[derive(Debug, Clone)]
pub enum OutputConstraint {
    /// A JSON Schema, enforced by llguidance.
    Schema(ExtractionSchema),
    /// A GBNF grammar, enforced by llama.cpp's grammar sampler (root rule `root`).
    Gbnf(String),
}

/// Settings of a run.
#[derive(Debug, Clone)]
pub struct ExtractOptions {
    /// Documents decoded together.
    pub parallel: usize,
    /// 0: greedy. Above: sampling among the allowed tokens.
    pub temperature: f32,
    /// Seed of that sampling.
    pub seed: u64,
    /// Most tokens generated per document; lower than the schema's bound means a document
    /// can be cut off (the run warns once).
    pub max_tokens: usize,
    /// Context length per document sequence.
    pub ctx_per_sequence: u32,
    /// Threads.
    pub threads: i32,
    /// Similarity a fuzzy grounding match must reach (0–1).
    pub fuzzy_threshold: f32,
    /// Ungrounded string values make a record invalid.
    pub require_grounding: bool,
    /// Free string values may only be passages of the document (schemas only).
    pub extractive: bool,
    /// System instruction replacing the default.
    pub system: Option<String>,
    /// Few-shot examples placed in the shared prefix.
    pub examples: Vec<Example>,
    /// How the prompt is laid out (`--chat-template`); `None`: the model's own chat
    /// template, else plain text.
    pub prompt_format: Option<crate::llama::PromptFormat>,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions {
            parallel: 4,
            temperature: 0.0,
            seed: 0,
            max_tokens: 1024,
            ctx_per_sequence: 4096,
            threads: crate::llama::ContextParams::default().n_threads,
            fuzzy_threshold: 0.85,
            require_grounding: false,
            extractive: false,
            system: None,
            examples: Vec::new(),
            prompt_format: None,
        }
    }
}

/// Totals of a run.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    /// Records written.
    pub documents: usize,
    /// Records marked invalid (including inputs that could not be read).
    pub invalid: usize,
    /// Documents that were cut to fit the context.
    pub truncated: usize,
    /// Tokens generated in all.
    pub generated_tokens: usize,
    /// Seconds spent in llama.cpp decoding batches.
    pub decode_seconds: f64,
    /// Seconds spent choosing tokens: constraint masks, sampling, forced text, repeats.
    pub choose_seconds: f64,
    /// Seconds from start to end.
    pub seconds: f64,
    /// A signal stopped the run (see [`crate::interrupt`]): the documents in progress
    /// and those not yet started have no record.
    pub interrupted: bool,
}

/// Extraction over one model.
pub struct Extractor<'m> {
    model: &'m Model,
    ctx: Context<'m>,
    constraint: OutputConstraint,
    guidance: Option<ConstraintFactory>,
    template: PromptTemplate,
    validator: Option<jsonschema::Validator>,
    options: ExtractOptions,
    budget: usize,
    prefix_seq: i32,
    enum_paths: Vec<String>,
}

enum SlotConstraint<'m> {
    Guidance(Box<DocumentConstraint>),
    Gbnf(Sampler<'m>),
}

struct Slot<'m> {
    id: String,
    text: String,
    seq: i32,
    /// Tokens waiting to be decoded (prompt first, then generated ones).
    pending: Vec<Token>,
    /// Next KV position of the sequence.
    pos: i32,
    constraint: SlotConstraint<'m>,
    /// Generated tokens, and the output byte offset where each ends.
    tokens: Vec<Token>,
    token_ends: Vec<usize>,
    output: Vec<u8>,
    /// The allowed set computed after the last forced token, for the next choice.
    next_mask: Option<SimpleVob>,
    repeats: ArrayRepeatScanner,
    prompt_tokens: usize,
    started: Instant,
    warnings: Vec<String>,
    logits_at: Option<usize>,
    finished: Option<Result<(), String>>,
}

impl<'m> Extractor<'m> {
    /// Prepares the constraint, the prompt and the context (with the LoRA `adapters`
    /// attached, if any), and evaluates the shared prefix.
    pub fn new(
        model: &'m Model,
        adapters: &[(&'m LoraAdapter<'m>, f32)],
        constraint: OutputConstraint,
        options: ExtractOptions,
    ) -> Result<Extractor<'m>, ExtractError> {
        let parallel = options.parallel.max(1);
        let (guidance, validator, schema_text, bound) = match &constraint {
            OutputConstraint::Schema(schema) => {
                let factory = ConstraintFactory::new(model)?;
                // Compile once now, so a grammar error stops the run before any document.
                if options.extractive {
                    factory.lark_matcher(&extractive_grammar(&schema.bounded, "a sample document")?)?;
                } else {
                    factory.json_matcher(&schema.constraint_schema())?;
                }
                let validator = jsonschema::validator_for(&schema.bounded)
                    .map_err(|e| ExtractError::Constraint(format!("schema does not validate: {e}")))?;
                (Some(factory), Some(validator), schema.prompt_text.clone(), schema.max_output_bytes as usize)
            }
            OutputConstraint::Gbnf(grammar) => {
                // Checked here so that a broken grammar fails before any document.
                Sampler::with_grammar(model, &SamplingParams::greedy(), grammar, "root")?;
                (None, None, "(the grammar given)".to_string(), usize::MAX)
            }
        };
        let template = PromptTemplate::new(
            model,
            options.prompt_format.as_ref(),
            options.system.as_deref(),
            &schema_text,
            &options.examples,
        )?;
        // The prefix holds instruction, schema and examples: no document text.
        tracing::debug!(
            "shared prompt prefix ({} tokens): {:?}",
            template.prefix.len(),
            model.detokenize(&template.prefix, true)
        );
        let budget = bound.saturating_add(1).min(options.max_tokens);
        if bound != usize::MAX && bound >= options.max_tokens {
            // Info, not a warning: with 4 bytes counted for every character this is the usual
            // case, and a document that does reach the cap says so in its own record.
            tracing::info!(
                "the schema allows outputs of up to {bound} bytes but at most {} tokens are generated a \
                 document; a longer answer is cut and marked invalid (raise --max-tokens to lift the cap)",
                options.max_tokens
            );
        }
        let n_seq = parallel as u32 + 1;
        let n_ctx = options.ctx_per_sequence.checked_mul(n_seq).ok_or_else(|| {
            ExtractError::Prompt(format!(
                "--ctx {} × {n_seq} sequences is too large",
                options.ctx_per_sequence
            ))
        })?;
        let params = ContextParams {
            n_ctx,
            n_batch: 512,
            n_ubatch: 512,
            n_seq_max: n_seq,
            n_threads: options.threads,
            n_threads_batch: options.threads,
            // Each document attends only to its own stream; the shared prefix is copied.
            unified_kv: false,
            f32_kv: false,
        };
        let mut ctx = Context::new(model, &params)?;
        if !adapters.is_empty() {
            ctx.set_adapters(adapters)?;
        }
        let prefix_seq = parallel as i32;
        let mut batch = Batch::new(512, 1);
        for (k, chunk) in template.prefix.chunks(512).enumerate() {
            batch.clear();
            batch.add_sequence(chunk, (k * 512) as i32, prefix_seq, false)?;
            ctx.decode(&batch)?;
        }
        let enum_paths = match &constraint {
            OutputConstraint::Schema(schema) => enum_pointers(&schema.bounded),
            OutputConstraint::Gbnf(_) => Vec::new(),
        };
        Ok(Extractor {
            model,
            ctx,
            constraint,
            guidance,
            template,
            validator,
            options,
            budget,
            prefix_seq,
            enum_paths,
        })
    }

    /// Tokens generated at most per document.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Tokens of the shared prefix.
    pub fn prefix_tokens(&self) -> usize {
        self.template.prefix.len()
    }

    /// Runs every input through the model, handing each record to `sink` as soon as it is
    /// done (so the order follows completion, not input). A stop request (Ctrl-C, see
    /// [`crate::interrupt`]) ends the run before the next batch.
    pub fn run<E>(
        &mut self,
        inputs: impl Iterator<Item = InputItem>,
        sink: &mut dyn FnMut(ExtractionRecord) -> Result<(), E>,
    ) -> Result<RunSummary, RunError<E>> {
        let started = Instant::now();
        let parallel = self.options.parallel.max(1);
        let mut summary = RunSummary::default();
        let mut inputs = inputs;
        let mut slots: Vec<Option<Slot<'m>>> = (0..parallel).map(|_| None).collect();
        let mut batch = Batch::new(512, 1);
        let mut rng = SplitMix::new(self.options.seed);
        let mut exhausted = false;
        loop {
            // Between batches, a stop request ends the run; what finished was emitted.
            if crate::interrupt::stop_requested() {
                summary.interrupted = true;
                break;
            }
            // Start documents in free slots.
            for (seq, free) in slots.iter_mut().enumerate() {
                while free.is_none() && !exhausted {
                    match inputs.next() {
                        None => exhausted = true,
                        Some(InputItem::Failed { id, error }) => {
                            self.emit(&mut summary, ExtractionRecord::failed(id, error), sink)?;
                        }
                        Some(InputItem::Document(doc)) => match self.start(seq as i32, doc) {
                            Ok(slot) => *free = Some(slot),
                            Err((id, error)) => {
                                self.emit(&mut summary, ExtractionRecord::failed(id, error), sink)?
                            }
                        },
                    }
                }
            }
            if slots.iter().all(Option::is_none) {
                break;
            }

            // One batch: generating sequences first (one token or a few forced ones), then
            // prompt tokens of starting documents in what room is left.
            batch.clear();
            let mut order: Vec<usize> = (0..parallel).filter(|&s| slots[s].is_some()).collect();
            order.sort_by_key(|&s| slots[s].as_ref().map_or(0, |slot| slot.pending.len()));
            for s in order {
                let slot = slots[s].as_mut().expect("listed slots are active");
                let room = batch.remaining();
                if room == 0 {
                    break;
                }
                let take = slot.pending.len().min(room);
                // Logits are needed only once all queued tokens are in.
                let completes = take == slot.pending.len();
                for (k, token) in slot.pending.drain(..take).enumerate() {
                    let wants_logits = completes && k + 1 == take;
                    let index =
                        batch.add(token, slot.pos, &[slot.seq], wants_logits).map_err(ExtractError::from)?;
                    slot.pos += 1;
                    if wants_logits {
                        slot.logits_at = Some(index);
                    }
                }
            }
            let decoding = Instant::now();
            self.ctx.decode(&batch).map_err(ExtractError::from)?;
            summary.decode_seconds += decoding.elapsed().as_secs_f64();

            // Choose the next token of every sequence that has logits.
            for entry in slots.iter_mut() {
                let Some(slot) = entry.as_mut() else { continue };
                let Some(index) = slot.logits_at.take() else { continue };
                let choosing = Instant::now();
                if let Err(e) = self.step(slot, index, &mut rng) {
                    slot.finished = Some(Err(crate::with_causes(&e)));
                }
                summary.choose_seconds += choosing.elapsed().as_secs_f64();
                if slot.finished.is_some() {
                    let slot = entry.take().expect("checked above");
                    let record = self.finish(slot);
                    self.emit(&mut summary, record, sink)?;
                }
            }
        }
        summary.seconds = started.elapsed().as_secs_f64();
        Ok(summary)
    }

    fn emit<E>(
        &mut self,
        summary: &mut RunSummary,
        record: ExtractionRecord,
        sink: &mut dyn FnMut(ExtractionRecord) -> Result<(), E>,
    ) -> Result<(), RunError<E>> {
        summary.documents += 1;
        summary.generated_tokens += record.tokens.generated;
        if !record.valid {
            summary.invalid += 1;
        }
        if !record.warnings.is_empty() {
            summary.truncated += 1;
        }
        sink(record).map_err(RunError::Sink)
    }

    /// Places a document in sequence `seq`: the shared prefix is copied, the document's
    /// tokens queued.
    fn start(&mut self, seq: i32, doc: Document) -> Result<Slot<'m>, (String, String)> {
        let fail = |e: ExtractError| (doc.id.clone(), crate::with_causes(&e));
        let mut tokens = self.template.document_tokens(self.model, &doc.text).map_err(fail)?;
        let mut warnings = Vec::new();
        let prefix = self.template.prefix.len();
        let room = (self.ctx.n_ctx_per_sequence() as usize).saturating_sub(prefix + self.budget);
        if tokens.len() > room {
            let suffix = self.template.suffix_tokens(self.model).map_err(fail)?;
            let keep = room.saturating_sub(suffix.len());
            if keep == 0 {
                return Err((doc.id, "the context has no room for the document (raise --ctx)".into()));
            }
            tracing::warn!(
                "{}: document has {} tokens, more than the {} that fit; truncated (raise --ctx)",
                doc.id,
                tokens.len() - suffix.len(),
                keep
            );
            warnings.push(format!("truncated to its first {keep} tokens to fit the context"));
            tokens.truncate(keep);
            tokens.extend(suffix);
        }
        let constraint = match &self.constraint {
            OutputConstraint::Schema(schema) => {
                let factory = self.guidance.as_ref().expect("schema runs have a factory");
                let matcher = if self.options.extractive {
                    let grammar = extractive_grammar(&schema.bounded, &doc.text).map_err(fail)?;
                    factory.lark_matcher(&grammar)
                } else {
                    factory.json_matcher(&schema.constraint_schema())
                };
                SlotConstraint::Guidance(Box::new(matcher.map_err(fail)?))
            }
            OutputConstraint::Gbnf(grammar) => SlotConstraint::Gbnf(
                Sampler::with_grammar(self.model, &SamplingParams::greedy(), grammar, "root")
                    .map_err(|e| fail(e.into()))?,
            ),
        };
        self.ctx.remove_positions(seq, None, None);
        self.ctx.copy_sequence(self.prefix_seq, seq, None, None);
        Ok(Slot {
            id: doc.id,
            text: doc.text,
            seq,
            prompt_tokens: prefix + tokens.len(),
            pending: tokens,
            pos: prefix as i32,
            constraint,
            tokens: Vec::new(),
            token_ends: Vec::new(),
            output: Vec::new(),
            next_mask: None,
            repeats: ArrayRepeatScanner::default(),
            started: Instant::now(),
            warnings,
            logits_at: None,
            finished: None,
        })
    }

    /// Picks the next token of `slot` from logits row `index`, then queues it with the
    /// tokens the grammar forces after it (decoded together in the next batch, no logits
    /// needed between them). A repeated array item is rolled back and the array closed.
    fn step(&mut self, slot: &mut Slot<'m>, index: usize, rng: &mut SplitMix) -> Result<(), ExtractError> {
        let eos = self.guidance.as_ref().map(ConstraintFactory::eos);
        self.ctx.check_logits(index)?;
        let decoded = slot.tokens.len();
        let token = match &mut slot.constraint {
            SlotConstraint::Gbnf(sampler) => sampler.sample(&self.ctx, index),
            SlotConstraint::Guidance(constraint) => {
                let mask = match slot.next_mask.take() {
                    Some(mask) => mask,
                    None => constraint.allowed()?,
                };
                let mut mask = mask;
                // A token repeated many times in a row is a loop ("2000000…"), not data.
                if let Some(&last) = slot.tokens.last()
                    && slot.repeats.in_string()
                    && slot.tokens.len() >= MAX_TOKEN_RUN
                    && slot.tokens[slot.tokens.len() - MAX_TOKEN_RUN..].iter().all(|&t| t == last)
                    && mask.num_set() > 1
                {
                    mask.disallow_token(last.0 as u32);
                }
                let logits = self.ctx.logits(index).ok_or(ExtractError::Constraint("no logits".into()))?;
                choose(logits, &mask, self.options.temperature, rng)
                    .ok_or_else(|| ExtractError::Constraint("the schema allows no token here".into()))?
            }
        };
        if self.model.is_end_of_generation(token) || Some(token) == eos {
            slot.finished = Some(Ok(()));
            return Ok(());
        }
        self.push_token(slot, token)?;
        if matches!(slot.constraint, SlotConstraint::Guidance(_)) {
            self.follow_forced(slot, eos)?;
            if slot.finished.is_none()
                && let Some(repeat) = slot.repeats.scan(&slot.output)
                && self.cut_repeat(slot, repeat.cut_at, decoded)?
            {
                self.follow_forced(slot, eos)?;
            }
        }
        if slot.finished.is_none() && slot.tokens.len() >= self.budget {
            slot.finished = Some(Err(format!(
                "output budget of {} tokens exhausted before the JSON was complete",
                self.budget
            )));
        }
        // Generated tokens already in the KV cache (fewer if a repeat was cut).
        let in_cache = (slot.pos as usize).saturating_sub(slot.prompt_tokens).min(slot.tokens.len());
        slot.pending = slot.tokens[in_cache..].to_vec();
        Ok(())
    }

    /// Appends a chosen token to the output and, under a schema, to the matcher.
    fn push_token(&self, slot: &mut Slot<'m>, token: Token) -> Result<(), ExtractError> {
        if let SlotConstraint::Guidance(constraint) = &mut slot.constraint {
            constraint.accept(token)?;
        }
        slot.output.extend(self.model.token_piece(token, false));
        slot.tokens.push(token);
        slot.token_ends.push(slot.output.len());
        Ok(())
    }

    /// Accepts the text the grammar forces (keys, punctuation), until a real choice or the
    /// end; those tokens are then decoded in one batch, with no choice between them.
    fn follow_forced(&self, slot: &mut Slot<'m>, eos: Option<Token>) -> Result<(), ExtractError> {
        let factory = self.guidance.as_ref().expect("schema runs have a factory");
        loop {
            let SlotConstraint::Guidance(constraint) = &mut slot.constraint else { return Ok(()) };
            if constraint.is_stopped() {
                slot.finished = Some(match constraint.error() {
                    Some(e) => Err(format!("constraint failed: {e}")),
                    None => Ok(()),
                });
                return Ok(());
            }
            let forced = constraint.forced_bytes();
            if !forced.is_empty() {
                let room = self.budget.saturating_sub(slot.tokens.len());
                let mut tokens = factory.tokenize_forced(self.model, &forced);
                tokens.truncate(room);
                let accepted = constraint.accept_prefix(&tokens)?;
                for &token in &tokens[..accepted] {
                    slot.output.extend(self.model.token_piece(token, false));
                    slot.tokens.push(token);
                    slot.token_ends.push(slot.output.len());
                }
                if accepted > 0 {
                    continue;
                }
            }
            let SlotConstraint::Guidance(constraint) = &mut slot.constraint else { return Ok(()) };
            let mask = constraint.allowed()?;
            match only_token(&mask) {
                Some(token) if Some(token) == eos => {
                    slot.finished = Some(Ok(()));
                    return Ok(());
                }
                Some(token) if slot.tokens.len() < self.budget => self.push_token(slot, token)?,
                _ => {
                    slot.next_mask = Some(mask);
                    return Ok(());
                }
            }
        }
    }

    /// Removes the output from byte `cut_at` on (a repeated array item and its comma) and
    /// closes the array. Tokens already decoded are removed from the KV cache. Returns
    /// false, leaving everything as it was, when the schema does not allow the array to
    /// end there (e.g. `minItems`).
    fn cut_repeat(
        &mut self,
        slot: &mut Slot<'m>,
        cut_at: usize,
        decoded: usize,
    ) -> Result<bool, ExtractError> {
        let SlotConstraint::Guidance(constraint) = &mut slot.constraint else { return Ok(false) };
        let saved = (constraint.clone(), slot.tokens.clone(), slot.token_ends.clone(), slot.output.clone());
        let keep = slot.token_ends.partition_point(|&end| end <= cut_at);
        let kept_end = if keep == 0 { 0 } else { slot.token_ends[keep - 1] };
        // What must follow the kept tokens: the rest of the last good item, then `]`.
        let mut tail = slot.output[kept_end..cut_at].to_vec();
        tail.push(b']');
        constraint.rollback(slot.tokens.len() - keep)?;
        slot.tokens.truncate(keep);
        slot.token_ends.truncate(keep);
        slot.output.truncate(kept_end);
        let mut rest: &[u8] = &tail;
        while !rest.is_empty() {
            let SlotConstraint::Guidance(constraint) = &mut slot.constraint else { unreachable!() };
            let mask = constraint.allowed()?;
            let mut best: Option<(Token, usize)> = None;
            mask.iter_set_entries(|i| {
                let piece = self.model.token_piece(Token(i as i32), false);
                if !piece.is_empty() && rest.starts_with(&piece) && best.is_none_or(|(_, n)| piece.len() > n)
                {
                    best = Some((Token(i as i32), piece.len()));
                }
            });
            let Some((token, len)) = best else {
                let SlotConstraint::Guidance(constraint) = &mut slot.constraint else { unreachable!() };
                (*constraint, slot.tokens, slot.token_ends, slot.output) =
                    (saved.0, saved.1, saved.2, saved.3);
                return Ok(false);
            };
            self.push_token(slot, token)?;
            rest = &rest[len..];
        }
        // Drop from the KV cache what was decoded past the kept tokens. A cache that cannot
        // cut a sequence part-way (recurrent and hybrid models) keeps the repeat instead.
        if keep < decoded {
            let from = slot.pos - (decoded - keep) as i32;
            if !self.ctx.remove_positions(slot.seq, Some(from), None) {
                let SlotConstraint::Guidance(constraint) = &mut slot.constraint else { unreachable!() };
                (*constraint, slot.tokens, slot.token_ends, slot.output) = saved;
                slot.repeats.scan(&slot.output);
                return Ok(false);
            }
            slot.pos = from;
        }
        slot.next_mask = None;
        slot.repeats = ArrayRepeatScanner::default();
        slot.repeats.scan(&slot.output);
        tracing::debug!("{}: repeated array item removed, array closed", slot.id);
        Ok(true)
    }

    /// Turns a finished slot into its record: parse, validate, ground.
    fn finish(&mut self, slot: Slot<'m>) -> ExtractionRecord {
        self.ctx.remove_positions(slot.seq, None, None);
        let checks = RecordChecks {
            validator: self.validator.as_ref(),
            enum_paths: &self.enum_paths,
            fuzzy_threshold: self.options.fuzzy_threshold,
            require_grounding: self.options.require_grounding,
        };
        let failure = match slot.finished {
            Some(Err(e)) => Some(e),
            _ => None,
        };
        build_record(
            &checks,
            slot.id,
            &slot.text,
            &slot.output,
            failure,
            TokenCounts { prompt: slot.prompt_tokens, generated: slot.tokens.len() },
            slot.started.elapsed().as_millis() as u64,
            slot.warnings,
        )
    }
}

/// What a record is checked against.
struct RecordChecks<'a> {
    validator: Option<&'a jsonschema::Validator>,
    enum_paths: &'a [String],
    fuzzy_threshold: f32,
    require_grounding: bool,
}

/// A document's output turned into its record: parse, validate, ground.
#[allow(clippy::too_many_arguments)]
fn build_record(
    checks: &RecordChecks<'_>,
    id: String,
    source: &str,
    output: &[u8],
    failure: Option<String>,
    tokens: TokenCounts,
    ms: u64,
    warnings: Vec<String>,
) -> ExtractionRecord {
    let text = String::from_utf8_lossy(output).into_owned();
    let mut record = ExtractionRecord {
        id,
        data: None,
        grounding: Vec::new(),
        ungrounded: Vec::new(),
        valid: false,
        error: None,
        tokens,
        ms,
        warnings,
    };
    let parsed: Option<Value> = serde_json::from_str(&text).ok();
    record.error = match (failure, &parsed) {
        (Some(e), _) => Some(e),
        (_, None) => Some("the output is not complete JSON".into()),
        (_, Some(value)) => checks.validator.and_then(|v| validation_error(v, value)),
    };
    if let Some(value) = &parsed {
        let enum_paths = checks.enum_paths;
        let skip = |path: &str| enum_paths.iter().any(|p| matches_pattern(p, path));
        let (grounding, ungrounded) = ground(source, value, checks.fuzzy_threshold, &skip);
        record.grounding = grounding;
        record.ungrounded = ungrounded;
    }
    if record.error.is_none() && checks.require_grounding && !record.ungrounded.is_empty() {
        record.error = Some(format!("{} string value(s) not found in the source", record.ungrounded.len()));
    }
    record.valid = record.error.is_none();
    record.data = parsed;
    record
}

/// Extraction of documents handed over one at a time, decoded elsewhere (the server's
/// shared context): the same prompt, constraint, validation and grounding as [`Extractor`].
pub struct ExtractionPlan {
    schema: ExtractionSchema,
    template: PromptTemplate,
    validator: jsonschema::Validator,
    enum_paths: Vec<String>,
    options: ExtractOptions,
    budget: usize,
}

impl std::fmt::Debug for ExtractionPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtractionPlan").field("schema", &self.schema.name).finish_non_exhaustive()
    }
}

impl ExtractionPlan {
    /// Prepares prompt, validator and budget for `schema` on `model`, checking that the
    /// constraint compiles. `options.parallel`, `ctx_per_sequence` and `threads` are not used.
    pub fn new(
        model: &Model,
        factory: &ConstraintFactory,
        schema: ExtractionSchema,
        options: ExtractOptions,
    ) -> Result<ExtractionPlan, ExtractError> {
        if options.extractive {
            factory.lark_matcher(&extractive_grammar(&schema.bounded, "a sample document")?)?;
        } else {
            factory.json_matcher(&schema.constraint_schema())?;
        }
        let validator = jsonschema::validator_for(&schema.bounded)
            .map_err(|e| ExtractError::Constraint(format!("schema does not validate: {e}")))?;
        let template = PromptTemplate::new(
            model,
            options.prompt_format.as_ref(),
            options.system.as_deref(),
            &schema.prompt_text,
            &options.examples,
        )?;
        let budget = (schema.max_output_bytes as usize).saturating_add(1).min(options.max_tokens);
        let enum_paths = enum_pointers(&schema.bounded);
        Ok(ExtractionPlan { schema, template, validator, enum_paths, options, budget })
    }

    /// The schema's name.
    pub fn schema_name(&self) -> &str {
        &self.schema.name
    }

    /// Most tokens generated for a document.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// The whole prompt of one document: the shared prefix, then the document's part.
    pub fn prompt(&self, model: &Model, text: &str) -> Result<Vec<Token>, ExtractError> {
        let mut tokens = self.template.prefix.clone();
        tokens.extend(self.template.document_tokens(model, text)?);
        Ok(tokens)
    }

    /// The token constraint for one document (under `extractive`, built from its text).
    pub fn constraint(
        &self,
        factory: &ConstraintFactory,
        text: &str,
    ) -> Result<DocumentConstraint, ExtractError> {
        if self.options.extractive {
            factory.lark_matcher(&extractive_grammar(&self.schema.bounded, text)?)
        } else {
            factory.json_matcher(&self.schema.constraint_schema())
        }
    }

    /// The record of one document from its generated `output`; `failure` says why
    /// generation stopped early, if it did.
    pub fn record(
        &self,
        id: String,
        text: &str,
        output: &[u8],
        failure: Option<String>,
        tokens: TokenCounts,
        ms: u64,
    ) -> ExtractionRecord {
        let checks = RecordChecks {
            validator: Some(&self.validator),
            enum_paths: &self.enum_paths,
            fuzzy_threshold: self.options.fuzzy_threshold,
            require_grounding: self.options.require_grounding,
        };
        build_record(&checks, id, text, output, failure, tokens, ms, Vec::new())
    }
}

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError<E> {
    /// The engine failed.
    #[error(transparent)]
    Extract(#[from] ExtractError),
    /// The record sink failed (e.g. the output pipe closed).
    #[error("cannot write a record")]
    Sink(E),
}

/// The first schema violation, by location and kind only: the offending value may be
/// patient data and stays out of messages.
fn validation_error(validator: &jsonschema::Validator, value: &Value) -> Option<String> {
    validator.iter_errors(value).next().map(|error| {
        let path = error.instance_path.to_string();
        let at = if path.is_empty() { "/".to_string() } else { path };
        format!("schema violation at {at} ({})", error.schema_path)
    })
}

/// Longest run of one token that decoding allows inside a string (runs of forced tokens
/// aside). Numbers are left alone: tokenizers that split digits make `10000000` a run.
const MAX_TOKEN_RUN: usize = 8;

/// The one token a mask allows, if it allows exactly one.
pub(crate) fn only_token(mask: &SimpleVob) -> Option<Token> {
    if mask.num_set() != 1 {
        return None;
    }
    let mut found = None;
    mask.iter_set_entries(|i| found = Some(Token(i as i32)));
    found
}

/// The most likely allowed token, or one sampled among the allowed at `temperature`.
pub(crate) fn choose(
    logits: &[f32],
    mask: &SimpleVob,
    temperature: f32,
    rng: &mut SplitMix,
) -> Option<Token> {
    let mut best: Option<(usize, f32)> = None;
    let mut allowed: Vec<(usize, f32)> = Vec::new();
    mask.iter_set_entries(|i| {
        if let Some(&logit) = logits.get(i) {
            if best.is_none_or(|(_, b)| logit > b) {
                best = Some((i, logit));
            }
            if temperature > 0.0 {
                allowed.push((i, logit));
            }
        }
    });
    let (best_index, best_logit) = best?;
    if temperature <= 0.0 || allowed.len() == 1 {
        return Some(Token(best_index as i32));
    }
    let weights: Vec<f64> =
        allowed.iter().map(|(_, l)| (((l - best_logit) / temperature) as f64).exp()).collect();
    let total: f64 = weights.iter().sum();
    let mut target = rng.next_f64() * total;
    for ((i, _), w) in allowed.iter().zip(&weights) {
        target -= w;
        if target <= 0.0 {
            return Some(Token(*i as i32));
        }
    }
    Some(Token(best_index as i32))
}

/// A small deterministic generator for sampling.
pub(crate) struct SplitMix(u64);

impl SplitMix {
    pub(crate) fn new(seed: u64) -> SplitMix {
        SplitMix(seed)
    }

    pub(crate) fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}
