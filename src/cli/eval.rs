//! `medllm eval`: scores against gold labels.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};

use super::options::{self, ModelOptions};
use super::progress::ItemProgress;
use super::{GlobalOptions, Outcome};
use crate::atomic_file::{InputFiles, refuse_output_among_inputs};
use crate::data::deid::PhiDetector;
use crate::data::{InputOptions, read_inputs};
use crate::eval::{
    ExtractionScores, GoldRecord, IndexBase, McqMethod, McqSettings, PerplexitySettings, ReportSettings,
    Suite, SummarySettings, Tuned, answer_questions, generate_summaries, perplexity, questions_from_synth,
    read_documents, read_gold, read_perplexity_text, read_questions, read_summaries, render_markdown,
    run_report, score_deid, score_extraction, score_mcq, score_summaries, write_report,
};
use crate::extract::{
    ExtractOptions, ExtractionRecord, ExtractionSchema, Extractor, OutputConstraint, SchemaLimits,
    load_schema,
};

#[derive(Debug, Args)]
pub(crate) struct EvalArgs {
    #[command(subcommand)]
    command: EvalCommand,
}

#[derive(Debug, Subcommand)]
enum EvalCommand {
    /// Score extraction: per-field and overall precision/recall/F1, valid-JSON rate,
    /// grounded-string rate. Give predictions (`medllm extract` output), or `-m` with
    /// `--schema` and `--docs` to run the model first.
    Extract(EvalExtractArgs),
    /// Score de-identification against gold PHI spans: recall, precision and F1 per
    /// category and overall. A gold span is found when detections cover it.
    Deid(EvalDeidArgs),
    /// Multiple-choice accuracy (95% Wilson interval), per-letter confusion and letter
    /// bias. Reads medllm, MedQA-, MedMCQA- and PubMedQA-style files.
    Mcq(EvalMcqArgs),
    /// ROUGE-1/2/L F1 (plain and stemmed) and corpus BLEU of summaries, as rouge-score and
    /// sacrebleu compute them. Give predictions, or `-m` with `--docs` to generate them.
    Summary(EvalSummaryArgs),
    /// Perplexity of a model on a text, llama.cpp's way (the second half of each chunk of
    /// --ctx tokens is scored), with its standard error.
    Perplexity(EvalPerplexityArgs),
    /// Run a suite of tasks on a base and a tuned model; write report.md, report.json and
    /// bar charts.
    Report(EvalReportArgs),
    /// Write multiple-choice questions derived from a `medllm synth` corpus's gold labels
    /// (held-out data for `eval mcq`).
    SynthMcq(EvalSynthMcqArgs),
}

#[derive(Debug, Args)]
struct EvalMcqArgs {
    #[command(flatten)]
    model: ModelOptions,
    /// Layout of the `choice` prompt.
    #[command(flatten)]
    template: options::ChatTemplateOptions,
    /// Questions: JSON lines ({"id", "question", "options", "answer"}, MedQA- or
    /// MedMCQA-style) or a PubMedQA-style JSON object.
    #[arg(long, value_name = "FILE")]
    questions: PathBuf,
    /// logprob: the option text the model finds most likely, per byte; choice: a letter
    /// generated under a grammar after a prompt listing the options.
    #[arg(long, value_enum, default_value = "logprob")]
    method: MethodArg,
    /// Sequences decoded together.
    #[arg(short = 'P', long, value_name = "N", default_value_t = 4, value_parser = options::count)]
    parallel: usize,
    /// Index answers (answer, cop) count from 1 (the original MedMCQA release).
    #[arg(long)]
    one_based: bool,
    /// Score at most this many questions.
    #[arg(long, value_name = "N", value_parser = options::count)]
    limit: Option<usize>,
    /// Write every answer as a JSON line here.
    #[arg(long, value_name = "FILE")]
    answers: Option<PathBuf>,
    /// Print the scores as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum MethodArg {
    Logprob,
    Choice,
}

