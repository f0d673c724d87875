//! `medllm deid`: de-identify documents, writing each in the format it came in.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use clap::Args;

use super::{GlobalOptions, Outcome};
use crate::atomic_file::{AtomicWriter, InputFiles, same_path};
use crate::data::deid::{
    DeidMode, DeidOptions, Deidentifier, StreamFields, StreamFormat, StreamStats, deidentify_stream,
};

#[derive(Debug, Args)]
pub(crate) struct DeidArgs {
    /// Inputs: files (.txt, .md, .jsonl, .csv), folders (recursive), or - for stdin.
    #[arg(value_name = "INPUT", default_value = "-")]
    inputs: Vec<PathBuf>,
    /// Output: a file for one input (default stdout); a folder, required, for several
    /// inputs or a folder (the input tree is mirrored in it).
    #[arg(short, long, value_name = "PATH")]
    out: Option<PathBuf>,
    /// How PHI is replaced: a tag such as [NAME] (redact), asterisks of the same length
    /// (mask), or consistent realistic surrogates with dates shifted per patient
    /// (surrogate).
    #[arg(long, value_enum, default_value_t = DeidMode::Redact)]
    mode: DeidMode,
    /// Seed of the per-patient date shift and of surrogate choice. Default: a fresh
    /// random seed each run (a known seed lets anyone undo the shift; keep it secret).
    #[arg(long, value_name = "N")]
    date_shift_seed: Option<u64>,
    /// Also write what was found, as JSON lines of {"id", "spans": [{"category",
    /// "start", "end", "replacement"}]} with offsets in characters of the input. The
    /// original values are never written.
    #[arg(long, value_name = "FILE")]
    spans: Option<PathBuf>,
    /// JSONL field / CSV column holding the text.
    #[arg(long, value_name = "NAME", default_value = "text")]
    text_field: String,
    /// JSONL field / CSV column holding the id.
    #[arg(long, value_name = "NAME", default_value = "id")]
    id_field: String,
    /// JSONL field / CSV column naming the patient: dates of one patient move together.
    #[arg(long, value_name = "NAME", default_value = "patient")]
    patient_field: String,
    /// Another JSONL field / CSV column to keep, de-identified as text (repeatable). All
    /// fields but the text and the id are left out otherwise: a name, MRN or birth-date
    /// column would pass through untouched. Never keep a column that is an identifier.
    #[arg(long = "keep-field", value_name = "NAME")]
    keep_fields: Vec<String>,
}

/// Files under a folder that `deid` reads, relative to it, in name order; links to
/// folders are not followed.
fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read folder {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            walk(root, &path, out)?;
        } else if matches!(
            path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).as_deref(),
            Some("txt" | "md" | "jsonl" | "csv")
        ) {
            out.push(path.strip_prefix(root).unwrap_or(&path).to_path_buf());
        }
    }
    Ok(())
}

/// Stdin is JSON lines when its first non-empty line (read whole, however long) is a JSON
/// object, else one text. Returns the format and a reader that starts at the beginning.
fn sniff_stdin(mut reader: Box<dyn BufRead>) -> Result<(StreamFormat, Box<dyn BufRead>)> {
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        if reader.read_until(b'\n', &mut line).context("cannot read stdin")? == 0 {
            break;
        }
        let blank = line.iter().all(u8::is_ascii_whitespace);
        head.extend_from_slice(&line);
        if !blank {
            break;
        }
    }
    let first = String::from_utf8_lossy(&head);
    let first = first.trim().trim_start_matches('\u{feff}');
    let is_object = serde_json::from_str::<serde_json::Value>(first).is_ok_and(|v| v.is_object());
    let format = if is_object { StreamFormat::Jsonl } else { StreamFormat::Text };
    Ok((format, Box::new(std::io::Cursor::new(head).chain(reader))))
}

