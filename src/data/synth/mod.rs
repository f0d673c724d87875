//! Synthetic clinical documents with gold labels: discharge summaries, radiology reports,
//! clinic notes, lab reports and ED notes in narrative, sectioned and terse styles, each
//! with its gold extractions for the schemas in `grammars/` and its gold PHI spans. Every
//! name, number and place is invented; the same seed gives the same corpus.

mod kinds;
mod patient;
mod writer;

use std::io::Write;
use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::atomic_file::AtomicWriter;
use crate::data::phi::{CharSpan, to_char_spans};
use crate::data::rng::SeededRng;
pub use writer::Style;
use writer::{DocWriter, add_days};

/// The file in a synth folder that says what made it.
pub const MANIFEST_FILE: &str = "synth.json";
/// Documents with their gold labels, one JSON object per line.
pub const DOCUMENTS_FILE: &str = "documents.jsonl";

/// One synthetic document and its gold labels.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct SynthDocument {
    /// Document id.
    pub id: String,
    /// The invented patient it belongs to.
    pub patient: String,
    /// `discharge_summary`, `radiology_report`, `clinic_note`, `lab_report` or `ed_note`.
    pub kind: String,
    /// How it is written.
    pub style: String,
    /// The text.
    pub text: String,
    /// Gold PHI spans (char offsets).
    pub phi: Vec<CharSpan>,
    /// Gold extraction per schema name.
    pub gold: Map<String, Value>,
    /// Set when this document is a near-copy of another (real corpora have them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<String>,
}

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct SynthOptions {
    /// Number of documents.
    pub count: usize,
    /// Seed: the same seed gives the same corpus.
    pub seed: u64,
    /// Share of documents that are near-copies of an earlier one.
    pub duplicate_rate: f64,
}

/// The corpus, one document at a time (deterministic for the seed).
pub fn generate(options: SynthOptions) -> impl Iterator<Item = SynthDocument> {
    let mut rng = SeededRng::new(options.seed);
    let mut produced = 0usize;
    let mut patient_index = 0usize;
    let mut pending: Vec<SynthDocument> = Vec::new();
    let mut last: Option<SynthDocument> = None;
    std::iter::from_fn(move || {
        if produced >= options.count {
            return None;
        }
        if pending.is_empty() {
            // A patient has one to three documents, written at increasing dates.
            patient_index += 1;
            let mut patient_rng = SeededRng::new(rng.next_u64());
            let p = patient::new_patient(patient_index, &mut patient_rng);
            let n_docs = 1 + patient_rng.below(3);
            let mut visit = p.first_visit;
            for k in 0..n_docs {
                let id = format!("{}-{}", p.id, k + 1);
                pending.push(write_document(&id, &p, visit, &mut patient_rng));
                visit = add_days(visit, patient_rng.range(7, 200));
            }
            pending.reverse();
        }
        let mut document = pending.pop()?;
        // A copy is made of an original, never of another copy.
        if let Some(previous) = last.as_ref().filter(|d| d.duplicate_of.is_none())
            && rng.chance(options.duplicate_rate)
        {
            document = near_copy(previous, produced);
        }
        produced += 1;
        last = Some(document.clone());
        Some(document)
    })
}

fn write_document(
    id: &str,
    p: &patient::Patient,
    visit: (i64, u32, u32),
    rng: &mut SeededRng,
) -> SynthDocument {
    let style = match rng.below(3) {
        0 => Style::Narrative,
        1 => Style::Sectioned,
        _ => Style::Terse,
    };
    let mut w = DocWriter::new(style, SeededRng::new(rng.next_u64()));
    let roll = if p.lab_follow_up { 6 } else { rng.below(10) };
    let (kind, gold) = match roll {
        0 | 1 => ("discharge_summary", kinds::discharge_summary(&mut w, p, visit)),
        2 | 3 => ("radiology_report", kinds::radiology_report(&mut w, p, visit)),
        4 | 5 => ("clinic_note", kinds::visit_note(&mut w, p, visit, false)),
        6 | 7 => ("lab_report", kinds::lab_report(&mut w, p, visit)),
        _ => ("ed_note", kinds::visit_note(&mut w, p, visit, true)),
    };
    let phi = to_char_spans(&w.text, &w.phi);
    SynthDocument {
        id: id.to_string(),
        patient: p.id.clone(),
        kind: kind.to_string(),
        style: serde_json::to_value(style)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        text: w.text,
        phi,
        gold: gold.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        duplicate_of: None,
    }
}

