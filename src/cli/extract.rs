//! `medllm extract`: documents → JSON lines with grounding.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use clap::Args;

use super::options::{self, ChatTemplateOptions, ModelOptions};
use super::{GlobalOptions, Outcome};
use crate::data::{InputOptions, read_inputs};
use crate::extract::{
    ExtractOptions, ExtractionRecord, ExtractionSchema, Extractor, OutputConstraint, SchemaLimits,
    load_schema, read_examples,
};

#[derive(Debug, Args)]
pub(crate) struct ExtractArgs {
    #[command(flatten)]
    model: ModelOptions,
    /// JSON Schema of the output: a file, or a built-in name (discharge_summary,
    /// radiology_report, lab_report, medication_list, clinic_note).
    #[arg(short, long, value_name = "FILE|NAME", required_unless_present = "grammar")]
    schema: Option<String>,
    /// A GBNF grammar instead of a schema (llama.cpp's grammar sampler; no validation).
    #[arg(long, value_name = "FILE.gbnf", conflicts_with = "schema")]
    grammar: Option<PathBuf>,
    /// Inputs: files (.txt, .md, .jsonl, .csv), folders (recursive), or - for stdin.
    #[arg(value_name = "INPUT", default_value = "-")]
    inputs: Vec<PathBuf>,
    /// Write the JSON lines here (atomically) instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Documents decoded together.
    #[arg(short = 'P', long, value_name = "N", default_value_t = 4, value_parser = options::count)]
    parallel: usize,
    /// maxItems for arrays the schema leaves unbounded.
    #[arg(long, value_name = "N", default_value_t = 16)]
    max_items: u64,
    /// maxLength for strings the schema leaves unbounded.
    #[arg(long, value_name = "CHARS", default_value_t = 200)]
    max_string: u64,
    /// Most tokens generated per document.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = options::count)]
    max_tokens: usize,
    /// Few-shot examples: JSON lines of {"text": ..., "data": {...}}. Built-in schemas
    /// bring their own, as does NAME.examples.jsonl beside a NAME.schema.json.
    #[arg(long, value_name = "FILE.jsonl", conflicts_with = "no_examples")]
    examples: Option<PathBuf>,
    /// Use no few-shot examples, not even the schema's own.
    #[arg(long)]
    no_examples: bool,
    /// Instruction replacing the default system prompt.
    #[arg(long, value_name = "TEXT")]
    system: Option<String>,
    #[command(flatten)]
    template: ChatTemplateOptions,
    /// Mark records with string values not found in the source as invalid.
    #[arg(long)]
    require_grounding: bool,
    /// String values (not categories, numbers or booleans) may only be passages copied
    /// from the document, enforced while decoding: nothing can be invented.
    #[arg(long, conflicts_with = "grammar")]
    extractive: bool,
    /// Similarity (0-1) a fuzzy grounding match must reach.
    #[arg(long, value_name = "X", default_value_t = 0.85, value_parser = options::unit_f32)]
    fuzzy_threshold: f32,
    /// 0 decodes greedily (the default); above, samples among the allowed tokens.
    #[arg(long, visible_alias = "temp", value_name = "T", default_value_t = 0.0, value_parser = options::non_negative_f32)]
    temperature: f32,
    /// Seed for --temperature above 0.
    #[arg(long, value_name = "N", default_value_t = 0)]
    seed: u64,
    /// Draft tokens by copying passages of the document and keep those the model would
    /// choose (greedy schema runs). Off by default: on CPUs it measured no faster (see
    /// docs/benchmarks.md). With --parallel 1 the records are the same.
    #[arg(long)]
    speculate: bool,
    /// JSONL field holding the text.
    #[arg(long, value_name = "NAME", default_value = "text")]
    text_field: String,
    /// JSONL field holding the id.
    #[arg(long, value_name = "NAME", default_value = "id")]
    id_field: String,
    /// CSV column holding the text.
    #[arg(long, value_name = "NAME", default_value = "text")]
    text_column: String,
    /// CSV column holding the id.
    #[arg(long, value_name = "NAME", default_value = "id")]
    id_column: String,
}

