//! Reading documents from files, folders and stdin: `.txt`/`.md` are one document each,
//! `.jsonl` one per line, `.csv` one per row. A bad file or row becomes an error item
//! carrying its id; the rest go on. Reading is lazy: one file at a time.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde_json::Value;

/// One document to process.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Document {
    /// Its id: the JSONL/CSV id field, else `file`, `file:line` or `stdin`.
    pub id: String,
    /// Its text.
    pub text: String,
    /// The other fields of its JSONL object or CSV row (CSV values as strings).
    pub fields: serde_json::Map<String, Value>,
}

/// What reading produced: a document, or why one could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputItem {
    /// A document.
    Document(Document),
    /// An input that could not be read; `error` names no patient data, only the problem.
    Failed {
        /// The id the document would have had.
        id: String,
        /// What went wrong.
        error: String,
    },
}

/// Field and column names for structured inputs.
#[derive(Debug, Clone)]
pub struct InputOptions {
    /// JSONL field holding the text.
    pub text_field: String,
    /// JSONL field holding the id.
    pub id_field: String,
    /// CSV column holding the text.
    pub text_column: String,
    /// CSV column holding the id.
    pub id_column: String,
}

impl Default for InputOptions {
    fn default() -> Self {
        InputOptions {
            text_field: "text".into(),
            id_field: "id".into(),
            text_column: "text".into(),
            id_column: "id".into(),
        }
    }
}

/// Streams the documents of `inputs` (files, folders, `-` for stdin) in order. Folders are
/// walked recursively in name order, taking `.txt`, `.md`, `.jsonl` and `.csv` files.
pub fn read_inputs(inputs: &[PathBuf], options: &InputOptions) -> impl Iterator<Item = InputItem> {
    let mut files: VecDeque<Source> = VecDeque::new();
    let mut failed = VecDeque::new();
    for input in inputs {
        if input.as_os_str() == "-" {
            files.push_back(Source::Stdin);
        } else if input.is_dir() {
            match walk_folder(input) {
                Ok(found) => files.extend(found.into_iter().map(Source::File)),
                Err(e) => failed.push_back(InputItem::Failed { id: input.display().to_string(), error: e }),
            }
        } else {
            files.push_back(Source::File(input.clone()));
        }
    }
    Inputs { files, current: None, failed, options: options.clone() }
}

enum Source {
    Stdin,
    File(PathBuf),
}

struct Inputs {
    files: VecDeque<Source>,
    current: Option<Box<dyn Iterator<Item = InputItem>>>,
    failed: VecDeque<InputItem>,
    options: InputOptions,
}

impl Iterator for Inputs {
    type Item = InputItem;

    fn next(&mut self) -> Option<InputItem> {
        if let Some(item) = self.failed.pop_front() {
            return Some(item);
        }
        loop {
            if let Some(current) = &mut self.current {
                if let Some(item) = current.next() {
                    return Some(item);
                }
                self.current = None;
            }
            let source = self.files.pop_front()?;
            self.current = Some(match source {
                Source::Stdin => read_stdin(&self.options),
                Source::File(path) => read_file(&path, &self.options),
            });
        }
    }
}

fn walk_folder(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read folder: {e}"))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    let mut files = Vec::new();
    for path in entries {
        // Symbolic links to folders are not followed: a link loop would never end.
        let is_real_dir = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
        if is_real_dir {
            files.extend(walk_folder(&path)?);
        } else if matches!(extension(&path).as_str(), "txt" | "md" | "jsonl" | "csv") {
            files.push(path);
        }
    }
    Ok(files)
}

fn extension(path: &Path) -> String {
    path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default()
}

fn one(item: InputItem) -> Box<dyn Iterator<Item = InputItem>> {
    Box::new(std::iter::once(item))
}

fn read_file(path: &Path, options: &InputOptions) -> Box<dyn Iterator<Item = InputItem>> {
    let id = path.display().to_string();
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) => return one(InputItem::Failed { id, error: format!("cannot open: {e}") }),
    };
    match extension(path).as_str() {
        "jsonl" => Box::new(JsonlDocuments::new(Box::new(BufReader::new(file)), id, options.clone())),
        "csv" => csv_documents(file, &id, options),
        _ => {
            let mut bytes = Vec::new();
            if let Err(e) = BufReader::new(file).read_to_end(&mut bytes) {
                return one(InputItem::Failed { id, error: format!("cannot read: {e}") });
            }
            one(text_document(id, bytes))
        }
    }
}