/// The same note filed again with an addendum: a near-duplicate.
fn near_copy(original: &SynthDocument, index: usize) -> SynthDocument {
    let mut copy = original.clone();
    copy.id = format!("{}-copy{index}", original.id);
    copy.text.push_str("\nAddendum: reviewed, no change.");
    copy.duplicate_of = Some(original.id.clone());
    copy
}

/// How many documents were written.
#[derive(Debug, Clone, Serialize)]
pub struct SynthManifest {
    /// Always "medllm synth".
    pub generator: String,
    /// The seed.
    pub seed: u64,
    /// Documents written.
    pub documents: usize,
    /// Documents per kind.
    pub kinds: std::collections::BTreeMap<String, usize>,
    /// Gold PHI spans per category.
    pub phi: std::collections::BTreeMap<String, usize>,
}

/// Writes a corpus into `dir`: `documents.jsonl` (text, gold PHI, gold extractions), one
/// `gold/<schema>.jsonl` per schema for `medllm eval extract`, and `synth.json`. `dir` must
/// be new or hold no files: gold files of an earlier corpus left beside new documents
/// would have their ids point at other texts, and evaluation would score against them.
pub fn write_corpus(
    dir: &Path,
    options: SynthOptions,
    mut progress: impl FnMut(usize),
) -> std::io::Result<SynthManifest> {
    if holds_files(dir)? {
        return Err(std::io::Error::new(
            std::io::ErrorKind::DirectoryNotEmpty,
            "the folder is not empty; synth writes a whole corpus into a new or empty folder \
             (old gold files would mix with the new documents): remove it or choose another",
        ));
    }
    std::fs::create_dir_all(dir.join("gold"))?;
    let mut documents = AtomicWriter::create(&dir.join(DOCUMENTS_FILE))?;
    let mut gold_files: std::collections::BTreeMap<String, AtomicWriter> = Default::default();
    let mut manifest = SynthManifest {
        generator: "medllm synth".into(),
        seed: options.seed,
        documents: 0,
        kinds: Default::default(),
        phi: Default::default(),
    };
    for document in generate(options) {
        serde_json::to_writer(&mut documents, &document)?;
        documents.write_all(b"\n")?;
        for (schema, data) in &document.gold {
            let file = match gold_files.entry(schema.clone()) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(AtomicWriter::create(&dir.join("gold").join(format!("{schema}.jsonl")))?)
                }
            };
            serde_json::to_writer(&mut *file, &serde_json::json!({"id": document.id, "data": data}))?;
            file.write_all(b"\n")?;
        }
        manifest.documents += 1;
        *manifest.kinds.entry(document.kind.clone()).or_default() += 1;
        for span in &document.phi {
            *manifest.phi.entry(span.category.to_string()).or_default() += 1;
        }
        progress(manifest.documents);
    }
    documents.commit()?;
    for (_, file) in gold_files {
        file.commit()?;
    }
    let mut manifest_file = AtomicWriter::create(&dir.join(MANIFEST_FILE))?;
    serde_json::to_writer_pretty(&mut manifest_file, &manifest)?;
    manifest_file.write_all(b"\n")?;
    manifest_file.commit()?;
    Ok(manifest)
}

/// Whether `dir` holds a file anywhere below it (empty subfolders, as an interrupted run
/// leaves, do not count). A path that does not exist holds none.
fn holds_files(dir: &Path) -> std::io::Result<bool> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if !entry.file_type()?.is_dir() || holds_files(&entry.path())? {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests;