#[derive(Debug, Args)]
struct EvalSummaryArgs {
    /// References: JSON lines with id and summary (or reference/text, or a chat record's
    /// last assistant turn, as `medllm prepare` writes).
    #[arg(long, value_name = "FILE")]
    refs: PathBuf,
    /// Predictions to score: JSON lines with id and summary (or prediction/text).
    #[arg(long, value_name = "FILE", required_unless_present = "model", conflicts_with = "model")]
    pred: Option<PathBuf>,
    /// Generate summaries with this model (greedy) from --docs.
    #[arg(short = 'm', long, value_name = "FILE", requires = "docs")]
    model: Option<PathBuf>,
    /// LoRA adapter for the model, with an optional scale; repeatable.
    #[arg(long = "lora", value_name = "FILE[:SCALE]", value_parser = super::options::parse_lora, requires = "model")]
    lora: Vec<super::options::LoraSpec>,
    /// Documents: JSON lines with id and text, or chat records from `medllm prepare`
    /// (lines of other tasks are passed over).
    #[arg(long, value_name = "FILE")]
    docs: Option<PathBuf>,
    /// Most tokens per generated summary.
    #[arg(long, value_name = "N", default_value_t = 128, value_parser = options::count)]
    max_tokens: usize,
    /// Summarise at most this many documents.
    #[arg(long, value_name = "N", value_parser = options::count)]
    limit: Option<usize>,
    /// Write the generated summaries as JSON lines here.
    #[arg(short = 'o', long, value_name = "FILE", requires = "model")]
    out: Option<PathBuf>,
    /// Prompt layout of --model's summaries.
    #[command(flatten)]
    template: options::ChatTemplateOptions,
    /// CPU threads (default: all cores).
    #[arg(short = 't', long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
    /// Print the scores as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct EvalPerplexityArgs {
    #[command(flatten)]
    model: ModelOptions,
    /// The text to score: UTF-8 text, or JSON lines whose `text` fields are joined
    /// (a `.jsonl` file such as `medllm synth`'s documents.jsonl).
    #[arg(long, value_name = "FILE")]
    text: PathBuf,
    /// Score at most this many chunks (default: the whole text).
    #[arg(long, value_name = "N", value_parser = options::count)]
    chunks: Option<usize>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct EvalReportArgs {
    /// The base model.
    #[arg(long, value_name = "MODEL.gguf")]
    base: PathBuf,
    /// The tuned side: the base with this LoRA adapter (FILE[:SCALE]).
    #[arg(long, value_name = "A.gguf[:SCALE]", value_parser = super::options::parse_lora, conflicts_with = "tuned")]
    lora: Option<super::options::LoraSpec>,
    /// The tuned side: another model file.
    #[arg(long, value_name = "MODEL.gguf")]
    tuned: Option<PathBuf>,
    /// The suite: TOML naming the held-out data of each task.
    #[arg(long, value_name = "SUITE.toml")]
    suite: PathBuf,
    /// Folder for report.md, report.json and chart-<task>.png.
    #[arg(short = 'o', long, value_name = "DIR")]
    out: PathBuf,
    /// CPU threads (default: all cores).
    #[arg(short = 't', long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
    /// Prompt layout of both sides.
    #[command(flatten)]
    template: options::ChatTemplateOptions,
}

#[derive(Debug, Args)]
struct EvalSynthMcqArgs {
    /// The corpus: `medllm synth`'s documents.jsonl.
    #[arg(value_name = "DOCUMENTS.jsonl")]
    documents: PathBuf,
    /// Where to write the questions (JSON lines).
    #[arg(short = 'o', long, value_name = "FILE")]
    out: PathBuf,
    /// Seed of the distractors and letters.
    #[arg(long, value_name = "N", default_value_t = 0)]
    seed: u64,
}

#[derive(Debug, Args)]
struct EvalDeidArgs {
    /// Gold: JSON lines of {"id", "text", "phi": [{"category", "start", "end"}]} with
    /// offsets in characters (`medllm synth` writes these as documents.jsonl), or text with
    /// inline marks ⟦CATEGORY|value⟧: one .txt file, or a folder of them
    #[arg(long, value_name = "GOLD")]
    gold: PathBuf,
    /// Print the scores as one JSON object.
    #[arg(long)]
    json: bool,
    /// Write every missed span and false hit (id, kind, category, offsets, and the text
    /// of the span: this file holds PHI when the gold does).
    #[arg(long, value_name = "FILE")]
    misses: Option<PathBuf>,
    /// Write every leaked gold span as {"id", "category", "start", "end", "characters"}:
    /// ids and offsets only, never the text.
    #[arg(long, value_name = "FILE")]
    leaks: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct EvalExtractArgs {
    /// Gold labels: JSON lines of {"id": ..., "data": {...}}.
    #[arg(long, value_name = "GOLD.jsonl")]
    gold: PathBuf,
    /// Predictions: the JSON lines `medllm extract` wrote.
    #[arg(value_name = "PRED.jsonl", required_unless_present = "model")]
    predictions: Option<PathBuf>,
    /// Run this model on --docs instead of reading predictions.
    #[arg(short = 'm', long, value_name = "FILE", requires_all = ["schema", "docs"], conflicts_with = "predictions")]
    model: Option<PathBuf>,
    /// Schema for running the model.
    #[arg(long, value_name = "FILE|NAME")]
    schema: Option<String>,
    /// Documents for running the model (any input `medllm extract` reads).
    #[arg(long, value_name = "FILE")]
    docs: Option<PathBuf>,
    /// Documents decoded together when running the model.
    #[arg(short = 'P', long, value_name = "N", default_value_t = 4, value_parser = options::count)]
    parallel: usize,
    /// Print the scores as one JSON object.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: EvalArgs, global: &GlobalOptions) -> Result<Outcome> {
    match args.command {
        EvalCommand::Extract(args) => eval_extract(args, global),
        EvalCommand::Deid(args) => eval_deid(args, global),
        EvalCommand::Mcq(args) => eval_mcq(args, global),
        EvalCommand::Summary(args) => eval_summary(args, global),
        EvalCommand::Perplexity(args) => eval_perplexity(args, global),
        EvalCommand::Report(args) => eval_report(args, global),
        EvalCommand::SynthMcq(args) => eval_synth_mcq(args, global),
    }
}

fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<Vec<T>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {what} {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{}:{}: not a {what} line", path.display(), i + 1))
        })
        .collect()
}

