//! `medllm serve` as users run it: refusals before the model loads, and, on the real
//! model, the official `ollama` and `openai` Python clients and the web page in headless
//! Chromium (scripts/setup.sh installs them; scripts/test.sh runs these tests).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::real_model::real_model;
use crate::{medllm, stderr_of, tiny_model};

const KEY: &str = "test-key-4f1c";

/// A `medllm serve` process on a free loopback port, stopped when dropped.
struct Served {
    child: Child,
    base: String,
    name: String,
    /// What the server printed before it listened (notes).
    before_listening: Vec<String>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(model: &Path, extra: &[&str]) -> Served {
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("medllm"))
        .arg("serve")
        .arg("-m")
        .arg(model)
        .args(["--listen", "127.0.0.1:0", "--api-key", KEY])
        .args(extra)
        .env_remove("MEDLLM_LOG")
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let (name, addr) = loop {
        let Some(Ok(line)) = lines.next() else {
            let _ = child.kill();
            panic!("medllm serve stopped before listening:\n{}", seen.join("\n"));
        };
        if let Some(rest) = line.strip_prefix("medllm serve: ")
            && let Some((name, addr)) = rest.split_once(" listening on ")
        {
            break (name.to_string(), addr.trim().to_string());
        }
        seen.push(line);
    };
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Served { child, base: format!("http://{addr}"), name, before_listening: seen }
}

fn python() -> String {
    std::env::var("MEDLLM_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python").join(name)
}

#[test]
fn serve_refuses_an_open_address_without_an_api_key() {
    let output = medllm()
        .args(["serve", "--listen", "0.0.0.0:0", "-m"])
        .arg(tiny_model())
        .env_remove("MEDLLM_API_KEY")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = stderr_of(&output);
    assert!(stderr.contains("without an API key") && stderr.contains("--api-key"), "{stderr}");
}

