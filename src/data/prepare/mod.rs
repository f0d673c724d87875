//! `prepare`: documents in (text folders, JSONL, CSV, a `medllm synth` folder), chat-format
//! training sets out. Each record is sanitised, checked for duplicates, de-identified (on
//! by default), normalised, classified, split into sections and turned into tasks; records
//! are split 80/10/10 by patient, so no patient is in two splits.

mod card;
mod clean;
mod structure;
mod tasks;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

pub use card::{DataCard, LengthStats};
pub use clean::{Duplicate, DuplicateFinder, sanitize};
pub use structure::{
    LabLine, RecordKind, Section, classify, lab_lines, normalize_terms, section_text, sections,
};
pub use tasks::{Message, TaskExample, TaskKind};

use crate::atomic_file::AtomicWriter;
use crate::data::deid::{DeidOptions, Deidentifier, Replacements};
use crate::data::rng::stable_hash;
use crate::data::synth::{DOCUMENTS_FILE, MANIFEST_FILE};
use crate::data::{InputItem, InputOptions, read_inputs};

/// Settings of a preparation run.
#[derive(Debug, Clone)]
pub struct PrepareOptions {
    /// Folder for train/val/test/rejected and the data card.
    pub output: PathBuf,
    /// Seed of the split.
    pub seed: u64,
    /// De-identification; `None` only when the user explicitly turned it off.
    pub deid: Option<DeidOptions>,
    /// Replace lay terms with canonical ones (text and gold).
    pub normalize_terms: bool,
    /// Estimated Jaccard similarity above which a record is a near-duplicate.
    pub near_duplicate_threshold: f64,
    /// Records shorter than this (characters, after sanitising) are rejected.
    pub min_chars: usize,
    /// Field or column naming the patient (else each record is its own patient).
    pub patient_field: String,
    /// Field holding gold extractions: an object from schema name to data.
    pub gold_field: String,
    /// How to read inputs.
    pub input: InputOptions,
    /// Percentages of patients in train and val (the rest is test).
    pub split: (u64, u64),
}

impl PrepareOptions {
    /// Defaults for writing into `output`.
    pub fn new(output: PathBuf) -> PrepareOptions {
        PrepareOptions {
            output,
            seed: 0,
            deid: Some(DeidOptions::default()),
            normalize_terms: true,
            near_duplicate_threshold: 0.9,
            min_chars: 40,
            patient_field: "patient".into(),
            gold_field: "gold".into(),
            input: InputOptions::default(),
            split: (80, 10),
        }
    }
}

/// Counts tokens of a conversation as the model will see it (the caller owns the model).
pub trait TokenCounter {
    /// Tokens of the rendered conversation.
    fn count_tokens(&self, messages: &[Message]) -> usize;
}

/// Why preparation could not run at all (bad records are not errors: they are rejected).
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// An output file could not be written.
    #[error("cannot write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A gold schema could not be loaded.
    #[error("{0}")]
    Schema(String),
}

/// The split files.
pub const SPLITS: [&str; 3] = ["train", "val", "test"];

/// One line of train/val/test.jsonl.
#[derive(Debug, Serialize)]
struct ExampleLine<'a> {
    id: String,
    source_id: &'a str,
    patient: String,
    task: &'static str,
    kind: &'static str,
    messages: &'a [Message],
}

/// One line of rejected.jsonl: ids and reasons only, never text.
#[derive(Debug, Serialize)]
struct RejectedLine<'a> {
    id: &'a str,
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
}

struct Outputs {
    splits: Vec<AtomicWriter>,
    rejected: AtomicWriter,
}

fn write_error(path: &Path) -> impl Fn(std::io::Error) -> PrepareError + '_ {
    move |source| PrepareError::Write { path: path.to_path_buf(), source }
}

/// Inputs as `read_inputs` takes them: a synth folder stands for its documents file.
fn expand_inputs(inputs: &[PathBuf]) -> Vec<PathBuf> {
    inputs
        .iter()
        .map(|p| if p.join(MANIFEST_FILE).is_file() { p.join(DOCUMENTS_FILE) } else { p.clone() })
        .collect()
}

/// The system prompt of extraction for a schema, as `medllm extract` writes it, so that a
/// model tuned on these examples sees at run time what it saw in training.
fn extraction_system(schema: &str, cache: &mut HashMap<String, Option<String>>) -> Option<String> {
    cache
        .entry(schema.to_string())
        .or_insert_with(|| {
            let source = crate::extract::load_schema(schema).ok()?;
            let compiled =
                crate::extract::ExtractionSchema::compile(&source.name, &source.schema, Default::default())
                    .ok()?;
            Some(format!("{}\nSchema: {}", crate::extract::DEFAULT_INSTRUCTION, compiled.prompt_text))
        })
        .clone()
}

/// PHI replaced in a text: byte ranges of the original and what replaced them.
struct Replaced {
    spans: Vec<(usize, usize, String)>,
}

