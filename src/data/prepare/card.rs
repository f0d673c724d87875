//! The data card: what went in, what came out, what was dropped and why, PHI replaced per
//! category, token lengths. Written as `data_card.json` and `data_card.md`.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{PrepareOptions, SPLITS};
use crate::atomic_file::write_atomically;
use crate::data::phi::PhiCategory;

/// Token lengths of examples of one task.
#[derive(Debug, Clone, Serialize)]
pub struct LengthStats {
    /// Examples counted.
    pub count: usize,
    /// Shortest.
    pub min: u32,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: u32,
    /// 95th percentile.
    pub p95: u32,
    /// Longest.
    pub max: u32,
}

impl LengthStats {
    /// Statistics of `values` (empty gives zeros).
    pub fn of(mut values: Vec<u32>) -> LengthStats {
        values.sort_unstable();
        let n = values.len();
        let at = |q: f64| if n == 0 { 0 } else { values[((n - 1) as f64 * q).round() as usize] };
        LengthStats {
            count: n,
            min: values.first().copied().unwrap_or(0),
            mean: if n == 0 { 0.0 } else { values.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64 },
            p50: at(0.5),
            p95: at(0.95),
            max: values.last().copied().unwrap_or(0),
        }
    }
}

/// What a preparation run did.
#[derive(Debug, Clone, Serialize)]
pub struct DataCard {
    /// The inputs as given.
    pub inputs: Vec<PathBuf>,
    /// Split seed.
    pub seed: u64,
    /// `redact`, `mask`, `surrogate`, or `off` (explicitly turned off).
    pub deidentification: String,
    /// Whether terminology was normalised.
    pub normalized_terms: bool,
    /// Records read, including unreadable ones.
    pub records_read: usize,
    /// Records that made examples.
    pub records_kept: usize,
    /// Records rejected for a fault (unreadable, too short, no task): exit 1.
    pub rejected: usize,
    /// Everything not kept, by reason (duplicates included).
    pub dropped: BTreeMap<String, usize>,
    /// Kept records by kind.
    pub kinds: BTreeMap<String, usize>,
    /// Examples per split and task.
    pub examples: BTreeMap<String, BTreeMap<String, usize>>,
    /// Patients per split.
    pub patients: BTreeMap<String, usize>,
    /// PHI spans replaced, per category.
    pub phi_replaced: BTreeMap<PhiCategory, usize>,
    /// Token lengths per task (with a model's tokenizer).
    pub token_lengths: BTreeMap<String, LengthStats>,
    /// Things worth knowing that are not faults, with counts.
    pub warnings: BTreeMap<String, usize>,
    #[serde(skip)]
    patient_splits: HashMap<String, &'static str>,
}

impl DataCard {
    pub(super) fn new(options: &PrepareOptions, inputs: &[PathBuf]) -> DataCard {
        DataCard {
            inputs: inputs.to_vec(),
            seed: options.seed,
            deidentification: options.deid.map_or("off".into(), |d| {
                serde_json::to_value(d.mode)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            }),
            normalized_terms: options.normalize_terms,
            records_read: 0,
            records_kept: 0,
            rejected: 0,
            dropped: BTreeMap::new(),
            kinds: BTreeMap::new(),
            examples: BTreeMap::new(),
            patients: BTreeMap::new(),
            phi_replaced: BTreeMap::new(),
            token_lengths: BTreeMap::new(),
            warnings: BTreeMap::new(),
            patient_splits: HashMap::new(),
        }
    }

    pub(super) fn note_patient(&mut self, split: &'static str, patient: &str) {
        self.patient_splits.entry(patient.to_string()).or_insert(split);
    }

    pub(super) fn finish_patients(&mut self) {
        for split in self.patient_splits.values() {
            *self.patients.entry(split.to_string()).or_default() += 1;
        }
    }

    /// Writes `data_card.json` and `data_card.md` into `dir`.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        write_atomically(&dir.join("data_card.json"), |w| {
            serde_json::to_writer_pretty(&mut *w, self)?;
            w.write_all(b"\n")
        })?;
        let markdown = self.markdown();
        write_atomically(&dir.join("data_card.md"), |w| w.write_all(markdown.as_bytes()))
    }

    /// The card for people.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# Data card\n");
        let inputs: Vec<String> = self.inputs.iter().map(|p| format!("`{}`", p.display())).collect();
        let _ = writeln!(md, "- Inputs: {}", inputs.join(", "));
        let _ = writeln!(
            md,
            "- Records read: {}, kept: {}, rejected: {}",
            self.records_read, self.records_kept, self.rejected
        );
        let _ = writeln!(md, "- De-identification: {}", self.deidentification);
        let _ =
            writeln!(md, "- Terminology normalised: {}", if self.normalized_terms { "yes" } else { "no" });
        let _ = writeln!(md, "- Split seed: {} (by patient)\n", self.seed);

        let _ = writeln!(md, "## Examples\n\n| task | train | val | test |\n|---|---:|---:|---:|");
        let mut tasks: Vec<&String> = self.examples.values().flat_map(|m| m.keys()).collect();
        tasks.sort();
        tasks.dedup();
        for task in tasks {
            let counts: Vec<String> = SPLITS
                .iter()
                .map(|s| self.examples.get(*s).and_then(|m| m.get(task)).copied().unwrap_or(0).to_string())
                .collect();
            let _ = writeln!(md, "| {task} | {} |", counts.join(" | "));
        }
        let patients: Vec<String> =
            SPLITS.iter().map(|s| format!("{s} {}", self.patients.get(*s).copied().unwrap_or(0))).collect();
        let _ = writeln!(md, "\nPatients: {}\n", patients.join(", "));

        let _ = writeln!(md, "## Records by kind\n");
        for (kind, n) in &self.kinds {
            let _ = writeln!(md, "- {kind}: {n}");
        }
        let _ = writeln!(md, "\n## PHI replaced\n");
        if self.phi_replaced.is_empty() {
            let _ = writeln!(md, "None found.");
        }
        for (category, n) in &self.phi_replaced {
            let _ = writeln!(md, "- {category}: {n}");
        }
        let _ = writeln!(md, "\n## Dropped\n");
        if self.dropped.is_empty() {
            let _ = writeln!(md, "Nothing.");
        }
        for (reason, n) in &self.dropped {
            let _ = writeln!(md, "- {reason}: {n} (ids in rejected.jsonl)");
        }
        if !self.token_lengths.is_empty() {
            let _ = writeln!(
                md,
                "\n## Token lengths\n\n| task | n | min | mean | p50 | p95 | max |\n|---|---:|---:|---:|---:|---:|---:|"
            );
            for (task, s) in &self.token_lengths {
                let _ = writeln!(
                    md,
                    "| {task} | {} | {} | {:.0} | {} | {} | {} |",
                    s.count, s.min, s.mean, s.p50, s.p95, s.max
                );
            }
        }
        if !self.warnings.is_empty() {
            let _ = writeln!(md, "\n## Notes\n");
            for (warning, n) in &self.warnings {
                let _ = writeln!(md, "- {warning}: {n}");
            }
        }
        md
    }
}
