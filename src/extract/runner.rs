//! The batched runner: up to `parallel` documents decode together as sequences of one
//! context (continuous batching: a new document starts as soon as one finishes). The
//! shared prompt prefix is evaluated once, in its own sequence, and copied into each
//! document's sequence.

use std::time::Instant;

use serde_json::Value;

use super::constraint::{ConstraintFactory, DocumentConstraint};
use super::extractive::extractive_grammar;
use super::grounding::ground;
use super::prompt::{Example, PromptTemplate};
use super::schema::{ExtractionSchema, enum_pointers, matches_pattern};
use super::{ExtractError, ExtractionRecord, TokenCounts};
use crate::data::{Document, InputItem};
use crate::engine::{self, BATCH, Chooser, Finish, Generation, GenerationSettings, SpeculationCounts};
use crate::llama::{Batch, Context, LoraAdapter, Model, Sampler, SamplingParams, Token};

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
    /// Speculative copying: draft the tokens that follow the output's last tokens in the
    /// document and keep those greedy decoding would choose (greedy schema runs only).
    /// One sequence gives the same records either way; several can differ at near ties,
    /// as between `--parallel` settings (the cache layout changes llama.cpp's sums).
    pub speculate: bool,
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
            speculate: false,
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
    /// Tokens drafted and accepted by speculative copying.
    pub speculation: SpeculationCounts,
    /// A signal stopped the run (see [`crate::interrupt`]): the documents in progress
    /// and those not yet started have no record.
    pub interrupted: bool,
}

/// Extraction over one model.
pub struct Extractor<'m> {
    model: &'m Model,
    ctx: Context<'m>,
    plan: RunPlan,
    options: ExtractOptions,
    budget: usize,
    prefix_seq: i32,
}

/// What constrains a run's outputs.
enum RunPlan {
    Schema { factory: Box<ConstraintFactory>, plan: Box<ExtractionPlan> },
    Gbnf { grammar: String, template: PromptTemplate },
}

impl RunPlan {
    fn template(&self) -> &PromptTemplate {
        match self {
            RunPlan::Schema { plan, .. } => &plan.template,
            RunPlan::Gbnf { template, .. } => template,
        }
    }

    fn factory(&self) -> Option<&ConstraintFactory> {
        match self {
            RunPlan::Schema { factory, .. } => Some(factory),
            RunPlan::Gbnf { .. } => None,
        }
    }
}