impl Replaced {
    /// `value` as it reads after de-identification, when it is a passage of `original`:
    /// the replacements that fall inside it are applied, and a span that crosses its edge
    /// replaces the whole value. `None` when the value is not in the text.
    fn apply_to_passage(&self, original: &str, value: &str) -> Option<String> {
        if value.is_empty() {
            return Some(String::new());
        }
        let start = original.find(value)?;
        let end = start + value.len();
        let mut out = String::with_capacity(value.len());
        let mut at = start;
        for (s, e, replacement) in self.spans.iter().filter(|(s, e, _)| *s < end && *e > start) {
            if *s < start || *e > end {
                return Some(replacement.clone());
            }
            out.push_str(&original[at..*s]);
            out.push_str(replacement);
            at = *e;
        }
        out.push_str(&original[at..end]);
        Some(out)
    }
}

/// Whether a gold key holds a person's age ("patient_age", "age", "age_years").
fn is_age_key(key: &str) -> bool {
    key == "age" || key.ends_with("_age") || key.starts_with("age_")
}

/// De-identifies every string of a gold value the way the text was: a value that is a
/// passage of the text gets the text's own replacements there; any other value goes
/// through the detector with the same session (so surrogates agree). Ages over 89 become
/// 90, as Safe Harbor aggregates them.
fn deidentify_gold(value: &mut Value, original: &str, replaced: &Replaced, session: &mut Replacements<'_>) {
    match value {
        Value::String(s) => {
            *s = match replaced.apply_to_passage(original, s) {
                Some(passage) => passage,
                None => session.apply(s).text,
            };
        }
        Value::Array(items) => items.iter_mut().for_each(|v| deidentify_gold(v, original, replaced, session)),
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if is_age_key(key) && v.as_f64().is_some_and(|age| age > 89.0) {
                    *v = Value::from(90);
                } else {
                    deidentify_gold(v, original, replaced, session);
                }
            }
        }
        _ => {}
    }
}

/// A stable stand-in for an identifier (patient or record id) in training files: the
/// same within a run's secret, unlinkable to the original without it.
fn pseudonym(secret: u64, prefix: &str, value: &str) -> String {
    format!("{prefix}{:016x}", stable_hash(format!("{secret}:{value}").as_bytes()))
}

fn normalize_gold(value: &mut Value) {
    match value {
        Value::String(s) => *s = normalize_terms(s),
        Value::Array(items) => items.iter_mut().for_each(normalize_gold),
        Value::Object(map) => map.values_mut().for_each(normalize_gold),
        _ => {}
    }
}

