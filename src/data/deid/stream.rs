//! De-identifying files in the format they came in: a text file stays a text file, JSON
//! lines keep every field (the text field replaced), CSV keeps its delimiter, header and
//! columns (the text column replaced). Records are processed in batches on every core,
//! written in their input order. A bad record is counted and left out of the output (it
//! could hold PHI that nothing checked); its line number is reported, never its content.

use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};

use serde::Serialize;
use serde_json::Value;

use super::Deidentifier;
use crate::data::phi::{CharSpan, PhiCategory};

/// How a stream is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamFormat {
    /// One document.
    Text,
    /// One JSON object per line.
    Jsonl,
    /// A CSV table with a header row.
    Csv,
}

impl StreamFormat {
    /// The format of a file name (`.jsonl`, `.csv`, anything else is text).
    pub fn of_path(path: &std::path::Path) -> StreamFormat {
        match path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).as_deref() {
            Some("jsonl") => StreamFormat::Jsonl,
            Some("csv") => StreamFormat::Csv,
            _ => StreamFormat::Text,
        }
    }
}

/// Field and column names.
#[derive(Debug, Clone)]
pub struct StreamFields {
    /// JSONL field / CSV column with the text.
    pub text: String,
    /// JSONL field / CSV column with the id.
    pub id: String,
    /// JSONL field / CSV column naming the patient (dates of one patient shift together).
    pub patient: String,
}

impl Default for StreamFields {
    fn default() -> Self {
        StreamFields { text: "text".into(), id: "id".into(), patient: "patient".into() }
    }
}

/// What a stream held.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StreamStats {
    /// Documents de-identified.
    pub documents: usize,
    /// Records left out, with why (line numbers, no content).
    pub failures: Vec<String>,
    /// PHI replaced per category.
    pub replaced: BTreeMap<PhiCategory, usize>,
}

#[derive(Serialize)]
struct SpansLine<'a> {
    id: &'a str,
    spans: &'a [CharSpan],
}

/// A record waiting for its turn: the text, the patient key, and how to write it back.
struct Pending {
    id: String,
    text: String,
    patient: String,
    shell: Shell,
}

enum Shell {
    Text,
    Json(serde_json::Map<String, Value>),
    Csv(csv::StringRecord),
}

const BATCH: usize = 512;