fn eval_extract(args: EvalExtractArgs, global: &GlobalOptions) -> Result<Outcome> {
    let gold: Vec<GoldRecord> = read_jsonl(&args.gold, "gold")?;
    if gold.is_empty() {
        bail!("{} holds no gold records", args.gold.display());
    }
    let predictions: Vec<ExtractionRecord> = match (&args.predictions, &args.model) {
        (Some(path), _) => read_jsonl(path, "prediction")?,
        (None, Some(model_path)) => {
            let source = load_schema(args.schema.as_deref().unwrap_or_default())?;
            let schema = ExtractionSchema::compile(&source.name, &source.schema, SchemaLimits::default())?;
            let model_options =
                ModelOptions { model: model_path.clone(), lora: Vec::new(), threads: None, ctx: 4096 };
            let model = model_options.load_model()?;
            let options = ExtractOptions {
                parallel: args.parallel.max(1),
                examples: source.examples,
                ..ExtractOptions::default()
            };
            let mut extractor = Extractor::new(&model, &[], OutputConstraint::Schema(schema), options)?;
            let docs = args.docs.clone().unwrap_or_default();
            let mut records = Vec::new();
            extractor
                .run(read_inputs(&[docs], &InputOptions::default()), &mut |r| {
                    records.push(r);
                    Ok::<_, std::convert::Infallible>(())
                })
                .map_err(anyhow::Error::from)?;
            records
        }
        (None, None) => unreachable!("clap requires predictions or --model"),
    };
    let scores = score_extraction(&gold, &predictions);
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &scores)?;
        writeln!(out)?;
    } else {
        print_table(&mut out, &scores)?;
    }
    if !global.quiet && scores.missing > 0 {
        eprintln!("{} gold documents had no prediction", scores.missing);
    }
    Ok(Outcome::Success)
}

fn print_table(out: &mut impl Write, s: &ExtractionScores) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<28} {:>9} {:>9} {:>9} {:>6} {:>6} {:>6}",
        "field", "precision", "recall", "f1", "tp", "fp", "fn"
    )?;
    let rows =
        s.fields.iter().map(|(k, v)| (k.as_str(), v)).chain(std::iter::once(("overall (micro)", &s.overall)));
    for (name, f) in rows {
        writeln!(
            out,
            "{name:<28} {:>9.3} {:>9.3} {:>9.3} {:>6} {:>6} {:>6}",
            f.precision, f.recall, f.f1, f.true_positives, f.false_positives, f.false_negatives
        )?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "documents {}   valid JSON {:.1}%   grounded strings {:.1}%",
        s.documents,
        100.0 * s.valid_rate,
        100.0 * s.grounded_rate
    )
}

