//! `medllm quantize`: re-type a GGUF model with llama.cpp's quantizer.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Args;

use super::info::human_bytes;
use super::progress::TensorProgress;
use super::{GlobalOptions, Outcome};
use crate::gguf::GgmlType;
use crate::quant::{QuantizeReport, QuantizeSettings, parse_file_type, quantize};

#[derive(Debug, Args)]
pub(crate) struct QuantizeArgs {
    /// The model to quantize (any type; quantized inputs are requantized).
    #[arg(value_name = "IN.gguf")]
    input: PathBuf,
    /// Where to write the result (atomically; never the input itself).
    #[arg(value_name = "OUT.gguf", required_unless_present = "dry_run")]
    output: Option<PathBuf>,
    /// Target: Q4_K_M, Q4_K_S, Q5_K_M, Q6_K, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K_S/M/L,
    /// IQ2_XXS … IQ4_XS, TQ1_0, TQ2_0, MXFP4_MOE, BF16, F16, F32 (the last two dequantize).
    #[arg(long = "type", value_name = "TYPE", value_parser = parse_file_type)]
    file_type: u32,
    /// Importance matrix from llama-imatrix (GGUF or legacy .dat); the IQ1/IQ2 types need one.
    #[arg(long, value_name = "FILE")]
    imatrix: Option<PathBuf>,
    /// ggml type of output.weight (e.g. q8_0, f16), overriding the type's mixture.
    #[arg(long, value_name = "GGML_TYPE", value_parser = parse_ggml_type)]
    output_tensor_type: Option<GgmlType>,
    /// ggml type of the token embeddings, overriding the type's mixture.
    #[arg(long, value_name = "GGML_TYPE", value_parser = parse_ggml_type)]
    token_embedding_type: Option<GgmlType>,
    /// Every tensor to the type's base type: no k-quant mixture.
    #[arg(long)]
    pure: bool,
    /// Print each tensor's planned type and the sizes; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Threads (default: all cores).
    #[arg(short = 't', long, value_name = "N", value_parser = super::options::count)]
    threads: Option<usize>,
    /// Print the report as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

/// A ggml tensor type by name (`q8_0`, `F16`).
pub(crate) fn parse_ggml_type(name: &str) -> Result<GgmlType, String> {
    GgmlType::from_name(name)
        .ok_or_else(|| format!("unknown tensor type {name:?} (e.g. f32, f16, q8_0, q4_k)"))
}

pub(crate) fn run(args: QuantizeArgs, global: &GlobalOptions) -> Result<Outcome> {
    if let Some(output) = &args.output {
        let inputs = std::iter::once(args.input.as_path()).chain(args.imatrix.as_deref());
        crate::atomic_file::refuse_output_among_inputs(output, inputs)?;
    }
    let settings = QuantizeSettings {
        input: args.input.clone(),
        output: args.output.clone(),
        file_type: args.file_type,
        threads: args.threads.unwrap_or(0),
        output_tensor_type: args.output_tensor_type,
        token_embedding_type: args.token_embedding_type,
        pure: args.pure,
        dry_run: args.dry_run,
        imatrix: args.imatrix.clone(),
    };
    let progress = TensorProgress::new(global);
    let reporter = progress.clone();
    let report = quantize(&settings, move |t| {
        reporter.tensor(t.index, t.total, &t.name, &format!("{} → {}", t.from.name(), t.to.name()));
    });
    progress.finish();
    let report = report.with_context(|| format!("cannot quantize {}", args.input.display()))?;

    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else if report.dry_run {
        print_plan(&mut out, &report)?;
    }
    out.flush()?;
    if !global.quiet && !args.json && !report.dry_run {
        eprintln!(
            "wrote {} ({}, {}) from {} ({}) in {:.2} s",
            report.output.as_ref().map_or_else(String::new, |p| p.display().to_string()),
            report.file_type,
            human_bytes(report.output_file_bytes.unwrap_or(0)),
            report.input.display(),
            human_bytes(report.input_file_bytes),
            report.seconds
        );
    }
    Ok(Outcome::Success)
}

fn print_plan(out: &mut impl Write, report: &QuantizeReport) -> std::io::Result<()> {
    writeln!(out, "{:<40} {:>8} {:>8} {:>12} {:>12}", "tensor", "from", "to", "bytes before", "bytes after")?;
    for t in &report.tensors {
        writeln!(
            out,
            "{:<40} {:>8} {:>8} {:>12} {:>12}",
            super::escape::terminal_safe(&t.name),
            t.from,
            t.to,
            t.bytes_before,
            t.bytes_after
        )?;
    }
    writeln!(
        out,
        "total: {} tensors, {} → {} of tensor data ({})",
        report.tensors.len(),
        human_bytes(report.tensor_bytes_before),
        human_bytes(report.tensor_bytes_after),
        report.file_type
    )
}
