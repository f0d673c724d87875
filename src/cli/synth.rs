//! `medllm synth`: a synthetic corpus with gold labels.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Args;

use super::{GlobalOptions, Outcome};
use crate::data::synth::{SynthOptions, write_corpus};

#[derive(Debug, Args)]
pub(crate) struct SynthArgs {
    /// Folder to write: documents.jsonl (text, gold PHI spans, gold extractions),
    /// gold/<schema>.jsonl (for `medllm eval extract`) and synth.json.
    #[arg(short, long, value_name = "DIR")]
    out: PathBuf,
    /// Number of documents.
    #[arg(short = 'n', long = "n", value_name = "N", default_value_t = 100, value_parser = super::options::count)]
    count: usize,
    /// Seed: the same seed gives the same corpus.
    #[arg(long, value_name = "N", default_value_t = 0)]
    seed: u64,
    /// Share of documents that are near-copies of the one before (0-1), as real
    /// exports have.
    #[arg(long, value_name = "X", default_value_t = 0.02, value_parser = super::options::unit_f64)]
    duplicate_rate: f64,
}

pub(crate) fn run(args: SynthArgs, global: &GlobalOptions) -> Result<Outcome> {
    let bar = (!global.quiet && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(args.count as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} documents, ETA {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let options = SynthOptions { count: args.count, seed: args.seed, duplicate_rate: args.duplicate_rate };
    let manifest = write_corpus(&args.out, options, |n| {
        if let Some(bar) = &bar {
            bar.set_position(n as u64);
        }
    })
    .with_context(|| format!("cannot write the corpus into {}", args.out.display()))?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if !global.quiet {
        let kinds: Vec<String> = manifest.kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
        let spans: usize = manifest.phi.values().sum();
        eprintln!(
            "wrote {} documents ({}) with {spans} gold PHI spans into {}",
            manifest.documents,
            kinds.join(", "),
            args.out.display()
        );
    }
    Ok(Outcome::Success)
}