fn eval_deid(args: EvalDeidArgs, global: &GlobalOptions) -> Result<Outcome> {
    // The gold is a file or a folder; neither report may replace it or land among it.
    let gold_inputs = InputFiles::new([args.gold.as_path()]);
    for output in [&args.misses, &args.leaks].into_iter().flatten() {
        gold_inputs.check(output)?;
    }
    if let (Some(misses), Some(leaks)) = (&args.misses, &args.leaks)
        && crate::atomic_file::same_path(misses, leaks)
    {
        bail!("--misses and --leaks name the same file {}; give each its own", misses.display());
    }
    let gold = read_gold(&args.gold).context("cannot read the gold")?;
    for problem in &gold.bad_lines {
        eprintln!("warning: {problem}; skipped");
    }
    if gold.documents.is_empty() {
        bail!("{} holds no gold documents", args.gold.display());
    }
    let detector = PhiDetector::new();
    let open = |path: &Option<PathBuf>| -> Result<Option<crate::atomic_file::AtomicWriter>> {
        path.as_ref()
            .map(|p| {
                crate::atomic_file::AtomicWriter::create(p)
                    .with_context(|| format!("cannot write {}", p.display()))
            })
            .transpose()
    };
    let mut misses = open(&args.misses)?;
    let mut leaks = open(&args.leaks)?;
    let mut write_error = None;
    let scores = score_deid(&detector, gold.documents, |document, miss| {
        let mut write = |out: &mut crate::atomic_file::AtomicWriter, line: serde_json::Value| {
            if let Err(e) = writeln!(out, "{line}") {
                write_error.get_or_insert(e);
            }
        };
        if let Some(out) = &mut misses {
            let text: String = document.text.chars().skip(miss.start).take(miss.end - miss.start).collect();
            write(
                out,
                serde_json::json!({"id": miss.id, "kind": miss.kind, "category": miss.category, "start": miss.start, "end": miss.end, "text": text}),
            );
        }
        if let Some(out) = &mut leaks
            && miss.kind == "missed"
        {
            write(
                out,
                serde_json::json!({"id": miss.id, "category": miss.category, "start": miss.start, "end": miss.end, "characters": miss.characters}),
            );
        }
    });
    if let Some(e) = write_error {
        return Err(e).context("cannot write the misses or leaks file");
    }
    for (out, path) in [(misses, &args.misses), (leaks, &args.leaks)] {
        if let (Some(out), Some(path)) = (out, path) {
            out.commit().with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &scores)?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "{:<12} {:>6} {:>6} {:>8} {:>8} {:>8} {:>9} {:>6} {:>7} {:>10}",
            "category",
            "gold",
            "found",
            "recall",
            "detected",
            "correct",
            "precision",
            "f1",
            "leaked",
            "char prec"
        )?;
        let rows = scores
            .categories
            .iter()
            .map(|(c, s)| (c.as_str(), s))
            .chain(std::iter::once(("overall", &scores.overall)));
        for (name, s) in rows {
            writeln!(
                out,
                "{name:<12} {:>6} {:>6} {:>8.4} {:>8} {:>8} {:>9.4} {:>6.4} {:>7} {:>10.4}",
                s.gold,
                s.found,
                s.recall,
                s.detected,
                s.correct,
                s.precision,
                s.f1,
                s.leaked_characters,
                s.character_precision
            )?;
        }
        writeln!(
            out,
            "\ndocuments {}   leaked characters {} of {}",
            scores.documents, scores.overall.leaked_characters, scores.overall.gold_characters
        )?;
    }
    if !global.quiet && scores.invalid_gold_spans > 0 {
        eprintln!("{} gold spans lay outside their text and were not scored", scores.invalid_gold_spans);
    }
    Ok(if !gold.bad_lines.is_empty() || scores.invalid_gold_spans > 0 {
        Outcome::SomeInputsFailed
    } else {
        Outcome::Success
    })
}

