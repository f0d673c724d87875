//! The base-vs-tuned report: a suite file names the held-out data of each task; every task
//! runs on the base model and on the tuned one (the base with a LoRA adapter, or another
//! model file), and the figures go to `report.md`, `report.json` and one PNG bar chart
//! per task with 95% intervals.
//!
//! Suite (TOML; paths relative to the suite file; every section optional):
//! ```toml
//! [mcq]         # questions = "mcq.jsonl", method = "logprob"|"choice", parallel, limit
//! [summary]     # docs = "test.jsonl", refs = "test.jsonl", max_tokens, limit
//! [perplexity]  # text = "heldout.txt", ctx = 256, chunks
//! [extract]     # schema = "discharge_summary", docs = "docs.jsonl", gold = "gold.jsonl", parallel,
//!               # examples = true|false (the schema's few-shot examples), limit
//! [deid]        # gold = "documents.jsonl", limit
//! ```

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::EvalError;
use super::answer::{McqMethod, McqSettings, answer_questions};
use super::chart::{Bar, bar_chart};
use super::deid::{GoldPhiDocument, score_deid};
use super::extract::{GoldRecord, score_extraction};
use super::mcq::{IndexBase, read_questions, score_mcq};
use super::perplexity::{PerplexitySettings, perplexity, read_perplexity_text};
use super::stats::{Estimate, mean_interval, wilson_interval};
use super::summary::{SummarySettings, generate_summaries, read_documents, read_summaries, score_summaries};
use crate::data::deid::PhiDetector;
use crate::data::{InputItem, InputOptions, read_inputs};
use crate::extract::{
    ExtractOptions, ExtractionSchema, Extractor, OutputConstraint, SchemaLimits, load_schema,
};
use crate::llama::{LoraAdapter, Model, ModelParams};

/// The MCQ task.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct McqTask {
    /// Questions file (any format `eval mcq` reads).
    pub questions: PathBuf,
    /// How answers are chosen.
    #[serde(default)]
    pub method: McqMethod,
    /// Sequences decoded together.
    #[serde(default = "default_parallel")]
    pub parallel: usize,
    /// Index answers count from 1.
    #[serde(default)]
    pub one_based: bool,
    /// Most questions.
    pub limit: Option<usize>,
}

/// The summary task.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SummaryTask {
    /// Documents to summarise.
    pub docs: PathBuf,
    /// References.
    pub refs: PathBuf,
    /// Most tokens per summary.
    #[serde(default = "default_summary_tokens")]
    pub max_tokens: usize,
    /// Most documents.
    pub limit: Option<usize>,
}

/// The perplexity task.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PerplexityTask {
    /// Plain text.
    pub text: PathBuf,
    /// Tokens per chunk.
    #[serde(default = "default_ppl_ctx")]
    pub ctx: usize,
    /// Most chunks.
    pub chunks: Option<usize>,
}

/// The extraction task.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExtractTask {
    /// Built-in schema name or schema file.
    pub schema: String,
    /// Documents (any input `medllm extract` reads).
    pub docs: PathBuf,
    /// Gold `{"id", "data"}` lines.
    pub gold: PathBuf,
    /// Documents decoded together.
    #[serde(default = "default_parallel")]
    pub parallel: usize,
    /// Prompt with the schema's own few-shot examples, as `medllm extract` does by default.
    /// `false` prompts as `medllm prepare` writes extraction examples (instruction and
    /// schema only), the prompt a model fine-tuned on that data learnt.
    #[serde(default = "default_true")]
    pub examples: bool,
    /// Most documents.
    pub limit: Option<usize>,
}

/// The de-identification task (the rule-based detector: the same for both models).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeidTask {
    /// Gold `{"id", "text", "phi"}` lines.
    pub gold: PathBuf,
    /// Most documents.
    pub limit: Option<usize>,
}

fn default_true() -> bool {
    true
}
fn default_parallel() -> usize {
    4
}
fn default_summary_tokens() -> usize {
    128
}
fn default_ppl_ctx() -> usize {
    256
}

