//! `medllm info`: what a GGUF file holds, read in pure Rust (no model load).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Args;

use super::escape::terminal_safe;
use super::{GlobalOptions, Outcome};
use crate::gguf::{GgufFile, ModelSummary};

#[derive(Debug, Args)]
pub(crate) struct InfoArgs {
    /// GGUF model or adapter file.
    #[arg(value_name = "MODEL.gguf")]
    model: PathBuf,
    /// Also list every tensor: name, type, dimensions, bytes.
    #[arg(long)]
    tensors: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: InfoArgs, _global: &GlobalOptions) -> Result<Outcome> {
    let file =
        GgufFile::open(&args.model).with_context(|| format!("cannot inspect {}", args.model.display()))?;
    let mut summary = ModelSummary::of(&file);
    if args.tensors {
        summary = summary.with_tensors(&file);
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &summary)?;
        writeln!(out)?;
    } else {
        print_table(&mut out, &summary)?;
    }
    out.flush()?;
    Ok(Outcome::Success)
}

/// The table for people; every line is escaped, since names and types come from the file.
fn print_table(out: &mut impl Write, s: &ModelSummary) -> std::io::Result<()> {
    macro_rules! safe_line {
        ($($arg:tt)*) => {
            writeln!(out, "{}", terminal_safe(&format!($($arg)*)))
        };
    }
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    safe_line!("file            {} ({})", s.path.display(), human_bytes(s.file_bytes))?;
    safe_line!("gguf version    {}", s.gguf_version)?;
    if let Some(kind) = &s.kind {
        safe_line!("kind            {kind}")?;
    }
    safe_line!("architecture    {}", or_dash(s.architecture.clone()))?;
    safe_line!("name            {}", or_dash(s.name.clone()))?;
    safe_line!("parameters      {} ({})", human_count(s.parameters), s.parameters)?;
    safe_line!("context length  {}", or_dash(s.context_length.map(|v| v.to_string())))?;
    safe_line!("vocabulary      {}", or_dash(s.vocab_size.map(|v| format!("{v} tokens"))))?;
    safe_line!("chat template   {}", if s.chat_template { "yes" } else { "no" })?;
    safe_line!("file type       {}", or_dash(s.file_type.clone()))?;
    safe_line!("tensors         {} ({})", s.tensor_count, human_bytes(s.tensor_bytes))?;
    for (ty, usage) in &s.tensor_types {
        safe_line!("  {ty:<8} {:>5} tensors  {:>10}", usage.tensors, human_bytes(usage.bytes))?;
    }
    if let Some(tensors) = &s.tensors {
        safe_line!("")?;
        safe_line!("{:<40} {:<8} {:<22} {:>12}", "tensor", "type", "dims", "bytes")?;
        for t in tensors {
            let dims = t.dims.iter().map(u64::to_string).collect::<Vec<_>>().join(" x ");
            safe_line!("{:<40} {:<8} {:<22} {:>12}", t.name, t.ggml_type, dims, t.bytes)?;
        }
    }
    Ok(())
}

/// 1.2 GB, 98.4 MB, 512 B: decimal units, as model sizes are usually quoted.
pub(crate) fn human_bytes(bytes: u64) -> String {
    let units = [("GB", 1e9), ("MB", 1e6), ("kB", 1e3)];
    units
        .iter()
        .find(|(_, size)| bytes as f64 >= *size)
        .map_or_else(|| format!("{bytes} B"), |(unit, size)| format!("{:.1} {unit}", bytes as f64 / size))
}

/// 134.5M, 1.2B: the way parameter counts are quoted.
fn human_count(n: u64) -> String {
    let units = [("B", 1e9), ("M", 1e6), ("K", 1e3)];
    units
        .iter()
        .find(|(_, size)| n as f64 >= *size)
        .map_or_else(|| n.to_string(), |(unit, size)| format!("{:.1}{unit}", n as f64 / size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(human_bytes(98_362_432), "98.4 MB");
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_count(134_515_008), "134.5M");
        assert_eq!(human_count(999), "999");
    }
}