fn threads_of(threads: Option<u16>) -> i32 {
    threads.map_or_else(|| crate::llama::ContextParams::default().n_threads, i32::from)
}

fn eval_mcq(args: EvalMcqArgs, global: &GlobalOptions) -> Result<Outcome> {
    if let Some(answers) = &args.answers {
        refuse_output_among_inputs(
            answers,
            std::iter::once(args.questions.as_path()).chain(args.model.files()),
        )?;
    }
    let base = if args.one_based { IndexBase::One } else { IndexBase::Zero };
    let mut set = read_questions(&args.questions, base)?;
    for s in &set.skipped {
        let at = if s.line > 0 {
            format!("{}:{}", args.questions.display(), s.line)
        } else {
            args.questions.display().to_string()
        };
        let id = s.id.as_deref().map(|i| format!(" (id {i})")).unwrap_or_default();
        eprintln!("warning: {at}{id}: {}; skipped", s.reason);
    }
    if let Some(limit) = args.limit {
        set.questions.truncate(limit);
    }
    if set.questions.is_empty() {
        bail!("{} holds no usable questions", args.questions.display());
    }
    let method = match args.method {
        MethodArg::Logprob => McqMethod::Logprob,
        MethodArg::Choice => McqMethod::Choice,
    };
    let model = args.model.load_model()?;
    let adapters = args.model.load_adapters(&model)?;
    let adapter_refs: Vec<_> = adapters.iter().map(|(a, s)| (a, *s)).collect();
    let settings = McqSettings {
        method,
        parallel: args.parallel.max(1),
        ctx_per_sequence: args.model.ctx.min(4096),
        threads: threads_of(args.model.threads),
        prompt_format: Some(args.template.resolve(&model, global.quiet)?),
    };
    let progress = ItemProgress::new(global, set.questions.len(), "questions");
    let answers =
        answer_questions(&model, &adapter_refs, &set.questions, &settings, &mut |n| progress.set(n))?;
    progress.finish();
    if let Some(path) = &args.answers {
        crate::atomic_file::write_atomically(path, |f| {
            for a in &answers {
                serde_json::to_writer(&mut *f, a)?;
                writeln!(f)?;
            }
            Ok(())
        })
        .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let scores = score_mcq(method.name(), &answers, set.skipped.len());
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &scores)?;
        writeln!(out)?;
    } else {
        let a = &scores.accuracy;
        writeln!(out, "method      {}", scores.method)?;
        writeln!(out, "questions   {} ({} skipped)", scores.questions, scores.skipped)?;
        writeln!(
            out,
            "accuracy    {:.4}  95% CI [{:.4}, {:.4}]  ({} correct)",
            a.value, a.low, a.high, scores.correct
        )?;
        writeln!(
            out,
            "letter bias {:.1}% of answers are {} (gold has {:.1}%)",
            100.0 * scores.letter_bias_rate,
            scores.most_chosen_letter,
            100.0 * scores.most_chosen_letter_gold_rate
        )?;
        let letters: Vec<&String> = {
            let mut l: Vec<&String> =
                scores.confusion.keys().chain(scores.confusion.values().flat_map(|m| m.keys())).collect();
            l.sort();
            l.dedup();
            l
        };
        write!(out, "\nconfusion (rows gold, columns predicted)\n     ")?;
        for l in &letters {
            write!(out, "{l:>6}")?;
        }
        writeln!(out)?;
        for g in &letters {
            write!(out, "{g:>5}")?;
            for p in &letters {
                let n = scores.confusion.get(*g).and_then(|m| m.get(*p)).copied().unwrap_or(0);
                write!(out, "{n:>6}")?;
            }
            writeln!(out)?;
        }
    }
    Ok(if set.skipped.is_empty() { Outcome::Success } else { Outcome::SomeInputsFailed })
}

fn report_bad_lines(path: &Path, bad: &[crate::eval::BadLine]) {
    for b in bad {
        eprintln!("warning: {}:{}: {}; skipped", path.display(), b.line, b.reason);
    }
}

