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
    // eval deid's reports over the gold, or over each other.
    let output = medllm()
        .args(["eval", "deid", "--gold"])
        .arg(&documents)
        .arg("--leaks")
        .arg(&documents)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr_of(&output).contains("is the input"), "{}", stderr_of(&output));
    let report = dir.path().join("report.jsonl");
    let output = medllm()
        .args(["eval", "deid", "--gold"])
        .arg(&documents)
        .arg("--misses")
        .arg(&report)
        .arg("--leaks")
        .arg(dir.path().join(".").join("report.jsonl"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr_of(&output).contains("the same file"), "{}", stderr_of(&output));
    // serve's audit log over the model it serves, refused before it loads or listens (the
    // timeout only ends a run that would otherwise serve forever).
    let model = dir.path().join("served.gguf");
    std::fs::copy(tiny_model(), &model).unwrap();
    let output = medllm()
        .args(["serve", "--listen", "127.0.0.1:0", "-m"])
        .arg(&model)
        .arg("--audit-log")
        .arg(&model)
        .timeout(std::time::Duration::from_secs(120))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr_of(&output));
    assert!(stderr_of(&output).contains("is the input"), "{}", stderr_of(&output));
    assert_eq!(std::fs::read(&model).unwrap(), std::fs::read(tiny_model()).unwrap());
    assert_eq!(std::fs::read(&documents).unwrap(), before);
    assert!(!spans.exists() && !corpus.join("train-data").exists() && !report.exists());
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

