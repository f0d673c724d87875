//! `medllm diff`: how two GGUF files differ in metadata and tensor types.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Args;

use super::escape::terminal_safe;
use super::{GlobalOptions, Outcome};
use crate::gguf::{GgufDiff, GgufFile};

#[derive(Debug, Args)]
pub(crate) struct DiffArgs {
    /// The first GGUF file.
    #[arg(value_name = "A.gguf")]
    a: PathBuf,
    /// The second GGUF file.
    #[arg(value_name = "B.gguf")]
    b: PathBuf,
    /// Print one JSON object instead of lines.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: DiffArgs, _global: &GlobalOptions) -> Result<Outcome> {
    let a = GgufFile::open(&args.a).with_context(|| format!("cannot inspect {}", args.a.display()))?;
    let b = GgufFile::open(&args.b).with_context(|| format!("cannot inspect {}", args.b.display()))?;
    let diff = GgufDiff::of(&a, &b);
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &diff)?;
        writeln!(out)?;
    } else {
        print_lines(&mut out, &diff)?;
    }
    out.flush()?;
    Ok(Outcome::Success)
}

/// `-` only in A, `+` only in B, `~` changed; tensors of unchanged type and shape are counted.
fn print_lines(out: &mut impl Write, diff: &GgufDiff) -> std::io::Result<()> {
    // Keys, values and names come from the files: every line is escaped for the terminal.
    macro_rules! safe_line {
        ($($arg:tt)*) => {
            writeln!(out, "{}", terminal_safe(&format!($($arg)*)))
        };
    }
    if diff.is_empty() {
        return safe_line!("same metadata, same tensor types and shapes ({} tensors)", diff.tensors_same);
    }
    for (key, value) in &diff.metadata_only_a {
        safe_line!("- {key} = {value}")?;
    }
    for (key, value) in &diff.metadata_only_b {
        safe_line!("+ {key} = {value}")?;
    }
    for changed in &diff.metadata_changed {
        safe_line!("~ {} = {} → {}", changed.key, changed.a, changed.b)?;
    }
    for name in &diff.tensors_only_a {
        safe_line!("- tensor {name}")?;
    }
    for name in &diff.tensors_only_b {
        safe_line!("+ tensor {name}")?;
    }
    for t in &diff.tensors_changed {
        let shape =
            if t.dims_a == t.dims_b { String::new() } else { format!(" {:?} → {:?}", t.dims_a, t.dims_b) };
        safe_line!("~ tensor {} {} → {}{shape}", t.name, t.type_a, t.type_b)?;
    }
    safe_line!("{} tensors with the same type and shape", diff.tensors_same)
}