fn eval_summary(args: EvalSummaryArgs, global: &GlobalOptions) -> Result<Outcome> {
    if let Some(out) = &args.out {
        let inputs = [Some(&args.refs), args.docs.as_ref(), args.model.as_ref()]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path)
            .chain(args.lora.iter().map(|l| l.path.as_path()));
        refuse_output_among_inputs(out, inputs)?;
    }
    let (refs, bad_refs) = read_summaries(&args.refs)?;
    report_bad_lines(&args.refs, &bad_refs);
    let mut failed = !bad_refs.is_empty();
    let predictions = match (&args.pred, &args.model) {
        (Some(path), _) => {
            let (preds, bad) = read_summaries(path)?;
            report_bad_lines(path, &bad);
            failed |= !bad.is_empty();
            preds
        }
        (None, Some(model_path)) => {
            let docs_path = args.docs.clone().unwrap_or_default();
            let (mut docs, bad) = read_documents(&docs_path)?;
            report_bad_lines(&docs_path, &bad);
            failed |= !bad.is_empty();
            docs.retain(|d| refs.contains_key(&d.id));
            if let Some(limit) = args.limit {
                docs.truncate(limit);
            }
            let options = ModelOptions {
                model: model_path.clone(),
                lora: args.lora.clone(),
                threads: args.threads,
                ctx: 2048,
            };
            let model = options.load_model()?;
            let adapters = options.load_adapters(&model)?;
            let adapter_refs: Vec<_> = adapters.iter().map(|(a, s)| (a, *s)).collect();
            let settings = SummarySettings {
                max_tokens: args.max_tokens,
                ctx: 2048,
                threads: threads_of(args.threads),
                prompt_format: Some(args.template.resolve(&model, global.quiet)?),
            };
            let progress = ItemProgress::new(global, docs.len(), "documents");
            let preds =
                generate_summaries(&model, &adapter_refs, &docs, &settings, &mut |n| progress.set(n))?;
            progress.finish();
            if let Some(path) = &args.out {
                crate::atomic_file::write_atomically(path, |f| {
                    for d in &docs {
                        let line = serde_json::json!({"id": d.id, "summary": preds.get(&d.id)});
                        writeln!(f, "{line}")?;
                    }
                    Ok(())
                })
                .with_context(|| format!("cannot write {}", path.display()))?;
            }
            let wanted: std::collections::HashSet<&String> = docs.iter().map(|d| &d.id).collect();
            let refs_subset = refs
                .iter()
                .filter(|(id, _)| wanted.contains(id))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            return finish_summary(&refs_subset, &preds, args.json, global, failed);
        }
        (None, None) => unreachable!("clap requires predictions or --model"),
    };
    finish_summary(&refs, &predictions, args.json, global, failed)
}

fn finish_summary(
    refs: &std::collections::HashMap<String, String>,
    predictions: &std::collections::HashMap<String, String>,
    json: bool,
    global: &GlobalOptions,
    failed: bool,
) -> Result<Outcome> {
    let scores = score_summaries(refs, predictions);
    if scores.pairs == 0 {
        bail!("no prediction has the id of a reference");
    }
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &scores)?;
        writeln!(out)?;
    } else {
        let r = &scores.rouge;
        writeln!(out, "{:<10} {:>10} {:>10}", "F1", "plain", "stemmed")?;
        writeln!(out, "{:<10} {:>10.4} {:>10.4}", "ROUGE-1", r.rouge1, r.rouge1_stemmed)?;
        writeln!(out, "{:<10} {:>10.4} {:>10.4}", "ROUGE-2", r.rouge2, r.rouge2_stemmed)?;
        writeln!(out, "{:<10} {:>10.4} {:>10.4}", "ROUGE-L", r.rouge_l, r.rouge_l_stemmed)?;
        if let Some(b) = &scores.bleu {
            writeln!(
                out,
                "\nBLEU {:.4}  ({:.1}/{:.1}/{:.1}/{:.1}, BP {:.4}, {}/{} tokens)",
                b.score,
                b.precisions[0],
                b.precisions[1],
                b.precisions[2],
                b.precisions[3],
                b.brevity_penalty,
                b.hypothesis_length,
                b.reference_length
            )?;
        }
        writeln!(out, "pairs {}", scores.pairs)?;
    }
    if !global.quiet && scores.missing_predictions > 0 {
        eprintln!("{} references had no prediction and were not scored", scores.missing_predictions);
    }
    Ok(if failed { Outcome::SomeInputsFailed } else { Outcome::Success })
}

