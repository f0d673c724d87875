//! `medllm quality`: how closely a model follows a reference model on a text.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Args;

use super::{GlobalOptions, Outcome};
use crate::quant::{QualityReport, QualitySettings, compare_quality};

#[derive(Debug, Args)]
pub(crate) struct QualityArgs {
    /// The reference model (the original, e.g. F32 or F16).
    #[arg(long = "ref", value_name = "REF.gguf")]
    reference: PathBuf,
    /// The model to judge (quantized, merged, …), with the reference's vocabulary.
    #[arg(value_name = "MODEL.gguf")]
    model: PathBuf,
    /// The text to score (UTF-8).
    #[arg(long, value_name = "FILE")]
    text: PathBuf,
    /// Tokens per chunk; the second half of each chunk is scored.
    #[arg(short = 'c', long = "ctx", value_name = "TOKENS", default_value_t = 512, value_parser = crate::quant::parse_chunk_ctx)]
    ctx: usize,
    /// Score at most this many chunks (default: the whole text).
    #[arg(long, value_name = "N", value_parser = super::options::count)]
    chunks: Option<usize>,
    /// CPU threads (default: all cores).
    #[arg(short = 't', long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: QualityArgs, _global: &GlobalOptions) -> Result<Outcome> {
    let text = std::fs::read_to_string(&args.text)
        .with_context(|| format!("cannot read {}", args.text.display()))?;
    let settings = QualitySettings {
        reference: args.reference.clone(),
        model: args.model.clone(),
        ctx: args.ctx,
        max_chunks: args.chunks,
        threads: args.threads.map_or_else(|| crate::llama::ContextParams::default().n_threads, i32::from),
    };
    let report = compare_quality(&settings, &text).with_context(|| {
        format!("cannot compare {} with {}", args.model.display(), args.reference.display())
    })?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        print_table(&mut out, &report)?;
    }
    out.flush()?;
    Ok(Outcome::Success)
}

fn print_table(out: &mut impl Write, r: &QualityReport) -> std::io::Result<()> {
    let kl = &r.kl_divergence;
    writeln!(out, "reference            {}", r.reference.display())?;
    writeln!(out, "model                {}", r.model.display())?;
    writeln!(out, "scored               {} tokens in {} chunks of {}", r.tokens_scored, r.chunks, r.ctx)?;
    writeln!(out, "perplexity (ref)     {:.4}", r.reference_perplexity)?;
    writeln!(out, "perplexity (model)   {:.4}", r.model_perplexity)?;
    writeln!(out, "ppl ratio            {:.4}", r.model_perplexity / r.reference_perplexity)?;
    writeln!(out, "KL divergence mean   {:.6} ± {:.6}", kl.mean, kl.mean_stderr)?;
    writeln!(out, "KL divergence median {:.6}", kl.median)?;
    writeln!(out, "KL divergence p99    {:.6}", kl.p99)?;
    writeln!(out, "KL divergence max    {:.6}", kl.max)?;
    writeln!(out, "same top token       {:.2}%", 100.0 * r.top1_agreement)
}