/// A suite of tasks.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    /// Multiple-choice accuracy.
    pub mcq: Option<McqTask>,
    /// Summary ROUGE-L.
    pub summary: Option<SummaryTask>,
    /// Perplexity.
    pub perplexity: Option<PerplexityTask>,
    /// Extraction F1.
    pub extract: Option<ExtractTask>,
    /// De-identification recall.
    pub deid: Option<DeidTask>,
}

impl Suite {
    /// Reads a suite file; relative paths become relative to its folder.
    pub fn load(path: &Path) -> Result<Suite, EvalError> {
        let fail = |reason: String| EvalError::Suite { path: path.to_path_buf(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let mut suite: Suite = toml::from_str(&text).map_err(|e| fail(e.message().to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(t) = &mut suite.mcq {
            fix(&mut t.questions);
        }
        if let Some(t) = &mut suite.summary {
            fix(&mut t.docs);
            fix(&mut t.refs);
        }
        if let Some(t) = &mut suite.perplexity {
            fix(&mut t.text);
        }
        if let Some(t) = &mut suite.extract {
            fix(&mut t.docs);
            fix(&mut t.gold);
            let schema = base.join(&t.schema);
            if schema.is_file() {
                t.schema = schema.to_string_lossy().into_owned();
            }
        }
        if let Some(t) = &mut suite.deid {
            fix(&mut t.gold);
        }
        if suite.task_names().is_empty() {
            return Err(fail(
                "no task: give at least one of [mcq], [summary], [perplexity], [extract], [deid]".into(),
            ));
        }
        Ok(suite)
    }

    /// The tasks configured, in report order.
    pub fn task_names(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.extract.is_some() {
            out.push("extract");
        }
        if self.mcq.is_some() {
            out.push("mcq");
        }
        if self.summary.is_some() {
            out.push("summary");
        }
        if self.perplexity.is_some() {
            out.push("perplexity");
        }
        if self.deid.is_some() {
            out.push("deid");
        }
        out
    }
}

/// The tuned side of the comparison.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tuned {
    /// The base with a LoRA adapter at a scale.
    Lora {
        /// The adapter GGUF.
        adapter: PathBuf,
        /// Its scale.
        scale: f32,
    },
    /// Another model file (merged or fully fine-tuned).
    Model {
        /// The model GGUF.
        path: PathBuf,
    },
}

/// What the report compares.
#[derive(Debug, Clone)]
pub struct ReportSettings {
    /// The base model.
    pub base: PathBuf,
    /// The tuned side (None: the base alone).
    pub tuned: Option<Tuned>,
    /// CPU threads.
    pub threads: i32,
    /// Prompt layout of both sides (`--chat-template`); `None`: each model's own chat
    /// template, else plain text.
    pub chat_template: Option<crate::llama::ChatTemplateArg>,
}

/// One task's figure for one model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskOutcome {
    /// The headline figure and its 95% interval.
    pub estimate: Estimate,
    /// Everything the task measured.
    pub details: Value,
    /// Inputs that were malformed and left out.
    pub skipped_inputs: usize,
}

/// One task of the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskResult {
    /// `extract`, `mcq`, `summary`, `perplexity` or `deid`.
    pub task: String,
    /// What the headline figure is.
    pub metric: String,
    /// Whether higher is better (false for perplexity).
    pub higher_is_better: bool,
    /// The base model.
    pub base: TaskOutcome,
    /// The tuned model.
    pub tuned: Option<TaskOutcome>,
    /// Something a reader must know (e.g. the task does not involve the model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// The base model file.
    pub base: PathBuf,
    /// The tuned side.
    pub tuned: Option<Tuned>,
    /// The suite as run.
    pub suite: Suite,
    /// Per task.
    pub tasks: Vec<TaskResult>,
}

impl Report {
    /// Malformed inputs left out, over all tasks and models.
    pub fn skipped_inputs(&self) -> usize {
        self.tasks
            .iter()
            .map(|t| t.base.skipped_inputs + t.tuned.as_ref().map_or(0, |o| o.skipped_inputs))
            .sum()
    }
}

/// Runs every task of `suite` on the base and the tuned model. `progress` hears
/// (what is running, steps done, steps in all).
pub fn run_report(
    settings: &ReportSettings,
    suite: &Suite,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<Report, EvalError> {
    let names = suite.task_names();
    let sides = if settings.tuned.is_some() { 2 } else { 1 };
    let steps = names.len() * sides;
    let mut done = 0usize;
    let base_model = Model::load(&settings.base, &ModelParams::default())?;
    let format_of = |model: &Model| {
        crate::llama::resolve_template(settings.chat_template.as_ref(), model.chat_template())
            .map(|r| r.format)
    };
    let base_format = format_of(&base_model)?;
    let mut base_results = Vec::new();
    for name in &names {
        progress(&format!("{name} (base)"), done, steps);
        base_results.push(run_task(name, suite, &base_model, &[], &base_format, settings.threads)?);
        done += 1;
    }
    let mut tuned_results: Vec<Option<TaskOutcome>> = vec![None; names.len()];
    match &settings.tuned {
        None => {}
        Some(Tuned::Lora { adapter, scale }) => {
            let lora = LoraAdapter::load(&base_model, adapter)?;
            let adapters = [(&lora, *scale)];
            for (k, name) in names.iter().enumerate() {
                progress(&format!("{name} (tuned)"), done, steps);
                tuned_results[k] =
                    Some(run_task(name, suite, &base_model, &adapters, &base_format, settings.threads)?);
                done += 1;
            }
        }
        Some(Tuned::Model { path }) => {
            drop(base_model);
            let model = Model::load(path, &ModelParams::default())?;
            let format = format_of(&model)?;
            for (k, name) in names.iter().enumerate() {
                progress(&format!("{name} (tuned)"), done, steps);
                tuned_results[k] = Some(run_task(name, suite, &model, &[], &format, settings.threads)?);
                done += 1;
            }
        }
    }
    progress("done", done, steps);
    let tasks = names
        .iter()
        .zip(base_results)
        .zip(tuned_results)
        .map(|((name, base), tuned)| {
            let (metric, higher_is_better, note) = match *name {
                "extract" => ("overall F1 (micro)", true, None),
                "mcq" => ("accuracy", true, None),
                "summary" => ("ROUGE-L F1 (stemmed)", true, None),
                "perplexity" => ("perplexity", false, None),
                _ => (
                    "PHI recall",
                    true,
                    Some(
                        "the de-identifier is rule-based: no model is involved, so both columns are the same"
                            .into(),
                    ),
                ),
            };
            TaskResult { task: name.to_string(), metric: metric.into(), higher_is_better, base, tuned, note }
        })
        .collect();
    Ok(Report { base: settings.base.clone(), tuned: settings.tuned.clone(), suite: suite.clone(), tasks })
}

fn engine(e: impl std::error::Error) -> EvalError {
    EvalError::Engine(crate::with_causes(&e))
}

fn run_task(
    name: &str,
    suite: &Suite,
    model: &Model,
    adapters: &[(&LoraAdapter<'_>, f32)],
    format: &crate::llama::PromptFormat,
    threads: i32,
) -> Result<TaskOutcome, EvalError> {
    match name {
        "mcq" => {
            let task = suite.mcq.as_ref().expect("listed");
            let base = if task.one_based { IndexBase::One } else { IndexBase::Zero };
            let mut set = read_questions(&task.questions, base)?;
            if let Some(limit) = task.limit {
                set.questions.truncate(limit);
            }
            let settings = McqSettings {
                method: task.method,
                parallel: task.parallel,
                threads,
                prompt_format: Some(format.clone()),
                ..McqSettings::default()
            };
            let answers = answer_questions(model, adapters, &set.questions, &settings, &mut |_| {})?;
            let scores = score_mcq(task.method.name(), &answers, set.skipped.len());
            Ok(TaskOutcome {
                estimate: scores.accuracy,
                skipped_inputs: set.skipped.len(),
                details: serde_json::to_value(&scores).unwrap_or(Value::Null),
            })
        }
        "summary" => {
            let task = suite.summary.as_ref().expect("listed");
            let (mut docs, bad_docs) = read_documents(&task.docs)?;
            let (refs, bad_refs) = read_summaries(&task.refs)?;
            docs.retain(|d| refs.contains_key(&d.id));
            if let Some(limit) = task.limit {
                docs.truncate(limit);
            }
            let settings = SummarySettings {
                max_tokens: task.max_tokens,
                ctx: 2048,
                threads,
                prompt_format: Some(format.clone()),
            };
            let predictions = generate_summaries(model, adapters, &docs, &settings, &mut |_| {})?;
            let wanted: HashSet<&str> = docs.iter().map(|d| d.id.as_str()).collect();
            let refs = refs.into_iter().filter(|(id, _)| wanted.contains(id.as_str())).collect();
            let scores = score_summaries(&refs, &predictions);
            Ok(TaskOutcome {
                estimate: mean_interval(&scores.rouge.rouge_l_stemmed_each),
                skipped_inputs: bad_docs.len() + bad_refs.len(),
                details: serde_json::to_value(&scores).unwrap_or(Value::Null),
            })
        }
        "perplexity" => {
            let task = suite.perplexity.as_ref().expect("listed");
            let text = read_perplexity_text(&task.text)?;
            let settings = PerplexitySettings { ctx: task.ctx, max_chunks: task.chunks, threads };
            let r = perplexity(model, adapters, &text, &settings)?;
            let half = 1.959_964 * r.perplexity_stderr;
            Ok(TaskOutcome {
                estimate: Estimate {
                    value: r.perplexity,
                    low: r.perplexity - half,
                    high: r.perplexity + half,
                },
                skipped_inputs: 0,
                details: serde_json::to_value(&r).unwrap_or(Value::Null),
            })
        }
        "extract" => {
            let task = suite.extract.as_ref().expect("listed");
            let source = load_schema(&task.schema).map_err(engine)?;
            let schema = ExtractionSchema::compile(&source.name, &source.schema, SchemaLimits::default())
                .map_err(engine)?;
            let options = ExtractOptions {
                parallel: task.parallel.max(1),
                examples: if task.examples { source.examples } else { Vec::new() },
                threads,
                prompt_format: Some(format.clone()),
                ..ExtractOptions::default()
            };
            let mut extractor =
                Extractor::new(model, adapters, OutputConstraint::Schema(schema), options).map_err(engine)?;
            let (gold, bad_gold) = read_gold_records(&task.gold)?;
            let gold_ids: HashSet<String> = gold.iter().map(|g| g.id.clone()).collect();
            let docs = [task.docs.clone()];
            let input_options = InputOptions::default();
            let mut unreadable = 0usize;
            // Only documents with gold are run (a synth corpus mixes kinds).
            let inputs = read_inputs(&docs, &input_options)
                .filter(|item| match item {
                    InputItem::Failed { .. } => {
                        unreadable += 1;
                        false
                    }
                    InputItem::Document(d) => gold_ids.contains(&d.id),
                })
                .take(task.limit.unwrap_or(usize::MAX));
            let mut records = Vec::new();
            extractor
                .run(inputs, &mut |r| {
                    records.push(r);
                    Ok::<_, std::convert::Infallible>(())
                })
                .map_err(engine)?;
            let ids: HashSet<&str> = records.iter().map(|r| r.id.as_str()).collect();
            let gold: Vec<GoldRecord> = gold.into_iter().filter(|g| ids.contains(g.id.as_str())).collect();
            let scores = score_extraction(&gold, &records);
            Ok(TaskOutcome {
                estimate: Estimate {
                    value: scores.overall.f1,
                    low: scores.overall.f1,
                    high: scores.overall.f1,
                },
                skipped_inputs: unreadable + bad_gold,
                details: serde_json::to_value(&scores).unwrap_or(Value::Null),
            })
        }
        "deid" => {
            let task = suite.deid.as_ref().expect("listed");
            let text = std::fs::read_to_string(&task.gold)
                .map_err(|source| EvalError::Io { path: task.gold.clone(), source })?;
            let mut bad = 0usize;
            let documents: Vec<GoldPhiDocument> = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .filter_map(|l| serde_json::from_str(l).map_err(|_| bad += 1).ok())
                .take(task.limit.unwrap_or(usize::MAX))
                .collect();
            let scores = score_deid(&PhiDetector::new(), documents, |_, _| {});
            Ok(TaskOutcome {
                estimate: wilson_interval(scores.overall.found, scores.overall.gold),
                skipped_inputs: bad + scores.invalid_gold_spans,
                details: json!({"documents": scores.documents, "overall": scores.overall}),
            })
        }
        other => Err(EvalError::Settings(format!("unknown task {other}"))),
    }
}

fn read_gold_records(path: &Path) -> Result<(Vec<GoldRecord>, usize), EvalError> {
    let text = std::fs::read_to_string(path).map_err(|source| EvalError::Io { path: path.into(), source })?;
    let mut bad = 0usize;
    let gold = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str(l).map_err(|_| bad += 1).ok())
        .collect();
    Ok((gold, bad))
}

fn fmt_estimate(e: &Estimate) -> String {
    if (e.high - e.low).abs() < 1e-12 {
        format!("{:.4}", e.value)
    } else {
        format!("{:.4} [{:.4}, {:.4}]", e.value, e.low, e.high)
    }
}

fn model_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string())
}

/// The Markdown report.
pub fn render_markdown(report: &Report) -> String {
    let mut md = String::from("# Evaluation report\n\n");
    md.push_str(&format!("- base: `{}`\n", model_name(&report.base)));
    match &report.tuned {
        Some(Tuned::Lora { adapter, scale }) => {
            md.push_str(&format!("- tuned: base + LoRA `{}` (scale {scale})\n", model_name(adapter)))
        }
        Some(Tuned::Model { path }) => md.push_str(&format!("- tuned: `{}`\n", model_name(path))),
        None => md.push_str("- tuned: none\n"),
    }
    md.push_str("\nFigures with their 95% intervals (Wilson for proportions, ±1.96 standard errors for means and perplexity; extraction F1 has none).\n\n");
    md.push_str("| task | metric | base | tuned | change |\n|---|---|---|---|---|\n");
    for t in &report.tasks {
        let tuned = t.tuned.as_ref().map_or("–".to_string(), |o| fmt_estimate(&o.estimate));
        let change = t.tuned.as_ref().map_or("–".to_string(), |o| {
            let d = o.estimate.value - t.base.estimate.value;
            let better = if t.higher_is_better { d > 0.0 } else { d < 0.0 };
            format!(
                "{d:+.4}{}",
                if d == 0.0 {
                    ""
                } else if better {
                    " (better)"
                } else {
                    " (worse)"
                }
            )
        });
        md.push_str(&format!(
            "| {} | {} | {} | {tuned} | {change} |\n",
            t.task,
            t.metric,
            fmt_estimate(&t.base.estimate)
        ));
    }
    md.push('\n');
    for t in &report.tasks {
        md.push_str(&format!("## {}\n\n![{} {}](chart-{}.png)\n\n", t.task, t.task, t.metric, t.task));
        if let Some(note) = &t.note {
            md.push_str(&format!("Note: {note}.\n\n"));
        }
        let skipped = t.base.skipped_inputs;
        if skipped > 0 {
            md.push_str(&format!("{skipped} malformed input(s) were left out.\n\n"));
        }
    }
    md
}

/// Writes `report.md`, `report.json` and `chart-<task>.png` into `dir`; returns the files.
pub fn write_report(report: &Report, dir: &Path) -> Result<Vec<PathBuf>, EvalError> {
    std::fs::create_dir_all(dir).map_err(|source| EvalError::Io { path: dir.into(), source })?;
    let mut written = Vec::new();
    for t in &report.tasks {
        let mut bars = vec![Bar { label: "base".into(), estimate: t.base.estimate }];
        if let Some(o) = &t.tuned {
            bars.push(Bar { label: "tuned".into(), estimate: o.estimate });
        }
        let path = dir.join(format!("chart-{}.png", t.task));
        let title = format!("{}: {}", t.task, t.metric);
        bar_chart(&path, &title, &t.metric, &bars)?;
        written.push(path);
    }
    let write = |name: &str, bytes: &[u8]| -> Result<PathBuf, EvalError> {
        let path = dir.join(name);
        crate::atomic_file::write_atomically(&path, |f| std::io::Write::write_all(f, bytes))
            .map_err(|source| EvalError::Io { path: path.clone(), source })?;
        Ok(path)
    };
    let json = serde_json::to_vec_pretty(report).map_err(engine)?;
    written.push(write("report.json", &json)?);
    written.push(write("report.md", render_markdown(report).as_bytes())?);
    Ok(written)
}