/// De-identifies `input` (named `source` in ids and messages) into `output`, and the spans
/// into `spans` when given.
pub fn deidentify_stream(
    deid: &Deidentifier,
    format: StreamFormat,
    source: &str,
    input: &mut dyn BufRead,
    output: &mut dyn Write,
    mut spans: Option<&mut dyn Write>,
    fields: &StreamFields,
) -> std::io::Result<StreamStats> {
    let mut stats = StreamStats::default();
    match format {
        StreamFormat::Text => {
            let mut bytes = Vec::new();
            input.read_to_end(&mut bytes)?;
            let text = String::from_utf8_lossy(&bytes);
            let text = text.strip_prefix('\u{feff}').unwrap_or(&text).to_string();
            let batch = vec![Pending { id: source.into(), patient: source.into(), text, shell: Shell::Text }];
            flush(deid, batch, output, &mut spans, &mut stats, None)?;
        }
        StreamFormat::Jsonl => {
            let mut batch = Vec::with_capacity(BATCH);
            for (index, line) in input.lines().enumerate() {
                let line = line?;
                let line = line.trim().trim_start_matches('\u{feff}');
                if line.is_empty() {
                    continue;
                }
                let where_ = format!("{source}:{}", index + 1);
                let mut object = match serde_json::from_str::<Value>(line) {
                    Ok(Value::Object(object)) => object,
                    _ => {
                        stats.failures.push(format!("{where_}: not a JSON object; left out"));
                        continue;
                    }
                };
                let Some(Value::String(text)) = object.remove(&fields.text) else {
                    stats.failures.push(format!("{where_}: no string field \"{}\"; left out", fields.text));
                    continue;
                };
                let id = match object.get(&fields.id) {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Number(n)) => n.to_string(),
                    _ => where_,
                };
                let patient = match object.get(&fields.patient) {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Number(n)) => n.to_string(),
                    _ => id.clone(),
                };
                batch.push(Pending { id, text, patient, shell: Shell::Json(object) });
                if batch.len() == BATCH {
                    flush(
                        deid,
                        std::mem::take(&mut batch),
                        output,
                        &mut spans,
                        &mut stats,
                        Some(&fields.text),
                    )?;
                }
            }
            flush(deid, batch, output, &mut spans, &mut stats, Some(&fields.text))?;
        }
        StreamFormat::Csv => {
            let mut head = Vec::new();
            input.read_until(b'\n', &mut head)?;
            let delimiter = sniff_delimiter(&String::from_utf8_lossy(&head));
            let chained = std::io::Cursor::new(head).chain(input);
            let mut reader =
                csv::ReaderBuilder::new().delimiter(delimiter).flexible(true).from_reader(chained);
            let headers: Vec<String> = reader
                .headers()
                .map_err(std::io::Error::other)?
                .iter()
                .map(|h| h.trim_start_matches('\u{feff}').trim().to_string())
                .collect();
            let Some(text_index) = headers.iter().position(|h| *h == fields.text) else {
                stats.failures.push(format!(
                    "{source}: no column \"{}\" ({} columns); nothing written",
                    fields.text,
                    headers.len()
                ));
                return Ok(stats);
            };
            let id_index = headers.iter().position(|h| *h == fields.id);
            let patient_index = headers.iter().position(|h| *h == fields.patient);
            let mut writer = csv::WriterBuilder::new().delimiter(delimiter).from_writer(Vec::new());
            writer.write_record(&headers).map_err(std::io::Error::other)?;
            output.write_all(&writer.into_inner().map_err(|e| std::io::Error::other(e.to_string()))?)?;
            let mut batch = Vec::with_capacity(BATCH);
            for (index, record) in reader.records().enumerate() {
                let where_ = format!("{source}:{}", index + 2);
                let record = match record {
                    Ok(record) if record.len() == headers.len() => record,
                    Ok(record) => {
                        stats.failures.push(format!(
                            "{where_}: {} fields, the header has {}; left out",
                            record.len(),
                            headers.len()
                        ));
                        continue;
                    }
                    Err(e) => {
                        let reason = match e.kind() {
                            csv::ErrorKind::Utf8 { .. } => "not valid UTF-8",
                            _ => "unreadable CSV row",
                        };
                        stats.failures.push(format!("{where_}: {reason}; left out"));
                        continue;
                    }
                };
                let id = id_index
                    .and_then(|i| record.get(i))
                    .filter(|s| !s.is_empty())
                    .map_or(where_, str::to_string);
                let patient = patient_index
                    .and_then(|i| record.get(i))
                    .filter(|s| !s.is_empty())
                    .map_or(id.clone(), str::to_string);
                let text = record.get(text_index).unwrap_or_default().to_string();
                batch.push(Pending { id, text, patient, shell: Shell::Csv(record) });
                if batch.len() == BATCH {
                    flush_csv(
                        deid,
                        std::mem::take(&mut batch),
                        output,
                        &mut spans,
                        &mut stats,
                        delimiter,
                        text_index,
                    )?;
                }
            }
            flush_csv(deid, batch, output, &mut spans, &mut stats, delimiter, text_index)?;
        }
    }
    Ok(stats)
}

/// De-identifies a batch on every core; results keep their order.
fn run_batch(deid: &Deidentifier, batch: &[Pending]) -> Vec<super::Deidentified> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(batch.len().max(1));
    if threads <= 1 {
        return batch.iter().map(|p| deid.deidentify(&p.text, &p.patient)).collect();
    }
    let chunk = batch.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = batch
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter().map(|p| deid.deidentify(&p.text, &p.patient)).collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    })
}

