//! `medllm eval`: scores against gold labels.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};

use super::options::ModelOptions;
use super::{GlobalOptions, Outcome};
use crate::data::deid::PhiDetector;
use crate::data::{InputOptions, read_inputs};
use crate::eval::{ExtractionScores, GoldPhiDocument, GoldRecord, score_deid, score_extraction};
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
}

#[derive(Debug, Args)]
struct EvalDeidArgs {
    /// Gold: JSON lines of {"id", "text", "phi": [{"category", "start", "end"}]} with
    /// offsets in characters (`medllm synth` writes these as documents.jsonl).
    #[arg(long, value_name = "GOLD.jsonl")]
    gold: PathBuf,
    /// Print the scores as one JSON object.
    #[arg(long)]
    json: bool,
    /// Write every missed span and false hit (id, kind, category, offsets, and the text
    /// of the span: this file holds PHI when the gold does).
    #[arg(long, value_name = "FILE")]
    misses: Option<PathBuf>,
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
    #[arg(short = 'P', long, value_name = "N", default_value_t = 4)]
    parallel: usize,
    /// Print the scores as one JSON object.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: EvalArgs, global: &GlobalOptions) -> Result<Outcome> {
    match args.command {
        EvalCommand::Extract(args) => eval_extract(args, global),
        EvalCommand::Deid(args) => eval_deid(args, global),
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
                .map_err(|e| anyhow::anyhow!("{e}"))?;
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
    use std::io::BufRead;
    let file = std::fs::File::open(&args.gold)
        .with_context(|| format!("cannot read gold {}", args.gold.display()))?;
    let mut bad_lines = 0usize;
    let mut documents = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("cannot read gold {}", args.gold.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<GoldPhiDocument>(&line) {
            Ok(document) => documents.push(document),
            Err(e) => {
                bad_lines += 1;
                eprintln!(
                    "warning: {}:{}: not a gold line ({}); skipped",
                    args.gold.display(),
                    i + 1,
                    e.classify_name()
                );
            }
        }
    }
    if documents.is_empty() {
        bail!("{} holds no gold documents", args.gold.display());
    }
    let detector = PhiDetector::new();
    let mut misses = match &args.misses {
        Some(path) => Some(
            crate::atomic_file::AtomicWriter::create(path)
                .with_context(|| format!("cannot write {}", path.display()))?,
        ),
        None => None,
    };
    let mut write_error = None;
    let scores = score_deid(&detector, documents, |document, miss| {
        if let Some(out) = &mut misses {
            let text: String = document.text.chars().skip(miss.start).take(miss.end - miss.start).collect();
            let line = serde_json::json!({"id": miss.id, "kind": miss.kind, "category": miss.category, "start": miss.start, "end": miss.end, "text": text});
            if let Err(e) = writeln!(out, "{line}") {
                write_error.get_or_insert(e);
            }
        }
    });
    if let Some(e) = write_error {
        return Err(e).context("cannot write the misses file");
    }
    if let (Some(out), Some(path)) = (misses, &args.misses) {
        out.commit().with_context(|| format!("cannot write {}", path.display()))?;
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &scores)?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "{:<12} {:>6} {:>6} {:>8} {:>8} {:>8} {:>9} {:>6}",
            "category", "gold", "found", "recall", "detected", "correct", "precision", "f1"
        )?;
        let rows = scores
            .categories
            .iter()
            .map(|(c, s)| (c.as_str(), s))
            .chain(std::iter::once(("overall", &scores.overall)));
        for (name, s) in rows {
            writeln!(
                out,
                "{name:<12} {:>6} {:>6} {:>8.4} {:>8} {:>8} {:>9.4} {:>6.4}",
                s.gold, s.found, s.recall, s.detected, s.correct, s.precision, s.f1
            )?;
        }
        writeln!(out, "\ndocuments {}", scores.documents)?;
    }
    if !global.quiet && scores.invalid_gold_spans > 0 {
        eprintln!("{} gold spans lay outside their text and were not scored", scores.invalid_gold_spans);
    }
    Ok(if bad_lines > 0 || scores.invalid_gold_spans > 0 {
        Outcome::SomeInputsFailed
    } else {
        Outcome::Success
    })
}

/// A serde_json error's category without the input it quotes.
trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "read error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "missing or wrong fields",
            serde_json::error::Category::Eof => "unexpected end",
        }
    }
}