/// A whole text as one document: invalid UTF-8 is replaced (with a warning), a BOM
/// dropped, and an empty text is an error.
fn text_document(id: String, bytes: Vec<u8>) -> InputItem {
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            tracing::warn!("{id}: not valid UTF-8; invalid bytes replaced");
            String::from_utf8_lossy(e.as_bytes()).into_owned()
        }
    };
    let text = text.strip_prefix('\u{feff}').map(str::to_string).unwrap_or(text);
    if text.trim().is_empty() {
        InputItem::Failed { id, error: "empty document".into() }
    } else {
        InputItem::Document(Document { id, text, fields: serde_json::Map::new() })
    }
}

/// Stdin: JSON lines when the first non-empty line is a JSON object, else one document.
fn read_stdin(options: &InputOptions) -> Box<dyn Iterator<Item = InputItem>> {
    let mut reader = BufReader::new(std::io::stdin());
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {
                let blank = line.iter().all(u8::is_ascii_whitespace);
                head.extend_from_slice(&line);
                if !blank {
                    break;
                }
            }
            Err(e) => {
                return one(InputItem::Failed { id: "stdin".into(), error: format!("cannot read: {e}") });
            }
        }
    }
    let first_line = String::from_utf8_lossy(&head);
    let is_jsonl = serde_json::from_str::<Value>(first_line.trim()).is_ok_and(|v| v.is_object());
    let rest: Box<dyn BufRead> = Box::new(std::io::Cursor::new(head).chain(reader));
    if is_jsonl {
        Box::new(JsonlDocuments::new(rest, "stdin".into(), options.clone()))
    } else {
        let mut bytes = Vec::new();
        let mut rest = rest;
        if let Err(e) = rest.read_to_end(&mut bytes) {
            return one(InputItem::Failed { id: "stdin".into(), error: format!("cannot read: {e}") });
        }
        one(text_document("stdin".into(), bytes))
    }
}

/// JSON lines, streamed: one document per line with a text field.
struct JsonlDocuments {
    reader: Box<dyn BufRead>,
    source: String,
    line_number: usize,
    options: InputOptions,
}

impl JsonlDocuments {
    fn new(reader: Box<dyn BufRead>, source: String, options: InputOptions) -> Self {
        JsonlDocuments { reader, source, line_number: 0, options }
    }
}

impl Iterator for JsonlDocuments {
    type Item = InputItem;

    fn next(&mut self) -> Option<InputItem> {
        loop {
            let mut line = Vec::new();
            match self.reader.read_until(b'\n', &mut line) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => {
                    return Some(InputItem::Failed {
                        id: format!("{}:{}", self.source, self.line_number + 1),
                        error: format!("cannot read: {e}"),
                    });
                }
            }
            self.line_number += 1;
            let fallback_id = format!("{}:{}", self.source, self.line_number);
            let line = String::from_utf8_lossy(&line);
            let line = line.trim().trim_start_matches('\u{feff}');
            if line.is_empty() {
                continue;
            }
            let value: Value = match serde_json::from_str(line) {
                Ok(value) => value,
                Err(e) => {
                    return Some(InputItem::Failed {
                        id: fallback_id,
                        error: format!("not a JSON object: {} at column {}", e.classify_str(), e.column()),
                    });
                }
            };
            let id = match value.get(&self.options.id_field) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => fallback_id,
            };
            return Some(match value.get(&self.options.text_field) {
                Some(Value::String(text)) if !text.trim().is_empty() => {
                    let mut fields = match value {
                        Value::Object(map) => map,
                        _ => serde_json::Map::new(),
                    };
                    let text = match fields.remove(&self.options.text_field) {
                        Some(Value::String(text)) => text,
                        _ => String::new(),
                    };
                    fields.remove(&self.options.id_field);
                    InputItem::Document(Document { id, text, fields })
                }
                Some(Value::String(_)) => InputItem::Failed { id, error: "empty document".into() },
                _ => InputItem::Failed {
                    id,
                    error: format!("no string field \"{}\"", self.options.text_field),
                },
            });
        }
    }
}