/// The child's stderr, line by line as it comes, so that a test can wait for a message.
struct StderrLines {
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl StderrLines {
    fn of(child: &mut Child) -> StderrLines {
        use std::io::BufRead;
        let stderr = child.stderr.take().expect("stderr is piped");
        let (send, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        StderrLines { lines, seen: Vec::new() }
    }

    /// Waits (bounded) for a line containing `needle`; fails if stderr ends first.
    fn wait_for(&mut self, needle: &str) {
        loop {
            match self.lines.recv_timeout(std::time::Duration::from_secs(120)) {
                Ok(line) => {
                    let found = line.contains(needle);
                    self.seen.push(line);
                    if found {
                        return;
                    }
                }
                Err(_) => panic!("no line with {needle:?} on stderr: {:?}", self.seen),
            }
        }
    }

    /// Everything printed, once the child has ended.
    fn rest(mut self) -> String {
        self.seen.extend(self.lines.iter());
        self.seen.join("\n")
    }
}

/// Whether process `pid` is blocked in `read` on its stdin (having consumed all sent so far).
fn blocked_reading_stdin(pid: u32) -> bool {
    #[cfg(target_arch = "x86_64")]
    const READ: &str = "0";
    #[cfg(target_arch = "aarch64")]
    const READ: &str = "63";
    let syscall = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
    let mut fields = syscall.split_whitespace();
    fields.next() == Some(READ) && fields.next() == Some("0x0")
}

/// `medllm deid -o OUT` reading JSON lines from a pipe the test writes to, once it has read
/// `first` and waits for more (its signal handler is then installed).
fn deid_from_a_pipe(
    dir: &Path,
    out: &Path,
    first: std::ops::Range<usize>,
) -> (Child, std::process::ChildStdin) {
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("medllm"))
        .args(["deid", "-q", "-o"])
        .arg(out)
        .env_remove("MEDLLM_MODEL")
        .env_remove("MEDLLM_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    send_notes(&mut stdin, first);
    let name = out.file_name().unwrap().to_str().unwrap().to_owned();
    let pid = child.id();
    wait_until(&mut child, "deid read the first notes", || {
        temporary_of(dir, &name).is_some() && blocked_reading_stdin(pid)
    });
    (child, stdin)
}

fn send_notes(stdin: &mut std::process::ChildStdin, ids: std::ops::Range<usize>) {
    use std::io::Write;
    let mut lines = String::new();
    for i in ids {
        let note = serde_json::json!({"id": format!("d{i}"), "text": format!("Seen by Dr. Smith on 03/14/2024 for visit {i}.")});
        lines.push_str(&format!("{note}\n"));
    }
    stdin.write_all(lines.as_bytes()).unwrap();
    stdin.flush().unwrap();
}

/// Waits for the child to end while `stdin` stays open (closing it would be an end of input).
fn wait_keeping_stdin_open(child: &mut Child, stdin: std::process::ChildStdin) -> std::process::ExitStatus {
    for _ in 0..24_000 {
        if let Some(status) = child.try_wait().unwrap() {
            drop(stdin);
            return status;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    panic!("the run never ended");
}

#[test]
fn ctrl_c_during_deid_keeps_the_records_read_whole_and_in_order_and_no_hidden_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let (mut child, mut stdin) = deid_from_a_pipe(dir.path(), &out, 0..5);
    let mut stderr = StderrLines::of(&mut child);
    signal(&child, "INT");
    stderr.wait_for("stopping after the work in progress");
    // Notes sent after Ctrl-C: at most the one being read when it stops is done.
    send_notes(&mut stdin, 5..8);
    drop(stdin);
    let status = child.wait().unwrap();
    let err = stderr.rest();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted: the"), "{err}");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.ends_with('\n'), "whole lines only");
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let ids: Vec<&str> = lines.iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert!(ids.starts_with(&["d0", "d1", "d2", "d3", "d4"]) && ids.len() <= 6, "{ids:?}");
    assert!(!ids.contains(&"d6") && !ids.contains(&"d7"), "{ids:?}");
    assert!(lines.iter().all(|l| !l["text"].as_str().unwrap().contains("Smith")), "{text}");
    assert_eq!(names_in(dir.path()), ["out.jsonl"], "no hidden file left");
}

#[test]
fn a_second_ctrl_c_quits_at_once_leaving_the_old_output_and_no_hidden_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    std::fs::write(&out, b"{\"id\":\"from an earlier run\"}\n").unwrap();
    let (mut child, stdin) = deid_from_a_pipe(dir.path(), &out, 0..5);
    let mut stderr = StderrLines::of(&mut child);
    signal(&child, "INT");
    stderr.wait_for("stopping after the work in progress");
    // Still waiting for input, so only the second signal can end it.
    signal(&child, "INT");
    let status = wait_keeping_stdin_open(&mut child, stdin);
    let err = stderr.rest();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("removing unfinished outputs"), "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), b"{\"id\":\"from an earlier run\"}\n", "left as it was");
    assert_eq!(names_in(dir.path()), ["out.jsonl"], "no hidden file left");
}

#[test]
fn ctrl_c_during_finetune_writes_a_checkpoint_and_exits_130() {
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("train.jsonl");
    let mut lines = String::new();
    for i in 0..8 {
        let example = serde_json::json!({"messages": [
            {"role": "user", "content": format!("What dose of aspirin does patient {i} take?")},
            {"role": "assistant", "content": "The patient takes aspirin 81 mg daily."}]});
        lines.push_str(&format!("{example}\n"));
    }
    std::fs::write(&train, lines).unwrap();
    let run = dir.path().join("run");
    let mut child = spawn(&[
        "finetune".as_ref(),
        "-v".as_ref(),
        "-m".as_ref(),
        tiny_model().as_os_str(),
        "--train".as_ref(),
        train.as_os_str(),
        "-o".as_ref(),
        run.as_os_str(),
        "-c".as_ref(),
        "256".as_ref(),
        "--lora-rank".as_ref(),
        "4".as_ref(),
        "-t".as_ref(),
        "1".as_ref(),
        "--epochs".as_ref(),
        "100000".as_ref(),
    ]);
    let mut stderr = StderrLines::of(&mut child);
    // Steps are printed once training runs, long after the handler is installed.
    stderr.wait_for("step 1/");
    signal(&child, "INT");
    let status = child.wait().unwrap();
    let err = stderr.rest();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("continue with --resume"), "{err}");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("checkpoint/state.json")).unwrap()).unwrap();
    assert!(state["step"].as_u64().unwrap() >= 1, "{state}");
    let adapter = medllm::gguf::GgufFile::open(&run.join("adapter.gguf")).unwrap();
    assert!(!adapter.tensors.is_empty());
    let hidden: Vec<String> = names_in(&run).into_iter().filter(|n| n.starts_with('.')).collect();
    assert!(hidden.is_empty(), "{hidden:?}");
}