fn eval_perplexity(args: EvalPerplexityArgs, _global: &GlobalOptions) -> Result<Outcome> {
    // Refused before the model loads.
    let (ctx, minimum) = (args.model.ctx as usize, crate::quant::MIN_CHUNK_TOKENS);
    if ctx < minimum {
        return Err(crate::quant::QuantError::ContextTooSmall { ctx, minimum }.into());
    }
    let text = read_perplexity_text(&args.text)?;
    let model = args.model.load_model()?;
    let adapters = args.model.load_adapters(&model)?;
    let adapter_refs: Vec<_> = adapters.iter().map(|(a, s)| (a, *s)).collect();
    let settings = PerplexitySettings {
        ctx: args.model.ctx as usize,
        max_chunks: args.chunks,
        threads: threads_of(args.model.threads),
    };
    let r = perplexity(&model, &adapter_refs, &text, &settings)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &r)?;
        writeln!(out)?;
    } else {
        writeln!(out, "scored      {} tokens in {} chunks of {}", r.tokens_scored, r.chunks, r.ctx)?;
        writeln!(out, "perplexity  {:.4} ± {:.4}", r.perplexity, r.perplexity_stderr)?;
    }
    Ok(Outcome::Success)
}

fn eval_report(args: EvalReportArgs, global: &GlobalOptions) -> Result<Outcome> {
    let inputs = InputFiles::new(
        [Some(&args.base), Some(&args.suite), args.tuned.as_ref(), args.lora.as_ref().map(|l| &l.path)]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path),
    );
    for name in ["report.md", "report.json"] {
        inputs.check(&args.out.join(name))?;
    }
    let suite = Suite::load(&args.suite)?;
    let tuned = match (&args.lora, &args.tuned) {
        (Some(spec), _) => Some(Tuned::Lora { adapter: spec.path.clone(), scale: spec.scale }),
        (None, Some(path)) => Some(Tuned::Model { path: path.clone() }),
        (None, None) => None,
    };
    let settings = ReportSettings {
        base: args.base.clone(),
        tuned,
        threads: threads_of(args.threads),
        chat_template: args.template.chat_template.clone(),
    };
    let steps = suite.task_names().len() * if settings.tuned.is_some() { 2 } else { 1 };
    let progress = ItemProgress::new(global, steps, "tasks");
    let report = run_report(&settings, &suite, &mut |what, done, _| {
        progress.set(done);
        progress.message(what);
        if global.verbose {
            eprintln!("[{done}/{steps}] {what}");
        }
    })?;
    progress.finish();
    let files = write_report(&report, &args.out)?;
    print!("{}", render_markdown(&report));
    if !global.quiet {
        for f in files {
            eprintln!("wrote {}", f.display());
        }
    }
    let skipped = report.skipped_inputs();
    if skipped > 0 {
        eprintln!(
            "warning: {skipped} malformed input(s) were left out (see the warnings of the single commands)"
        );
        return Ok(Outcome::SomeInputsFailed);
    }
    Ok(Outcome::Success)
}

fn eval_synth_mcq(args: EvalSynthMcqArgs, global: &GlobalOptions) -> Result<Outcome> {
    refuse_output_among_inputs(&args.out, [args.documents.as_path()])?;
    let documents: Vec<crate::data::synth::SynthDocument> = read_jsonl(&args.documents, "synth document")?;
    let questions = questions_from_synth(&documents, args.seed);
    crate::atomic_file::write_atomically(&args.out, |f| {
        for q in &questions {
            let options: serde_json::Map<String, serde_json::Value> =
                q.options.iter().map(|(l, t)| (l.clone(), serde_json::Value::String(t.clone()))).collect();
            let line = serde_json::json!({"id": q.id, "question": q.question, "context": q.context, "options": options, "answer": q.answer_letter()});
            writeln!(f, "{line}")?;
        }
        Ok(())
    })
    .with_context(|| format!("cannot write {}", args.out.display()))?;
    if !global.quiet {
        eprintln!("wrote {} questions to {}", questions.len(), args.out.display());
    }
    Ok(Outcome::Success)
}