/// Prepares training sets from `inputs` into `options.output`. `progress` hears the number
/// of records read so far.
pub fn prepare(
    inputs: &[PathBuf],
    options: &PrepareOptions,
    tokens: Option<&dyn TokenCounter>,
    mut progress: impl FnMut(usize),
) -> Result<DataCard, PrepareError> {
    let dir = &options.output;
    std::fs::create_dir_all(dir).map_err(write_error(dir))?;
    let open = |name: &str| {
        let path = dir.join(name);
        AtomicWriter::create(&path).map_err(write_error(&path))
    };
    let mut outputs = Outputs {
        splits: SPLITS.iter().map(|s| open(&format!("{s}.jsonl"))).collect::<Result<_, _>>()?,
        rejected: open("rejected.jsonl")?,
    };
    let deidentifier = options.deid.map(Deidentifier::new);
    let mut duplicates = DuplicateFinder::new(options.near_duplicate_threshold);
    let mut card = DataCard::new(options, inputs);
    let mut schema_prompts: HashMap<String, Option<String>> = HashMap::new();
    let mut last_lab_by_patient: HashMap<String, String> = HashMap::new();
    let mut lengths: BTreeMap<&'static str, Vec<u32>> = BTreeMap::new();

    // Malformed or unusable records count as rejected (exit 1); duplicates are dropped
    // and listed, but are no fault of the input.
    let reject = |outputs: &mut Outputs,
                  card: &mut DataCard,
                  id: &str,
                  reason: &str,
                  detail: Option<&str>,
                  error: bool| {
        *card.dropped.entry(reason.to_string()).or_default() += 1;
        if error {
            card.rejected += 1;
        }
        let line = RejectedLine { id, reason, detail };
        serde_json::to_writer(&mut outputs.rejected, &line)
            .map_err(std::io::Error::from)
            .and_then(|_| outputs.rejected.write_all(b"\n"))
            .map_err(|source| PrepareError::Write { path: dir.join("rejected.jsonl"), source })
    };

    for item in read_inputs(&expand_inputs(inputs), &options.input) {
        card.records_read += 1;
        progress(card.records_read);
        let document = match item {
            InputItem::Document(document) => document,
            InputItem::Failed { id, error } => {
                reject(&mut outputs, &mut card, &id, "unreadable", Some(&error), true)?;
                continue;
            }
        };
        let patient = match document.fields.get(&options.patient_field) {
            Some(Value::String(p)) if !p.trim().is_empty() => p.trim().to_string(),
            Some(Value::Number(n)) => n.to_string(),
            _ => document.id.clone(),
        };
        let clean = sanitize(&document.text);
        if clean.chars().count() < options.min_chars {
            reject(&mut outputs, &mut card, &document.id, "too_short", None, true)?;
            continue;
        }
        match duplicates.check(&document.id, &clean) {
            Duplicate::New => {}
            Duplicate::Exact(of) => {
                reject(&mut outputs, &mut card, &document.id, "exact_duplicate", Some(&of), false)?;
                continue;
            }
            Duplicate::Near(of) => {
                reject(&mut outputs, &mut card, &document.id, "near_duplicate", Some(&of), false)?;
                continue;
            }
        }

        let mut gold: Vec<(String, Value)> = match document.fields.get(&options.gold_field) {
            Some(Value::Object(map)) => map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            _ => Vec::new(),
        };
        let mut text = clean;
        if let Some(deidentifier) = &deidentifier {
            let mut session = deidentifier.session(&patient);
            let result = session.apply(&text);
            let chars: Vec<usize> =
                text.char_indices().map(|(b, _)| b).chain(std::iter::once(text.len())).collect();
            let mut replaced = Replaced { spans: Vec::with_capacity(result.spans.len()) };
            for span in &result.spans {
                *card.phi_replaced.entry(span.category).or_default() += 1;
                let start = chars.get(span.start).copied().unwrap_or(text.len());
                let end = chars.get(span.end).copied().unwrap_or(text.len());
                replaced.spans.push((start, end, span.replacement.clone().unwrap_or_default()));
            }
            for (_, data) in &mut gold {
                deidentify_gold(data, &text, &replaced, &mut session);
            }
            text = result.text;
        }
        if options.normalize_terms {
            text = normalize_terms(&text);
            for (_, data) in &mut gold {
                normalize_gold(data);
            }
        }

        let found_sections = sections(&text);
        let kind = classify(&text, &found_sections);
        *card.kinds.entry(kind.as_str().to_string()).or_default() += 1;
        let mut gold_tasks = Vec::new();
        for (schema, data) in gold {
            match extraction_system(&schema, &mut schema_prompts) {
                Some(system) => gold_tasks.push((schema, system, data)),
                None => {
                    *card
                        .warnings
                        .entry(format!("gold for unknown schema \"{schema}\" skipped"))
                        .or_default() += 1
                }
            }
        }
        let mut examples = tasks::make_tasks(&tasks::TaskInput {
            text: &text,
            sections: &found_sections,
            kind,
            gold: &gold_tasks,
        });
        if kind == RecordKind::TabularLab {
            if let Some(previous) = last_lab_by_patient.get(&patient) {
                examples.extend(tasks::comparison_task(previous, &text));
            }
            last_lab_by_patient.insert(patient.clone(), text.clone());
        }
        if examples.is_empty() {
            reject(&mut outputs, &mut card, &document.id, "no_task", None, true)?;
            continue;
        }

        let bucket = stable_hash(format!("{}:{patient}", options.seed).as_bytes()) % 100;
        let split = if bucket < options.split.0 {
            0
        } else if bucket < options.split.0 + options.split.1 {
            1
        } else {
            2
        };
        card.records_kept += 1;
        card.note_patient(SPLITS[split], &patient);
        // With de-identification on, ids and patient keys (often MRNs or file names)
        // become pseudonyms in the training files; rejected.jsonl keeps the real ids for
        // the data owner.
        let (source_id, patient_id) = match options.deid {
            Some(deid) => (
                pseudonym(deid.date_shift_seed, "r", &document.id),
                pseudonym(deid.date_shift_seed, "p", &patient),
            ),
            None => (document.id.clone(), patient.clone()),
        };
        for example in &examples {
            let line = ExampleLine {
                id: format!("{source_id}:{}", example.name),
                source_id: &source_id,
                patient: patient_id.clone(),
                task: example.task.as_str(),
                kind: kind.as_str(),
                messages: &example.messages,
            };
            let path = dir.join(format!("{}.jsonl", SPLITS[split]));
            let writer = &mut outputs.splits[split];
            serde_json::to_writer(&mut *writer, &line)
                .map_err(|e| PrepareError::Write { path: path.clone(), source: e.into() })?;
            writer.write_all(b"\n").map_err(write_error(&path))?;
            *card
                .examples
                .entry(SPLITS[split].to_string())
                .or_default()
                .entry(example.task.as_str().to_string())
                .or_default() += 1;
            if let Some(counter) = tokens {
                lengths
                    .entry(example.task.as_str())
                    .or_default()
                    .push(counter.count_tokens(&example.messages) as u32);
            }
        }
    }

    card.finish_patients();
    card.token_lengths =
        lengths.into_iter().map(|(task, values)| (task.to_string(), LengthStats::of(values))).collect();
    for (split, writer) in SPLITS.iter().zip(outputs.splits) {
        writer.commit().map_err(write_error(&dir.join(format!("{split}.jsonl"))))?;
    }
    outputs.rejected.commit().map_err(write_error(&dir.join("rejected.jsonl")))?;
    card.write(dir).map_err(write_error(dir))?;
    Ok(card)
}

#[cfg(test)]
mod tests;
