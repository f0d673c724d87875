//! Outputs as users aim them: never over an input, into FIFOs and devices without replacing
//! them, and after Ctrl-C or SIGTERM either the finished records or nothing, never a
//! hidden temporary file.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use medllm::extract::ExtractionRecord;

use crate::{medllm, stderr_of, tiny_model};

const AGE_SCHEMA: &str = r#"{"type":"object","properties":{"age":{"type":"integer"},"drug":{"type":"string","maxLength":12}},"required":["age","drug"]}"#;

fn write_docs(path: &Path, n: usize) {
    let mut text = String::new();
    for i in 0..n {
        let doc = serde_json::json!({"id": format!("d{i}"), "text": format!("Patient {i}, a 45 year old male with chest pain, takes aspirin 81 mg daily.")});
        text.push_str(&format!("{doc}\n"));
    }
    std::fs::write(path, text).unwrap();
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn spawn(args: &[&std::ffi::OsStr]) -> Child {
    std::process::Command::new(assert_cmd::cargo::cargo_bin("medllm"))
        .args(args)
        .env_remove("MEDLLM_MODEL")
        .env_remove("MEDLLM_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn signal(child: &Child, name: &str) {
    let status =
        std::process::Command::new("kill").arg(format!("-{name}")).arg(child.id().to_string()).status();
    assert!(status.unwrap().success(), "kill -{name}");
}

/// Waits (polling, bounded) until `ready` holds, failing if the child ended first.
fn wait_until(child: &mut Child, what: &str, mut ready: impl FnMut() -> bool) {
    for _ in 0..24_000 {
        if ready() {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before {what}");
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    panic!("{what} never happened");
}

/// The hidden temporary file an output is written through, if there is one.
fn temporary_of(dir: &Path, output_name: &str) -> Option<PathBuf> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).find(|p| {
        let name = p.file_name().unwrap().to_string_lossy();
        name.starts_with(&format!(".{output_name}.")) && name.ends_with(".partial")
    })
}

#[test]
fn extract_refuses_an_output_that_is_an_input_by_any_name() {
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("docs.jsonl");
    write_docs(&docs, 3);
    let before = std::fs::read(&docs).unwrap();
    let schema = dir.path().join("s.json");
    std::fs::write(&schema, AGE_SCHEMA).unwrap();
    std::os::unix::fs::symlink(&docs, dir.path().join("link.jsonl")).unwrap();
    std::fs::hard_link(&docs, dir.path().join("hard.jsonl")).unwrap();
    let folder = dir.path().join("notes");
    std::fs::create_dir(&folder).unwrap();
    std::fs::copy(&docs, folder.join("a.jsonl")).unwrap();
    let cases: [(&str, PathBuf, &str); 5] = [
        ("docs.jsonl", docs.clone(), "is the input"),
        ("link.jsonl", docs.clone(), "is the input"),
        ("hard.jsonl", docs.clone(), "is the input"),
        ("s.json", docs.clone(), "is the input"),
        ("notes/out.jsonl", folder.clone(), "inside the input folder"),
    ];
    for (out, input, expected) in cases {
        // The model does not exist: the output must be refused before anything loads.
        let output = medllm()
            .args(["extract", "-m", "/no/such/model.gguf", "--schema"])
            .arg(&schema)
            .arg("-o")
            .arg(dir.path().join(out))
            .arg(&input)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{out}");
        let err = stderr_of(&output);
        assert!(err.contains(expected), "{out}: {err}");
    }
    // Stdin redirected from the output file is that file too.
    let output = std::process::Command::new(assert_cmd::cargo::cargo_bin("medllm"))
        .args(["extract", "-m", "/no/such/model.gguf", "--schema"])
        .arg(&schema)
        .arg("-o")
        .arg(&docs)
        .stdin(std::fs::File::open(&docs).unwrap())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr_of(&output).contains("is the input"), "{}", stderr_of(&output));
    assert_eq!(std::fs::read(&docs).unwrap(), before, "the documents are untouched");
    assert_eq!(names_in(dir.path()), ["docs.jsonl", "hard.jsonl", "link.jsonl", "notes", "s.json"]);
}

#[test]
fn other_commands_refuse_outputs_that_are_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus");
    let output = medllm().args(["synth", "-q", "--n", "5", "-o"]).arg(&corpus).output().unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let documents = corpus.join("documents.jsonl");
    let before = std::fs::read(&documents).unwrap();
    // eval synth-mcq over its own input.
    let output =
        medllm().args(["eval", "synth-mcq"]).arg(&documents).arg("-o").arg(&documents).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr_of(&output).contains("is the input"), "{}", stderr_of(&output));
    // prepare into the folder it reads.
    let output =
        medllm().arg("prepare").arg(&corpus).arg("-o").arg(corpus.join("train-data")).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr_of(&output).contains("inside the input folder"), "{}", stderr_of(&output));
    // deid with --spans and --out naming one file.
    let notes = dir.path().join("note.txt");
    std::fs::write(&notes, "Seen by Dr. Smith on 03/14/2024.").unwrap();
    let spans = dir.path().join("spans.jsonl");
    let output =
        medllm().arg("deid").arg(&notes).arg("-o").arg(&spans).arg("--spans").arg(&spans).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    // finetune --full whose base is the model.gguf it would write, refused before loading.
    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    std::fs::copy(tiny_model(), run.join("model.gguf")).unwrap();
    let output = medllm()
        .args(["finetune", "--full", "-m"])
        .arg(run.join("model.gguf"))
        .arg("--train")
        .arg(&documents)
        .arg("-o")
        .arg(&run)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr_of(&output).contains("is the input"), "{}", stderr_of(&output));
    assert_eq!(std::fs::read(run.join("model.gguf")).unwrap(), std::fs::read(tiny_model()).unwrap());
    assert_eq!(std::fs::read(&documents).unwrap(), before);
    assert!(!spans.exists() && !corpus.join("train-data").exists());
}