/// A document being decoded.
struct Slot<'m> {
    id: String,
    text: String,
    generation: Generation<'m>,
    prompt_tokens: usize,
    started: Instant,
    warnings: Vec<String>,
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
        let (plan, bound) = match constraint {
            OutputConstraint::Schema(schema) => {
                let factory = ConstraintFactory::new(model)?;
                let bound = schema.max_output_bytes as usize;
                let plan = ExtractionPlan::new(model, &factory, schema, options.clone())?;
                (RunPlan::Schema { factory: Box::new(factory), plan: Box::new(plan) }, bound)
            }
            OutputConstraint::Gbnf(grammar) => {
                // Checked here so that a broken grammar fails before any document.
                Sampler::with_grammar(model, &SamplingParams::greedy(), &grammar, "root")?;
                let template = PromptTemplate::new(
                    model,
                    options.prompt_format.as_ref(),
                    options.system.as_deref(),
                    "(the grammar given)",
                    &options.examples,
                )?;
                (RunPlan::Gbnf { grammar, template }, usize::MAX)
            }
        };
        let template = plan.template();
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
        // One sequence a document, and one holding the shared prefix, copied into each.
        let n_seq = parallel as u32 + 1;
        let mut ctx = engine::open_context(
            model,
            adapters,
            options.ctx_per_sequence,
            n_seq,
            options.threads,
            BATCH as u32,
        )?;
        let prefix_seq = parallel as i32;
        let mut batch = Batch::new(BATCH, 1);
        for (k, chunk) in template.prefix.chunks(BATCH).enumerate() {
            batch.clear();
            batch.add_sequence(chunk, (k * BATCH) as i32, prefix_seq, false)?;
            ctx.decode(&batch)?;
        }
        Ok(Extractor { model, ctx, plan, options, budget, prefix_seq })
    }

    /// Tokens generated at most per document.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Tokens of the shared prefix.
    pub fn prefix_tokens(&self) -> usize {
        self.plan.template().prefix.len()
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
        let mut batch = Batch::new(BATCH, 1);
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
            let mut active: Vec<&mut Generation<'m>> =
                slots.iter_mut().flatten().map(|slot| &mut slot.generation).collect();
            let factory = self.plan.factory();
            let times = engine::decode_step(self.model, factory, &mut self.ctx, &mut batch, &mut active)
                .map_err(ExtractError::from)?;
            summary.decode_seconds += times.decode_seconds;
            summary.choose_seconds += times.choose_seconds;
            for entry in slots.iter_mut() {
                if entry.as_ref().is_some_and(|slot| slot.generation.finish.is_some()) {
                    let slot = entry.take().expect("checked above");
                    let record = self.finish(slot, &mut summary);
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
        let template = self.plan.template();
        let mut tokens = template.document_tokens(self.model, &doc.text).map_err(fail)?;
        let mut warnings = Vec::new();
        let prefix = template.prefix.len();
        // A sequence may not outgrow its share of the one cache all sequences use.
        let per_sequence =
            (self.ctx.n_ctx_per_sequence() as usize).min(self.options.ctx_per_sequence as usize);
        let room = per_sequence.saturating_sub(prefix + self.budget);
        if tokens.len() > room {
            let suffix = template.suffix_tokens(self.model).map_err(fail)?;
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
        let chooser = match &self.plan {
            RunPlan::Schema { factory, plan } => {
                Chooser::Guided(Box::new(plan.constraint(factory, &doc.text).map_err(fail)?))
            }
            RunPlan::Gbnf { grammar, .. } => Chooser::Sampler(
                Sampler::with_grammar(self.model, &SamplingParams::greedy(), grammar, "root")
                    .map_err(|e| fail(e.into()))?,
            ),
        };
        self.ctx.remove_positions(seq, None, None);
        self.ctx.copy_sequence(self.prefix_seq, seq, None, None);
        let settings = GenerationSettings {
            budget: self.budget,
            temperature: self.options.temperature,
            // Per document, so a sampled record does not depend on the order of the run.
            seed: self.options.seed ^ crate::data::rng::stable_hash(doc.id.as_bytes()),
            repeat_control: true,
            // The document as tokenized in the prompt (and the few tokens after it).
            speculate_from: self.options.speculate.then(|| tokens.clone()),
        };
        let prompt_tokens = prefix + tokens.len();
        let factory = self.plan.factory();
        let generation = Generation::new(self.model, factory, seq, prefix, tokens, chooser, settings);
        Ok(Slot { id: doc.id, text: doc.text, generation, prompt_tokens, started: Instant::now(), warnings })
    }

    /// Turns a finished slot into its record: parse, validate, ground.
    fn finish(&mut self, slot: Slot<'m>, summary: &mut RunSummary) -> ExtractionRecord {
        self.ctx.remove_positions(slot.generation.seq, None, None);
        summary.speculation.add(slot.generation.speculation);
        let failure = match &slot.generation.finish {
            Some(Finish::Failed(e)) => Some(e.clone()),
            Some(Finish::Length) => Some(format!(
                "output budget of {} tokens exhausted before the JSON was complete",
                self.budget
            )),
            _ => None,
        };
        let checks = match &self.plan {
            RunPlan::Schema { plan, .. } => plan.checks(),
            RunPlan::Gbnf { .. } => RecordChecks {
                validator: None,
                enum_paths: &[],
                fuzzy_threshold: self.options.fuzzy_threshold,
                require_grounding: self.options.require_grounding,
            },
        };
        build_record(
            &checks,
            slot.id,
            &slot.text,
            &slot.generation.output,
            failure,
            TokenCounts { prompt: slot.prompt_tokens, generated: slot.generation.tokens.len() },
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
        build_record(&self.checks(), id, text, output, failure, tokens, ms, Vec::new())
    }

    /// What a record of this plan is checked against.
    fn checks(&self) -> RecordChecks<'_> {
        RecordChecks {
            validator: Some(&self.validator),
            enum_paths: &self.enum_paths,
            fuzzy_threshold: self.options.fuzzy_threshold,
            require_grounding: self.options.require_grounding,
        }
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
