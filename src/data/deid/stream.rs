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
use super::detect::KnownPhi;
use super::structure::{FieldKind, classify_label};
use crate::data::phi::{CharSpan, PhiCategory};
use crate::data::sniff_delimiter;

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
    /// JSONL field / CSV column with the id (passed through unchanged).
    pub id: String,
    /// JSONL field / CSV column naming the patient (dates of one patient shift together).
    pub patient: String,
    /// Other fields / columns to keep, de-identified as text. All others are left out:
    /// a name, MRN or birth date column would otherwise pass through untouched.
    pub keep: Vec<String>,
}

impl Default for StreamFields {
    fn default() -> Self {
        StreamFields { text: "text".into(), id: "id".into(), patient: "patient".into(), keep: Vec::new() }
    }
}

/// What a stream held.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StreamStats {
    /// Documents de-identified.
    pub documents: usize,
    /// Records left out, with why (line numbers, no content).
    pub failures: Vec<String>,
    /// The whole input could not be used (no text column): nothing should be written.
    pub unusable: bool,
    /// PHI replaced per category.
    pub replaced: BTreeMap<PhiCategory, usize>,
    /// A stop request (Ctrl-C, see [`crate::interrupt`]) ended the stream early: the
    /// records before it were written whole, the rest not read.
    pub interrupted: bool,
}

#[derive(Serialize)]
struct SpansLine<'a> {
    id: &'a str,
    spans: &'a [CharSpan],
}

/// A record waiting for its turn: the text, the kept fields, the patient key, and how to
/// write it back.
struct Pending {
    id: String,
    text: String,
    kept: Vec<(String, Value)>,
    patient: String,
    /// What the record's other fields say about its patient (a name column, an MRN).
    known: KnownPhi,
    shell: Shell,
}

/// The identifying values of a record's fields other than its text: a field whose name
/// says it holds a name (`patient`, `patient_name`, `attending`) gives names, one that
/// holds an MRN, a phone number or an address gives values; the detector then finds them
/// wherever the text repeats them, even alone or in lower case.
fn known_from_fields<'a>(fields: impl IntoIterator<Item = (&'a str, String)>) -> KnownPhi {
    let mut known = KnownPhi::default();
    for (key, value) in fields {
        if value.trim().is_empty() {
            continue;
        }
        match classify_label(key) {
            Some(FieldKind::Name) => known.names.push(value),
            Some(FieldKind::Organisation | FieldKind::City) => known.names.push(value),
            Some(_) => known.values.push(value),
            None => {}
        }
    }
    known
}

fn value_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

enum Shell {
    Text,
    Json { id: Option<Value> },
    Csv { id: Option<String> },
}

/// A de-identified record: the text's result and the kept fields, replaced consistently.
struct Done {
    text: super::Deidentified,
    kept: Vec<(String, Value)>,
}

const BATCH: usize = 512;