#[test]
fn an_output_linked_to_dev_null_stays_a_link_to_the_device() {
    let dir = tempfile::tempdir().unwrap();
    let note = dir.path().join("note.txt");
    std::fs::write(&note, "Seen by Dr. Smith on 03/14/2024.").unwrap();
    let link = dir.path().join("out.txt");
    std::os::unix::fs::symlink("/dev/null", &link).unwrap();
    let output = medllm().args(["deid", "-q"]).arg(&note).arg("-o").arg(&link).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("/dev/null"), "the link was not replaced");
    assert!(std::fs::metadata("/dev/null").unwrap().file_type().is_char_device());
    assert_eq!(names_in(dir.path()), ["note.txt", "out.txt"]);
}

#[test]
fn outputs_into_fifos_are_streamed_and_the_fifo_stays() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("out.fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let read_all = |fifo: &Path| {
        let fifo = fifo.to_path_buf();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    // A record stream.
    let reader = read_all(&fifo);
    let output = medllm()
        .args(["deid", "-q", "-o"])
        .arg(&fifo)
        .write_stdin("{\"id\":\"a\",\"text\":\"Seen by Dr. Smith.\"}\n")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let text = String::from_utf8(reader.join().unwrap()).unwrap();
    assert!(text.contains("\"id\":\"a\"") && !text.contains("Smith"), "{text}");
    // A file llama.cpp writes by path.
    let reader = read_all(&fifo);
    let output = medllm()
        .args(["quantize", "-q"])
        .arg(tiny_model())
        .arg(&fifo)
        .args(["--type", "q8_0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let received = dir.path().join("received.gguf");
    std::fs::write(&received, reader.join().unwrap()).unwrap();
    let gguf = medllm::gguf::GgufFile::open(&received).unwrap();
    assert_eq!(gguf.tensors.len(), 21);
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(), "still a FIFO");
    assert_eq!(names_in(dir.path()), ["out.fifo", "received.gguf"]);
}

#[test]
fn ctrl_c_during_extract_keeps_the_finished_records_whole_and_no_hidden_file() {
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("docs.jsonl");
    write_docs(&docs, 60);
    let schema = dir.path().join("s.json");
    std::fs::write(&schema, AGE_SCHEMA).unwrap();
    let out = dir.path().join("out.jsonl");
    let mut child = spawn(&[
        "extract".as_ref(),
        "-m".as_ref(),
        tiny_model().as_os_str(),
        "--schema".as_ref(),
        schema.as_os_str(),
        "-P".as_ref(),
        "2".as_ref(),
        "--max-tokens".as_ref(),
        "48".as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
        docs.as_os_str(),
    ]);
    // Records reach the temporary file as they finish: interrupt once one has.
    let mut seen = 0;
    wait_until(&mut child, "a record finished", || {
        seen = temporary_of(dir.path(), "out.jsonl")
            .and_then(|t| std::fs::read(t).ok())
            .map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count());
        seen > 0
    });
    signal(&child, "INT");
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", stderr_of(&output));
    assert!(stderr_of(&output).contains("interrupted"), "{}", stderr_of(&output));
    let text = std::fs::read_to_string(&out).unwrap();
    let records: Vec<ExtractionRecord> =
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    assert!(text.ends_with('\n'), "no partial line");
    assert!(records.len() >= seen && records.len() < 60, "{} records, {seen} seen", records.len());
    let mut ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), records.len(), "each record once");
    assert_eq!(names_in(dir.path()), ["docs.jsonl", "out.jsonl", "s.json"], "no hidden file left");
}

#[test]
fn sigterm_during_quantize_leaves_no_hidden_file() {
    let dir = tempfile::tempdir().unwrap();
    // Large enough that quantizing takes far longer than the signal takes to arrive.
    let model = dir.path().join("wide.gguf");
    let spec = medllm::gguf::TinyModelSpec {
        n_embd: 256,
        n_ff: 1024,
        n_layer: 16,
        n_head: 4,
        n_head_kv: 4,
        ..Default::default()
    };
    medllm::gguf::write_tiny_model(&model, &spec).unwrap();
    let out = dir.path().join("q.gguf");
    let mut child = spawn(&[
        "quantize".as_ref(),
        "-t".as_ref(),
        "1".as_ref(),
        model.as_os_str(),
        out.as_os_str(),
        "--type".as_ref(),
        "q4_k_m".as_ref(),
    ]);
    wait_until(&mut child, "the temporary output appeared", || temporary_of(dir.path(), "q.gguf").is_some());
    signal(&child, "TERM");
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", stderr_of(&output));
    assert_eq!(names_in(dir.path()), ["wide.gguf"], "neither the output nor its temporary file");
}