pub(crate) fn run(args: DeidArgs, global: &GlobalOptions) -> Result<Outcome> {
    let seed = args.date_shift_seed.unwrap_or_else(crate::data::rng::fresh_seed);
    let deid = Deidentifier::new(DeidOptions { mode: args.mode, date_shift_seed: seed });
    let fields = StreamFields {
        text: args.text_field.clone(),
        id: args.id_field.clone(),
        patient: args.patient_field.clone(),
        keep: args.keep_fields.clone(),
    };
    // Outputs that would replace an input are refused before anything is read or written.
    let single = args.inputs.len() == 1 && !args.inputs[0].is_dir();
    let inputs = InputFiles::new(args.inputs.iter().map(PathBuf::as_path));
    if let Some(spans) = &args.spans {
        inputs.check(spans)?;
        if let Some(out) = args.out.as_deref().filter(|_| single)
            && same_path(out, spans)
        {
            bail!("--spans and --out name the same file {}; give each its own", spans.display());
        }
    }
    if single && let Some(out) = &args.out {
        inputs.check(out)?;
    }
    // Ctrl-C stops between records; the records done by then are kept, each whole.
    crate::interrupt::stop_on_request();
    let mut spans = match &args.spans {
        Some(path) => {
            Some(AtomicWriter::create(path).with_context(|| format!("cannot write {}", path.display()))?)
        }
        None => None,
    };
    let mut total = StreamStats::default();
    let mut stopped_between_files = false;
    // Adds a stream's counts to the total; says whether its output is worth keeping.
    let mut add = |stats: StreamStats| -> bool {
        total.documents += stats.documents;
        total.interrupted |= stats.interrupted;
        for (category, n) in stats.replaced {
            *total.replaced.entry(category).or_default() += n;
        }
        for failure in stats.failures {
            eprintln!("warning: {failure}");
            total.failures.push(failure);
        }
        // An interrupted stream keeps its finished records, if any.
        let nothing_done = stats.interrupted && stats.documents == 0;
        !(stats.unusable || nothing_done)
    };

    if single {
        let input = &args.inputs[0];
        let (format, mut reader, source): (StreamFormat, Box<dyn BufRead>, String) =
            if input.as_os_str() == "-" {
                let (format, reader) = sniff_stdin(Box::new(BufReader::new(std::io::stdin())))?;
                (format, reader, "stdin".into())
            } else {
                let file =
                    std::fs::File::open(input).with_context(|| format!("cannot open {}", input.display()))?;
                (StreamFormat::of_path(input), Box::new(BufReader::new(file)), input.display().to_string())
            };
        match &args.out {
            Some(path) => {
                let mut out =
                    AtomicWriter::create(path).with_context(|| format!("cannot write {}", path.display()))?;
                let spans_out = spans.as_mut().map(|w| w as &mut dyn Write);
                if add(deidentify_stream(&deid, format, &source, &mut reader, &mut out, spans_out, &fields)?)
                {
                    out.commit().with_context(|| format!("cannot write {}", path.display()))?;
                }
            }
            None => {
                let mut stdout = std::io::stdout().lock();
                let spans_out = spans.as_mut().map(|w| w as &mut dyn Write);
                add(deidentify_stream(&deid, format, &source, &mut reader, &mut stdout, spans_out, &fields)?);
                stdout.flush()?;
            }
        }
    } else {
        let Some(out_dir) = &args.out else {
            bail!("several inputs or a folder need --out DIR for the de-identified copies");
        };
        let mut jobs: Vec<(PathBuf, PathBuf)> = Vec::new();
        for input in &args.inputs {
            if input.as_os_str() == "-" {
                bail!("stdin (-) cannot be mixed with other inputs");
            }
            if input.is_dir() {
                let mut files = Vec::new();
                walk(input, input, &mut files)?;
                jobs.extend(files.into_iter().map(|rel| (input.join(&rel), out_dir.join(rel))));
            } else {
                let name = input.file_name().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("input"));
                jobs.push((input.clone(), out_dir.join(name)));
            }
        }
        // Two inputs with the same file name would write one output over the other.
        let mut targets = std::collections::HashSet::new();
        for (_, output) in &jobs {
            if !targets.insert(output.clone()) {
                bail!("two inputs would both be written to {}; run them separately", output.display());
            }
            inputs.check(output)?;
            if let Some(spans) = args.spans.as_deref().filter(|spans| same_path(spans, output)) {
                bail!(
                    "--spans {} is also where a de-identified copy goes; write it elsewhere",
                    spans.display()
                );
            }
        }
        inputs.check(out_dir)?;
        for (input, output) in jobs {
            if crate::interrupt::stop_requested() {
                stopped_between_files = true;
                break;
            }
            if let Some(parent) = output.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            let file = match std::fs::File::open(&input) {
                Ok(file) => file,
                Err(e) => {
                    let failure = format!("{}: cannot open: {}", input.display(), e.kind());
                    add(StreamStats { failures: vec![failure], unusable: true, ..Default::default() });
                    continue;
                }
            };
            let mut out = AtomicWriter::create(&output)
                .with_context(|| format!("cannot write {}", output.display()))?;
            let spans_out = spans.as_mut().map(|w| w as &mut dyn Write);
            let source = input.display().to_string();
            let format = StreamFormat::of_path(&input);
            let stats = deidentify_stream(
                &deid,
                format,
                &source,
                &mut BufReader::new(file),
                &mut out,
                spans_out,
                &fields,
            )?;
            if add(stats) {
                out.commit().with_context(|| format!("cannot write {}", output.display()))?;
            }
        }
    }
    let interrupted = total.interrupted || stopped_between_files;
    if let (Some(writer), Some(path)) = (spans, &args.spans)
        && !(interrupted && total.documents == 0)
    {
        writer.commit().with_context(|| format!("cannot write {}", path.display()))?;
    }
    if !global.quiet {
        let replaced: usize = total.replaced.values().sum();
        let by_category: Vec<String> = total.replaced.iter().map(|(c, n)| format!("{c} {n}")).collect();
        eprintln!(
            "de-identified {} documents: {replaced} spans replaced ({}){}",
            total.documents,
            if by_category.is_empty() { "none".into() } else { by_category.join(", ") },
            if total.failures.is_empty() {
                String::new()
            } else {
                format!("; {} inputs or records left out", total.failures.len())
            }
        );
    }
    if interrupted {
        eprintln!(
            "interrupted: the {} documents done were written whole; the rest were not read",
            total.documents
        );
        return Ok(Outcome::Interrupted);
    }
    Ok(if total.failures.is_empty() { Outcome::Success } else { Outcome::SomeInputsFailed })
}