/// De-identifies `input` (named `source` in ids and messages) into `output`, and the spans
/// into `spans` when given. A stop request (see [`crate::interrupt`]) ends a JSONL or CSV
/// stream between records, with the records read so far written whole.
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
            let pending = Pending {
                id: source.into(),
                patient: source.into(),
                text,
                kept: Vec::new(),
                known: KnownPhi::default(),
                shell: Shell::Text,
            };
            flush(deid, vec![pending], output, &mut spans, &mut stats, fields, None)?;
        }
        StreamFormat::Jsonl => {
            let mut batch = Vec::with_capacity(BATCH);
            let mut line_number = 0usize;
            loop {
                if crate::interrupt::stop_requested() {
                    stats.interrupted = true;
                    break;
                }
                let mut raw = Vec::new();
                if input.read_until(b'\n', &mut raw)? == 0 {
                    break;
                }
                line_number += 1;
                let where_ = format!("{source}:{line_number}");
                let Ok(line) = std::str::from_utf8(&raw) else {
                    stats.failures.push(format!("{where_}: not valid UTF-8; left out"));
                    continue;
                };
                let line = line.trim().trim_start_matches('\u{feff}');
                if line.is_empty() {
                    continue;
                }
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
                let id_value = object.get(&fields.id).cloned();
                let id = match &id_value {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Number(n)) => n.to_string(),
                    _ => where_,
                };
                let patient = match object.get(&fields.patient) {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Number(n)) => n.to_string(),
                    _ => id.clone(),
                };
                let known =
                    known_from_fields(object.iter().filter_map(|(k, v)| Some((k.as_str(), value_text(v)?))));
                let kept =
                    fields.keep.iter().filter_map(|k| object.remove(k).map(|v| (k.clone(), v))).collect();
                batch.push(Pending { id, text, kept, patient, known, shell: Shell::Json { id: id_value } });
                if batch.len() == BATCH {
                    flush(deid, std::mem::take(&mut batch), output, &mut spans, &mut stats, fields, None)?;
                }
            }
            flush(deid, batch, output, &mut spans, &mut stats, fields, None)?;
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
                .map_err(|_| std::io::Error::other(format!("{source}: unreadable CSV header")))?
                .iter()
                .map(|h| h.trim_start_matches('\u{feff}').trim().to_string())
                .collect();
            let Some(text_index) = headers.iter().position(|h| *h == fields.text) else {
                // Column names are not echoed: without a header row they would be a note.
                stats.failures.push(format!(
                    "{source}: no column \"{}\" in the header row ({} columns); see --text-field; nothing written",
                    fields.text,
                    headers.len()
                ));
                stats.unusable = true;
                return Ok(stats);
            };
            let id_index = headers.iter().position(|h| *h == fields.id);
            let patient_index = headers.iter().position(|h| *h == fields.patient);
            let kept_indexes: Vec<usize> =
                fields.keep.iter().filter_map(|k| headers.iter().position(|h| h == k)).collect();
            // Output columns: id, text, kept ones, in the input's order.
            let columns: Vec<usize> = (0..headers.len())
                .filter(|i| Some(*i) == id_index || *i == text_index || kept_indexes.contains(i))
                .collect();
            let layout = CsvLayout { delimiter, columns: columns.clone(), text_index, id_index };
            let mut writer = csv::WriterBuilder::new().delimiter(delimiter).from_writer(Vec::new());
            writer
                .write_record(columns.iter().map(|&i| headers[i].as_str()))
                .map_err(std::io::Error::other)?;
            output.write_all(&writer.into_inner().map_err(|e| std::io::Error::other(e.to_string()))?)?;
            let mut batch = Vec::with_capacity(BATCH);
            for (index, record) in reader.records().enumerate() {
                if crate::interrupt::stop_requested() {
                    stats.interrupted = true;
                    break;
                }
                let line = |p: Option<&csv::Position>| p.map_or(index as u64 + 2, csv::Position::line);
                let record = match record {
                    Ok(record) if record.len() == headers.len() => record,
                    Ok(record) => {
                        stats.failures.push(format!(
                            "{source}:{}: {} fields, the header has {}; left out",
                            line(record.position()),
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
                        stats.failures.push(format!("{source}:{}: {reason}; left out", line(e.position())));
                        continue;
                    }
                };
                let where_ = format!("{source}:{}", line(record.position()));
                let id_text = id_index.and_then(|i| record.get(i)).map(str::to_string);
                let id = id_text.clone().filter(|s| !s.is_empty()).unwrap_or(where_);
                let patient = patient_index
                    .and_then(|i| record.get(i))
                    .filter(|s| !s.is_empty())
                    .map_or(id.clone(), str::to_string);
                let text = record.get(text_index).unwrap_or_default().to_string();
                let kept = kept_indexes
                    .iter()
                    .map(|&i| (i.to_string(), Value::String(record.get(i).unwrap_or_default().to_string())))
                    .collect();
                let known = known_from_fields(
                    headers
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| *i != text_index)
                        .filter_map(|(i, h)| Some((h.as_str(), record.get(i)?.to_string()))),
                );
                batch.push(Pending { id, text, kept, patient, known, shell: Shell::Csv { id: id_text } });
                if batch.len() == BATCH {
                    flush(
                        deid,
                        std::mem::take(&mut batch),
                        output,
                        &mut spans,
                        &mut stats,
                        fields,
                        Some(&layout),
                    )?;
                }
            }
            flush(deid, batch, output, &mut spans, &mut stats, fields, Some(&layout))?;
        }
    }
    Ok(stats)
}

/// How CSV rows are written back.
struct CsvLayout {
    delimiter: u8,
    columns: Vec<usize>,
    text_index: usize,
    id_index: Option<usize>,
}

fn deidentify_one(deid: &Deidentifier, pending: &Pending) -> Done {
    let mut session = deid.session(&pending.patient);
    let text = session.apply_with(&pending.text, &pending.known);
    let kept = pending
        .kept
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => Value::String(session.apply_with(s, &pending.known).text),
                // Numbers and structures are not text the detector can read: left out.
                Value::Null | Value::Bool(_) => v.clone(),
                _ => Value::Null,
            };
            (k.clone(), v)
        })
        .collect();
    Done { text, kept }
}

