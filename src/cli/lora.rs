//! `medllm lora convert|merge`: PEFT adapters to GGUF, adapters merged into a base model.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};

use super::info::human_bytes;
use super::options::{LoraSpec, parse_lora};
use super::progress::TensorProgress;
use super::quantize::parse_ggml_type;
use super::{GlobalOptions, Outcome};
use crate::gguf::GgmlType;
use crate::lora::{AdapterInput, ConvertSettings, MergeSettings, convert_peft, merge_adapters};

#[derive(Debug, Args)]
pub(crate) struct LoraArgs {
    #[command(subcommand)]
    command: LoraCommand,
}

#[derive(Debug, Subcommand)]
enum LoraCommand {
    /// Convert a PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors) into a
    /// GGUF adapter for a base model.
    Convert(ConvertArgs),
    /// Merge GGUF LoRA adapters into a base model, keeping each tensor's type.
    Merge(MergeArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ConvertArgs {
    /// The PEFT adapter folder.
    #[arg(long, value_name = "DIR")]
    peft: PathBuf,
    /// The GGUF base model the adapter was trained on (for names, shapes, architecture).
    #[arg(long, value_name = "BASE.gguf")]
    base: PathBuf,
    /// The GGUF adapter to write (atomically).
    #[arg(short, long, value_name = "ADAPTER.gguf")]
    output: PathBuf,
    /// Print the report as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct MergeArgs {
    /// The base model (any tensor types).
    #[arg(long, value_name = "BASE.gguf")]
    base: PathBuf,
    /// A GGUF LoRA adapter with an optional scale (default 1.0); repeatable.
    #[arg(long = "adapter", value_name = "A.gguf[:SCALE]", value_parser = parse_lora, required = true)]
    adapters: Vec<LoraSpec>,
    /// The merged model to write (atomically).
    #[arg(short, long, value_name = "OUT.gguf")]
    output: PathBuf,
    /// ggml type of the merged tensors (default: each keeps its type in the base).
    #[arg(long = "type", value_name = "GGML_TYPE", value_parser = parse_ggml_type)]
    merged_type: Option<GgmlType>,
    /// Threads (default: all cores).
    #[arg(short = 't', long, value_name = "N", value_parser = super::options::count)]
    threads: Option<usize>,
    /// Print the report as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: LoraArgs, global: &GlobalOptions) -> Result<Outcome> {
    match args.command {
        LoraCommand::Convert(args) => convert(args, global),
        LoraCommand::Merge(args) => merge(args, global),
    }
}

fn convert(args: ConvertArgs, global: &GlobalOptions) -> Result<Outcome> {
    // Every file in the PEFT folder may be read; a new file beside them is fine.
    let peft_files: Vec<PathBuf> = std::fs::read_dir(&args.peft)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    let inputs = std::iter::once(args.base.as_path()).chain(peft_files.iter().map(PathBuf::as_path));
    crate::atomic_file::refuse_output_among_inputs(&args.output, inputs)?;
    let settings =
        ConvertSettings { peft_dir: args.peft.clone(), base: args.base.clone(), output: args.output.clone() };
    let report =
        convert_peft(&settings).with_context(|| format!("cannot convert {}", args.peft.display()))?;
    if args.json {
        let mut out = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else if !global.quiet {
        eprintln!(
            "wrote {}: {} adapted tensors for {}, rank {}, alpha {}{}{}",
            report.output.display(),
            report.adapted_tensors,
            report.architecture,
            report.rank,
            report.alpha,
            if report.rslora { " (rsLoRA folded in)" } else { "" },
            if report.permuted_query_key { ", Q/K rows permuted for llama.cpp's rotary layout" } else { "" },
        );
    }
    Ok(Outcome::Success)
}

fn merge(args: MergeArgs, global: &GlobalOptions) -> Result<Outcome> {
    let inputs = std::iter::once(args.base.as_path()).chain(args.adapters.iter().map(|a| a.path.as_path()));
    crate::atomic_file::refuse_output_among_inputs(&args.output, inputs)?;
    let settings = MergeSettings {
        base: args.base.clone(),
        adapters: args
            .adapters
            .iter()
            .map(|a| AdapterInput { path: a.path.clone(), scale: a.scale })
            .collect(),
        output: args.output.clone(),
        merged_type: args.merged_type,
        threads: args.threads.unwrap_or(0),
    };
    let progress = TensorProgress::new(global);
    let report = merge_adapters(&settings, |t| {
        progress.tensor(t.index, t.total, t.name, if t.merged { "merged" } else { "copied" });
    });
    progress.finish();
    let report = report.with_context(|| format!("cannot merge into {}", args.base.display()))?;
    if args.json {
        let mut out = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else if !global.quiet {
        eprintln!(
            "wrote {} ({}): {} tensors merged, {} copied, {} adapter(s), in {:.2} s",
            report.output.display(),
            human_bytes(report.output_file_bytes),
            report.merged_tensors,
            report.copied_tensors,
            report.adapters.len(),
            report.seconds
        );
    }
    Ok(Outcome::Success)
}