pub(crate) fn run(args: ExtractArgs, global: &GlobalOptions) -> Result<Outcome> {
    // Everything that can be refused is refused before the model loads.
    if let Some(out) = &args.out {
        let schema_file = args.schema.as_deref().map(Path::new).filter(|p| p.is_file());
        let mut inputs: Vec<&Path> = args.inputs.iter().map(PathBuf::as_path).collect();
        inputs.extend(schema_file.into_iter().chain(args.grammar.as_deref()).chain(args.examples.as_deref()));
        inputs.extend(args.model.files());
        if let Some(crate::llama::ChatTemplateArg::File(file)) = &args.template.chat_template {
            inputs.push(file);
        }
        crate::atomic_file::refuse_output_among_inputs(out, inputs)?;
    }
    let mut schema_examples = Vec::new();
    let constraint = match (&args.schema, &args.grammar) {
        (Some(spec), _) => {
            let source = load_schema(spec)?;
            let limits = SchemaLimits { max_items: args.max_items, max_string: args.max_string };
            schema_examples = source.examples;
            OutputConstraint::Schema(ExtractionSchema::compile(&source.name, &source.schema, limits)?)
        }
        (None, Some(path)) => OutputConstraint::Gbnf(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read grammar {}", path.display()))?,
        ),
        (None, None) => unreachable!("clap requires --schema or --grammar"),
    };
    let examples = match (&args.examples, args.no_examples) {
        (_, true) => Vec::new(),
        (Some(path), false) => read_examples(path)?,
        (None, false) => schema_examples,
    };
    let input_options = InputOptions {
        text_field: args.text_field.clone(),
        id_field: args.id_field.clone(),
        text_column: args.text_column.clone(),
        id_column: args.id_column.clone(),
    };

    let model = args.model.load_model()?;
    let adapters = args.model.load_adapters(&model)?;
    let attached: Vec<_> = adapters.iter().map(|(a, s)| (a, *s)).collect();
    let context = args.model.context_params(1);
    let options = ExtractOptions {
        parallel: args.parallel.max(1),
        temperature: args.temperature,
        seed: args.seed,
        max_tokens: args.max_tokens,
        ctx_per_sequence: args.model.ctx,
        threads: context.n_threads,
        fuzzy_threshold: args.fuzzy_threshold,
        require_grounding: args.require_grounding,
        extractive: args.extractive,
        system: args.system.clone(),
        speculate: args.speculate,
        examples,
        prompt_format: Some(args.template.resolve(&model, global.quiet)?),
    };
    let mut extractor = Extractor::new(&model, &attached, constraint, options)?;

    let show_progress = !global.quiet && std::io::stderr().is_terminal();
    let total = if show_progress && !args.inputs.iter().any(|p| p.as_os_str() == "-") {
        Some(read_inputs(&args.inputs, &input_options).count() as u64)
    } else {
        None
    };
    let progress = show_progress.then(|| progress_bar(total));

    // Records go to stdout as they finish, or into --out, which appears whole at the end
    // (or, after Ctrl-C, with the records finished by then).
    let mut out_file = match &args.out {
        Some(path) => Some(
            crate::atomic_file::AtomicWriter::create(path)
                .with_context(|| format!("cannot write {}", path.display()))?,
        ),
        None => None,
    };
    let mut stdout = std::io::stdout().lock();
    let mut invalid = 0usize;
    let started = std::time::Instant::now();
    let mut sink = |record: ExtractionRecord| -> std::io::Result<()> {
        if !record.valid {
            invalid += 1;
        }
        let line = serde_json::to_string(&record).map_err(std::io::Error::other)?;
        if let Some(file) = &mut out_file {
            file.write_all(line.as_bytes())?;
            file.write_all(b"\n")?;
            // Whole records reach the file as they finish (a reader of a FIFO sees them;
            // an interrupted run publishes them).
            file.flush()?;
        } else {
            stdout.write_all(line.as_bytes())?;
            stdout.write_all(b"\n")?;
            stdout.flush()?;
        }
        if let Some(bar) = &progress {
            bar.inc(1);
            let minutes = started.elapsed().as_secs_f64() / 60.0;
            bar.set_message(format!(
                "{:.1} docs/min, {invalid} invalid",
                bar.position() as f64 / minutes.max(1e-9)
            ));
        }
        Ok(())
    };
    // Ctrl-C stops the run between batches; the records finished by then are kept.
    crate::interrupt::stop_on_request();
    let summary =
        extractor.run(read_inputs(&args.inputs, &input_options), &mut sink).map_err(|e| match e {
            crate::extract::RunError::Sink(io) => anyhow::Error::from(io),
            crate::extract::RunError::Extract(e) => anyhow::Error::from(e),
        })?;
    if let Some(bar) = &progress {
        bar.finish_and_clear();
    }
    if summary.interrupted {
        return finish_interrupted(out_file, args.out.as_deref(), summary.documents);
    }
    if let (Some(file), Some(path)) = (out_file, &args.out) {
        file.commit().with_context(|| format!("cannot write {}", path.display()))?;
    }
    if !global.quiet {
        let per_minute = summary.documents as f64 / (summary.seconds / 60.0).max(1e-9);
        eprintln!(
            "extracted {} documents in {:.1} s ({per_minute:.1} docs/min): {} valid, {} invalid{}; {} tokens generated",
            summary.documents,
            summary.seconds,
            summary.documents - summary.invalid,
            summary.invalid,
            if summary.truncated > 0 { format!(", {} truncated", summary.truncated) } else { String::new() },
            summary.generated_tokens
        );
        if global.verbose {
            eprintln!(
                "time: {:.2} s decoding in llama.cpp, {:.2} s choosing tokens (constraint, sampling, forced text): \
                 the constraint costs {:.1}% of decoding",
                summary.decode_seconds,
                summary.choose_seconds,
                100.0 * summary.choose_seconds / summary.decode_seconds.max(1e-9)
            );
            let counts = summary.speculation;
            eprintln!(
                "speculation: {} of {} drafted tokens accepted ({:.1}%)",
                counts.accepted,
                counts.drafted,
                100.0 * counts.accepted as f64 / counts.drafted.max(1) as f64
            );
        }
    }
    Ok(if summary.invalid > 0 { Outcome::SomeInputsFailed } else { Outcome::Success })
}

/// After a stop request: the finished records (whole lines) become the output, as a
/// resumed run would find them; with none finished, an existing output stays untouched.
fn finish_interrupted(
    out_file: Option<crate::atomic_file::AtomicWriter>,
    out: Option<&Path>,
    finished: usize,
) -> Result<Outcome> {
    match (out_file, out) {
        (Some(file), Some(path)) if finished > 0 => {
            file.commit().with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!(
                "interrupted: the {finished} records finished are in {}; documents in progress and the rest have none",
                path.display()
            );
        }
        (Some(_), Some(path)) => {
            eprintln!("interrupted before any record finished; {} was not written", path.display());
        }
        _ => eprintln!(
            "interrupted: {finished} records were written; documents in progress and the rest have none"
        ),
    }
    Ok(Outcome::Interrupted)
}

fn progress_bar(total: Option<u64>) -> indicatif::ProgressBar {
    let bar = match total {
        Some(n) => indicatif::ProgressBar::new(n).with_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} docs, {msg}, ETA {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        ),
        None => indicatif::ProgressBar::new_spinner().with_style(
            indicatif::ProgressStyle::with_template("{spinner} {pos} docs, {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        ),
    };
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    bar
}