/// De-identifies a batch on every core; results keep their order.
fn run_batch(deid: &Deidentifier, batch: &[Pending]) -> Vec<Done> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(batch.len().max(1));
    if threads <= 1 {
        return batch.iter().map(|p| deidentify_one(deid, p)).collect();
    }
    let chunk = batch.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = batch
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(|p| deidentify_one(deid, p)).collect::<Vec<_>>()))
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
    fields: &StreamFields,
    csv_layout: Option<&CsvLayout>,
) -> std::io::Result<()> {
    let results = run_batch(deid, &batch);
    let mut csv_writer =
        csv_layout.map(|l| csv::WriterBuilder::new().delimiter(l.delimiter).from_writer(Vec::new()));
    for (pending, done) in batch.into_iter().zip(results) {
        record_spans(stats, spans, &pending.id, &done.text.spans)?;
        match pending.shell {
            Shell::Text => output.write_all(done.text.text.as_bytes())?,
            Shell::Json { id } => {
                let mut object = serde_json::Map::new();
                if let Some(id) = id {
                    object.insert(fields.id.clone(), id);
                }
                object.insert(fields.text.clone(), Value::String(done.text.text));
                object.extend(done.kept);
                serde_json::to_writer(&mut *output, &object)?;
                output.write_all(b"\n")?;
            }
            Shell::Csv { id } => {
                let (Some(layout), Some(writer)) = (csv_layout, csv_writer.as_mut()) else { continue };
                let kept: BTreeMap<usize, String> = done
                    .kept
                    .into_iter()
                    .filter_map(|(k, v)| Some((k.parse().ok()?, v.as_str().unwrap_or_default().to_string())))
                    .collect();
                let row: Vec<String> = layout
                    .columns
                    .iter()
                    .map(|&i| {
                        if i == layout.text_index {
                            done.text.text.clone()
                        } else if Some(i) == layout.id_index {
                            id.clone().unwrap_or_default()
                        } else {
                            kept.get(&i).cloned().unwrap_or_default()
                        }
                    })
                    .collect();
                writer.write_record(&row).map_err(std::io::Error::other)?;
            }
        }
    }
    if let Some(writer) = csv_writer {
        output.write_all(&writer.into_inner().map_err(|e| std::io::Error::other(e.to_string()))?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::deid::DeidOptions;

    fn run_with(format: StreamFormat, input: &str, fields: &StreamFields) -> (String, String, StreamStats) {
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
            fields,
        )
        .unwrap();
        (String::from_utf8(out).unwrap(), String::from_utf8(spans).unwrap(), stats)
    }

    #[test]
    fn csv_keeps_delimiter_and_quoted_newlines_and_only_the_columns_asked_for() {
        let input = "\u{feff}id;text;ward;name\nA1;\"Seen by Dr. Helen Schwartz\non 03/14/2024.\";3;Zorbly Quux\nA2;too;many;fields;x\n";
        let fields = StreamFields { keep: vec!["ward".into()], ..StreamFields::default() };
        let (out, spans, stats) = run_with(StreamFormat::Csv, input, &fields);
        // The "name" column is left out; "ward" is kept on request.
        assert_eq!(out, "id;text;ward\nA1;\"Seen by Dr. [NAME]\non [DATE].\";3\n");
        assert_eq!(stats.documents, 1);
        // The ragged row starts on line 4: the quoted note spans lines 2 and 3.
        assert_eq!(stats.failures, vec!["in:4: 5 fields, the header has 4; left out".to_string()]);
        assert!(spans.starts_with("{\"id\":\"A1\",\"spans\":[{\"category\":\"NAME\""), "{spans}");
        assert!(!spans.contains("Schwartz"));
    }

    #[test]
    fn jsonl_keeps_asked_fields_de_identified_and_leaves_bad_lines_out() {
        let input = "{\"id\":\"n1\",\"ward\":\"5B\",\"dob\":\"1950-03-04\",\"note\":\"Dr. Yamamoto\",\"text\":\"Mrs. Okafor called 617-555-0143.\"}\n{broken\n";
        let fields = StreamFields { keep: vec!["ward".into(), "note".into()], ..StreamFields::default() };
        let (out, _, stats) = run_with(StreamFormat::Jsonl, input, &fields);
        let line: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
        assert_eq!(line["text"], "Mrs. [NAME] called [PHONE].");
        assert_eq!(line["ward"], "5B");
        assert_eq!(line["note"], "Dr. [NAME]", "kept fields are de-identified too");
        assert!(line.get("dob").is_none(), "fields not kept are left out");
        assert_eq!(out.lines().count(), 1);
        assert_eq!(stats.failures.len(), 1);
        assert!(!stats.failures[0].contains("broken"));
    }

    #[test]
    fn a_name_the_record_gives_is_found_alone_and_in_lower_case() {
        let input = "{\"id\":\"n1\",\"patient_name\":\"Quorvath, Ilsendra\",\"mrn\":\"88412\",\"text\":\"quorvath tolerated it. Ilsendra asked about MRN 88412 again; quorvath.\"}\n";
        let (out, _, _) = run_with(StreamFormat::Jsonl, input, &StreamFields::default());
        let line: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
        let text = line["text"].as_str().unwrap().to_lowercase();
        assert!(
            !text.contains("quorvath") && !text.contains("ilsendra") && !text.contains("88412"),
            "{text}"
        );
    }

    #[test]
    fn a_line_that_is_not_utf8_is_left_out_and_the_rest_processed() {
        let deid = Deidentifier::new(DeidOptions::default());
        let mut input: Vec<u8> = b"{\"text\":\"Dr. Amadi \xff\"}\n".to_vec();
        input.extend_from_slice(b"{\"text\":\"Seen 03/14/2024.\"}\n");
        let mut out = Vec::new();
        let fields = StreamFields::default();
        let stats = deidentify_stream(
            &deid,
            StreamFormat::Jsonl,
            "in",
            &mut std::io::Cursor::new(input),
            &mut out,
            None,
            &fields,
        )
        .unwrap();
        assert_eq!(stats.failures, vec!["in:1: not valid UTF-8; left out".to_string()]);
        assert_eq!(String::from_utf8(out).unwrap(), "{\"text\":\"Seen [DATE].\"}\n");
    }
}