trait ClassifyStr {
    fn classify_str(&self) -> &'static str;
}

impl ClassifyStr for serde_json::Error {
    fn classify_str(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "read error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "unexpected data",
            serde_json::error::Category::Eof => "unexpected end",
        }
    }
}

/// CSV rows: the delimiter (`,`, `;` or tab) is taken from the header line; quoted fields
/// may hold newlines; a BOM is dropped; a ragged row is an error item.
fn csv_documents(file: File, source: &str, options: &InputOptions) -> Box<dyn Iterator<Item = InputItem>> {
    let mut reader = BufReader::new(file);
    let mut header = Vec::new();
    if let Err(e) = reader.read_until(b'\n', &mut header) {
        return one(InputItem::Failed { id: source.into(), error: format!("cannot read: {e}") });
    }
    let header_text = String::from_utf8_lossy(&header);
    let delimiter = sniff_delimiter(&header_text);
    let rest = std::io::Cursor::new(header.clone()).chain(reader);
    let mut csv = csv::ReaderBuilder::new().delimiter(delimiter).flexible(true).from_reader(rest);
    let headers: Vec<String> = match csv.headers() {
        Ok(h) => h.iter().map(|f| f.trim_start_matches('\u{feff}').trim().to_string()).collect(),
        Err(e) => return one(InputItem::Failed { id: source.into(), error: format!("bad CSV header: {e}") }),
    };
    let Some(text_index) = headers.iter().position(|h| *h == options.text_column) else {
        // Column names are not echoed: without a header row they would be a patient's note.
        return one(InputItem::Failed {
            id: source.into(),
            error: format!(
                "no column \"{}\" in the header row ({} columns); see --text-column",
                options.text_column,
                headers.len()
            ),
        });
    };
    let id_index = headers.iter().position(|h| *h == options.id_column);
    let n_columns = headers.len();
    let source = source.to_string();
    Box::new(csv.into_byte_records().enumerate().map(move |(i, record)| {
        // The line the row starts on (quoted newlines counted), as an editor shows it.
        let line = |position: Option<&csv::Position>| position.map_or(i as u64 + 2, csv::Position::line);
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                let id = format!("{source}:{}", line(e.position()));
                return InputItem::Failed { id, error: "unreadable CSV row".into() };
            }
        };
        let fallback_id = format!("{source}:{}", line(record.position()));
        let field = |k: usize| record.get(k).map(|b| String::from_utf8_lossy(b).into_owned());
        if record.len() != n_columns {
            // The id column of a ragged row may hold a piece of the note: use the row number.
            return InputItem::Failed {
                id: fallback_id,
                error: format!("row has {} fields, the header has {n_columns}", record.len()),
            };
        }
        let id = id_index.and_then(field).filter(|s| !s.trim().is_empty()).unwrap_or(fallback_id);
        match field(text_index) {
            Some(text) if !text.trim().is_empty() => {
                let fields = headers
                    .iter()
                    .enumerate()
                    .filter(|(k, _)| *k != text_index && Some(*k) != id_index)
                    .filter_map(|(k, name)| field(k).map(|v| (name.clone(), Value::String(v))))
                    .collect();
                InputItem::Document(Document { id, text, fields })
            }
            _ => InputItem::Failed { id, error: "empty document".into() },
        }
    }))
}