fn record_spans(
    stats: &mut StreamStats,
    spans: &mut Option<&mut dyn Write>,
    id: &str,
    found: &[CharSpan],
) -> std::io::Result<()> {
    stats.documents += 1;
    for span in found {
        *stats.replaced.entry(span.category).or_default() += 1;
    }
    if let Some(out) = spans.as_deref_mut() {
        serde_json::to_writer(&mut *out, &SpansLine { id, spans: found })?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

fn flush(
    deid: &Deidentifier,
    batch: Vec<Pending>,
    output: &mut dyn Write,
    spans: &mut Option<&mut dyn Write>,
    stats: &mut StreamStats,
    text_field: Option<&str>,
) -> std::io::Result<()> {
    let results = run_batch(deid, &batch);
    for (pending, result) in batch.into_iter().zip(results) {
        record_spans(stats, spans, &pending.id, &result.spans)?;
        match pending.shell {
            Shell::Text => output.write_all(result.text.as_bytes())?,
            Shell::Json(mut object) => {
                object.insert(text_field.unwrap_or("text").to_string(), Value::String(result.text));
                serde_json::to_writer(&mut *output, &object)?;
                output.write_all(b"\n")?;
            }
            Shell::Csv(_) => unreachable!("CSV batches go through flush_csv"),
        }
    }
    Ok(())
}

fn flush_csv(
    deid: &Deidentifier,
    batch: Vec<Pending>,
    output: &mut dyn Write,
    spans: &mut Option<&mut dyn Write>,
    stats: &mut StreamStats,
    delimiter: u8,
    text_index: usize,
) -> std::io::Result<()> {
    let results = run_batch(deid, &batch);
    let mut writer = csv::WriterBuilder::new().delimiter(delimiter).from_writer(Vec::new());
    for (pending, result) in batch.into_iter().zip(results) {
        record_spans(stats, spans, &pending.id, &result.spans)?;
        if let Shell::Csv(record) = pending.shell {
            let row: Vec<&str> = record
                .iter()
                .enumerate()
                .map(|(i, f)| if i == text_index { result.text.as_str() } else { f })
                .collect();
            writer.write_record(&row).map_err(std::io::Error::other)?;
        }
    }
    output.write_all(&writer.into_inner().map_err(|e| std::io::Error::other(e.to_string()))?)
}

/// The most frequent of `,`, `;` and tab outside quotes in the header line.
fn sniff_delimiter(header: &str) -> u8 {
    let mut counts = [(b',', 0usize), (b';', 0), (b'\t', 0)];
    let mut quoted = false;
    for byte in header.bytes() {
        if byte == b'"' {
            quoted = !quoted;
        } else if !quoted {
            for (d, n) in &mut counts {
                if byte == *d {
                    *n += 1;
                }
            }
        }
    }
    counts.iter().max_by_key(|(_, n)| *n).filter(|(_, n)| *n > 0).map_or(b',', |(d, _)| *d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::deid::DeidOptions;

    fn run(format: StreamFormat, input: &str) -> (String, String, StreamStats) {
        let deid = Deidentifier::new(DeidOptions::default());
        let mut out = Vec::new();
        let mut spans = Vec::new();
        let stats = deidentify_stream(
            &deid,
            format,
            "in",
            &mut std::io::Cursor::new(input.as_bytes().to_vec()),
            &mut out,
            Some(&mut spans),
            &StreamFields::default(),
        )
        .unwrap();
        (String::from_utf8(out).unwrap(), String::from_utf8(spans).unwrap(), stats)
    }

    #[test]
    fn csv_keeps_delimiter_columns_and_quoted_newlines() {
        let input =
            "\u{feff}id;text;ward\nA1;\"Seen by Dr. Helen Schwartz\non 03/14/2024.\";3\nA2;too;many;fields\n";
        let (out, spans, stats) = run(StreamFormat::Csv, input);
        assert_eq!(out, "id;text;ward\nA1;\"Seen by Dr. [NAME]\non [DATE].\";3\n");
        assert_eq!(stats.documents, 1);
        assert_eq!(stats.failures, vec!["in:3: 4 fields, the header has 3; left out".to_string()]);
        assert!(spans.starts_with("{\"id\":\"A1\",\"spans\":[{\"category\":\"NAME\""), "{spans}");
        assert!(!spans.contains("Schwartz"));
    }

    #[test]
    fn jsonl_keeps_other_fields_and_leaves_bad_lines_out() {
        let input =
            "{\"id\":\"n1\",\"ward\":\"5B\",\"text\":\"Mrs. Okafor called 617-555-0143.\"}\n{broken\n";
        let (out, _, stats) = run(StreamFormat::Jsonl, input);
        let line: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
        assert_eq!(line["text"], "Mrs. [NAME] called [PHONE].");
        assert_eq!(line["ward"], "5B");
        assert_eq!(out.lines().count(), 1);
        assert_eq!(stats.failures.len(), 1);
        assert!(!stats.failures[0].contains("broken"));
    }
}