#[test]
fn serve_answers_on_the_tiny_model_and_names_it_after_the_file() {
    let served = serve(tiny_model(), &["--parallel", "1"]);
    assert_eq!(served.name, "tiny");
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut reply = agent
        .get(format!("{}/api/tags", served.base))
        .header("authorization", &format!("Bearer {KEY}"))
        .call()
        .unwrap();
    assert_eq!(reply.status().as_u16(), 200);
    let tags: serde_json::Value = serde_json::from_str(&reply.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(tags["models"][0]["name"], "tiny");
    let reply = agent.get(format!("{}/api/tags", served.base)).call().unwrap();
    assert_eq!(reply.status().as_u16(), 401);
}

/// `prompt_eval_count` of a one-message `/api/chat` request: how many tokens the prompt the
/// server laid out has.
fn chat_prompt_tokens(served: &Served) -> u64 {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let body = serde_json::json!({"model": served.name, "stream": false,
        "messages": [{"role": "user", "content": "the patient"}],
        "options": {"temperature": 0, "num_predict": 2}});
    let mut reply = agent
        .post(format!("{}/api/chat", served.base))
        .header("authorization", &format!("Bearer {KEY}"))
        .header("content-type", "application/json")
        .send(body.to_string().as_str())
        .unwrap();
    assert_eq!(reply.status().as_u16(), 200);
    let answer: serde_json::Value =
        serde_json::from_str(&reply.body_mut().read_to_string().unwrap()).unwrap();
    answer["prompt_eval_count"].as_u64().unwrap()
}

#[test]
fn serve_lays_out_chat_in_the_chosen_template_and_notes_a_bare_model_once() {
    let dir = tempfile::tempdir().unwrap();
    let bare = dir.path().join("bare.gguf");
    let spec = medllm::gguf::TinyModelSpec { chat_template: false, ..Default::default() };
    medllm::gguf::write_tiny_model(&bare, &spec).unwrap();
    let own = chat_prompt_tokens(&serve(tiny_model(), &["--parallel", "1"]));
    let named = serve(&bare, &["--parallel", "1", "--chat-template", "chatml"]);
    assert!(
        named.before_listening.iter().all(|l| !l.contains("no chat template")),
        "{:?}",
        named.before_listening
    );
    assert_eq!(chat_prompt_tokens(&named), own, "ChatML named on the bare copy is the tiny model's own");
    let plain = serve(&bare, &["--parallel", "1"]);
    let notes = plain.before_listening.iter().filter(|l| l.contains("no chat template")).count();
    assert_eq!(notes, 1, "{:?}", plain.before_listening);
    assert!(chat_prompt_tokens(&plain) < own, "plain text has no ChatML markers");
}

#[test]
fn serve_refuses_a_context_too_small_for_a_prompt_before_listening() {
    let output = medllm()
        .args(["serve", "-c", "1", "--listen", "127.0.0.1:0", "-m"])
        .arg(tiny_model())
        .env_remove("MEDLLM_API_KEY")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = stderr_of(&output);
    assert!(stderr.contains("smallest chat prompt") && stderr.contains("raise --ctx"), "{stderr}");
    assert!(!stderr.contains("listening"), "{stderr}");
}

/// The status of the answer to `request` sent on a fresh connection.
fn status_of(addr: &str, request: &str) -> u16 {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[test]
fn serve_flags_set_allowed_hosts_and_the_header_timeout() {
    let served =
        serve(tiny_model(), &["--parallel", "1", "--header-timeout", "1", "--allowed-host", "box.internal"]);
    let addr = served.base.strip_prefix("http://").unwrap().to_string();
    let get = |host: &str| {
        status_of(
            &addr,
            &format!(
                "GET /api/tags HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {KEY}\r\nConnection: close\r\n\r\n"
            ),
        )
    };
    assert_eq!(get("box.internal"), 200);
    assert_eq!(get(&addr), 200);
    assert_eq!(get("evil.example"), 403);
    let post = format!(
        "POST /v1/deid HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {KEY}\r\nContent-Type: text/plain\r\nContent-Length: 12\r\nConnection: close\r\n\r\n{{\"text\":\"x\"}}"
    );
    assert_eq!(status_of(&addr, &post), 415);
    // Half a request is not held: the connection is closed after --header-timeout.
    let mut stream = TcpStream::connect(&addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    stream.write_all(b"GET /api/tags HTTP/1.1\r\nHost: box.int").unwrap();
    let mut buffer = [0u8; 16];
    assert_eq!(stream.read(&mut buffer).expect("closed before the read timeout"), 0);
}

#[test]
#[ignore = "needs the real model and the ollama/openai Python packages (scripts/setup.sh); run by scripts/test.sh"]
fn serve_works_with_the_official_ollama_and_openai_clients() {
    let served = serve(&real_model(), &["--parallel", "4", "--threads", "2"]);
    let output = Command::new(python())
        .arg(script("serve_clients.py"))
        .args([&served.base, &served.name, KEY])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", stderr_of(&output));
    assert!(stdout.contains("64 requests, 8 at a time: 64 valid"), "{stdout}");
    assert!(stdout.contains("checks passed"), "{stdout}");
}

#[test]
#[ignore = "needs the real model, Chromium and selenium (scripts/setup.sh); run by scripts/test.sh"]
fn serve_page_extracts_in_headless_chromium() {
    let served = serve(&real_model(), &["--parallel", "2", "--threads", "2"]);
    // Kept as a test artifact beside the build.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let shot = target.join("test-artifacts").join("serve-page.png");
    let _ = std::fs::remove_file(&shot);
    let output = Command::new(python())
        .arg(script("serve_page.py"))
        .arg(&served.base)
        .arg(KEY)
        .arg(&shot)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", stderr_of(&output));
    assert!(stdout.contains("page checks passed"), "{stdout}");
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{} is not a screenshot",
        shot.display()
    );
}