/// The most frequent of `,`, `;` and tab outside quotes in the header line.
pub(crate) fn sniff_delimiter(header: &str) -> u8 {
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

    fn collect(paths: &[PathBuf]) -> Vec<InputItem> {
        read_inputs(paths, &InputOptions::default()).collect()
    }

    fn doc(id: &str, text: &str) -> InputItem {
        InputItem::Document(Document { id: id.into(), text: text.into(), fields: Default::default() })
    }

    fn fields_of(item: &InputItem) -> serde_json::Map<String, Value> {
        match item {
            InputItem::Document(d) => d.fields.clone(),
            InputItem::Failed { .. } => Default::default(),
        }
    }

    #[test]
    fn csv_with_bom_semicolons_quoted_newlines_and_ragged_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.csv");
        std::fs::write(&path, "\u{feff}id;text;ward\nA1;\"Pt seen.\nStable; home\";3\nA2;short\nA3;\"\";2\n")
            .unwrap();
        let items = collect(std::slice::from_ref(&path));
        let InputItem::Document(first) = &items[0] else { panic!("expected a document") };
        assert_eq!((first.id.as_str(), first.text.as_str()), ("A1", "Pt seen.\nStable; home"));
        assert_eq!(fields_of(&items[0]).get("ward"), Some(&Value::String("3".into())));
        assert!(
            matches!(&items[1], InputItem::Failed { id, error } if id.ends_with("notes.csv:4") && error.contains("2 fields"))
        );
        assert!(
            matches!(&items[2], InputItem::Failed { id, error } if id == "A3" && error == "empty document")
        );
        assert_eq!(items.len(), 3);
    }

    #[test]
    fn tab_delimited_and_missing_column() {
        let dir = tempfile::tempdir().unwrap();
        let tsv = dir.path().join("a.csv");
        std::fs::write(&tsv, "text\tid\nfever, cough\t9\n").unwrap();
        assert_eq!(collect(std::slice::from_ref(&tsv)), vec![doc("9", "fever, cough")]);
        let other = dir.path().join("b.csv");
        std::fs::write(&other, "note,id\nx,1\n").unwrap();
        let items = collect(std::slice::from_ref(&other));
        assert!(matches!(&items[0], InputItem::Failed { error, .. } if error.contains("no column \"text\"")));
    }

    #[test]
    fn jsonl_bad_lines_are_reported_and_the_rest_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        std::fs::write(
            &path,
            "{\"id\":\"r1\",\"text\":\"one\"}\nnot json\n\n{\"id\":7,\"text\":\"two\"}\n{\"note\":\"x\"}\n",
        )
        .unwrap();
        let items = collect(std::slice::from_ref(&path));
        assert_eq!(items[0], doc("r1", "one"));
        let fallback = format!("{}:2", path.display());
        assert!(matches!(&items[1], InputItem::Failed { id, .. } if *id == fallback));
        assert_eq!(items[2], doc("7", "two"));
        assert!(matches!(&items[3], InputItem::Failed { error, .. } if error.contains("no string field")));
        assert_eq!(items.len(), 4);
    }

    #[test]
    fn folders_are_walked_in_order_and_text_files_are_one_document() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("b.txt"), "second").unwrap();
        std::fs::write(dir.path().join("a.md"), "first").unwrap();
        std::fs::write(dir.path().join("sub/c.txt"), b"third \xff").unwrap();
        std::fs::write(dir.path().join("image.png"), "skip").unwrap();
        std::fs::write(dir.path().join("empty.txt"), "  \n").unwrap();
        let items = collect(&[dir.path().to_path_buf()]);
        let texts: Vec<String> = items
            .iter()
            .map(|i| match i {
                InputItem::Document(d) => d.text.clone(),
                InputItem::Failed { error, .. } => format!("error: {error}"),
            })
            .collect();
        assert_eq!(texts, vec!["first", "second", "error: empty document", "third \u{fffd}"]);
    }

    #[test]
    fn folder_link_loops_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "note").unwrap();
        std::os::unix::fs::symlink(dir.path(), dir.path().join("loop")).unwrap();
        let items = collect(&[dir.path().to_path_buf()]);
        assert_eq!(items.len(), 1);
    }

    #[test]
    fn a_missing_column_is_reported_without_echoing_the_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no-header.csv");
        std::fs::write(&path, "Pt seen for chest pain,stable\nsecond,row\n").unwrap();
        let items = collect(std::slice::from_ref(&path));
        let InputItem::Failed { error, .. } = &items[0] else { panic!("expected an error") };
        assert!(error.contains("2 columns") && !error.contains("chest pain"), "{error}");
    }

    #[test]
    fn unreadable_file_is_an_error_item() {
        let items = collect(&[PathBuf::from("/no/such/file.txt")]);
        assert!(matches!(&items[0], InputItem::Failed { id, .. } if id == "/no/such/file.txt"));
    }
}
