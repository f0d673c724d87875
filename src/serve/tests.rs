//! The server on the tiny test model, over real TCP: endpoints, errors, limits,
//! authentication, the checks on headers (with raw sockets), the audit log, prefix reuse
//! and its scopes, and cancellation.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::audit::hmac_sha256;
use super::guard::{RequestPolicy, same_origin};
use super::{ServeError, ServeOptions, Server, check_bind, default_model_name};
use crate::test_support::tiny_model_path;

struct TestServer {
    addr: SocketAddr,
    server: Option<Server>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // The runtime (and its connections) first, then the engine.
        self.runtime.take();
        self.server.take();
    }
}

fn start(options: ServeOptions) -> TestServer {
    let server = Server::start(tiny_model_path(), ServeOptions { threads: 1, ..options }).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(server.serve(listener, std::future::pending()));
    TestServer { addr, server: Some(server), runtime: Some(runtime) }
}

fn options() -> ServeOptions {
    ServeOptions {
        name: "tiny".into(),
        parallel: 2,
        ctx_per_sequence: 1024,
        max_tokens: 64,
        ..ServeOptions::default()
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

/// Status, headers of interest and body text of a request.
struct Reply {
    status: u16,
    body: String,
    retry_after: Option<String>,
    content_type: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

fn read(mut response: ureq::http::Response<ureq::Body>) -> Reply {
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let retry_after = header("retry-after");
    let content_type = header("content-type").unwrap_or_default();
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().unwrap();
    Reply { status, body, retry_after, content_type }
}

impl TestServer {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn get(&self, path: &str) -> Reply {
        read(agent().get(self.url(path)).call().unwrap())
    }

    fn post(&self, path: &str, body: &str) -> Reply {
        read(agent().post(self.url(path)).header("content-type", "application/json").send(body).unwrap())
    }

    fn post_json(&self, path: &str, body: &Value) -> Reply {
        self.post(path, &body.to_string())
    }

    fn metric(&self, name: &str) -> f64 {
        let text = self.get("/metrics").body;
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from /metrics"))
    }

    /// Waits (up to a minute: this is not a timing check) until `done` holds.
    fn wait_for(&self, what: &str, mut done: impl FnMut(&TestServer) -> bool) {
        let until = Instant::now() + Duration::from_secs(60);
        while !done(self) {
            assert!(Instant::now() < until, "gave up waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn person_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
            "sex": {"type": "string", "enum": ["male", "female", "unknown"]},
            "drugs": {"type": "array", "maxItems": 3, "items": {"type": "string", "maxLength": 12}}
        },
        "required": ["age", "sex", "drugs"],
        "additionalProperties": false
    })
}

fn validates(schema: &Value, value: &Value) -> bool {
    jsonschema::validator_for(schema).unwrap().is_valid(value)
}

#[test]
fn serve_lists_the_model_under_its_name_in_both_apis() {
    let server = start(options());
    let version = server.get("/api/version").json();
    assert_eq!(version["version"], env!("CARGO_PKG_VERSION"));
    let tags = server.get("/api/tags").json();
    assert_eq!(tags["models"][0]["name"], "tiny");
    assert_eq!(tags["models"][0]["details"]["format"], "gguf");
    let bytes = std::fs::read(tiny_model_path()).unwrap();
    assert_eq!(tags["models"][0]["digest"], format!("{:x}", Sha256::digest(&bytes)));
    assert_eq!(tags["models"][0]["size"], bytes.len() as u64);
    let models = server.get("/v1/models").json();
    assert_eq!(models["data"][0]["id"], "tiny");
    let show = server.post_json("/api/show", &json!({"model": "tiny"}));
    assert_eq!(show.status, 200);
    assert_eq!(show.json()["details"]["family"], "llama");
    let health = server.get("/healthz").json();
    assert_eq!(health["status"], "ok");
}

#[test]
fn serve_streams_the_same_text_it_answers_whole() {
    let server = start(options());
    let request = |stream: bool| {
        json!({"model": "tiny", "messages": [{"role": "user", "content": "Patient has a cough."}],
               "stream": stream, "options": {"temperature": 0, "num_predict": 24}})
    };
    let whole = server.post_json("/api/chat", &request(false));
    assert_eq!(whole.status, 200, "{}", whole.body);
    let whole = whole.json();
    assert_eq!(whole["done"], true);
    assert!(whole["eval_count"].as_u64().unwrap() <= 24);
    let streamed = server.post_json("/api/chat", &request(true));
    assert_eq!(streamed.status, 200);
    assert!(streamed.content_type.starts_with("application/x-ndjson"), "{}", streamed.content_type);
    let lines: Vec<Value> = streamed.body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines.len() >= 2, "{}", streamed.body);
    assert!(lines[..lines.len() - 1].iter().all(|l| l["done"] == false));
    assert_eq!(lines.last().unwrap()["done"], true);
    let text: String = lines.iter().map(|l| l["message"]["content"].as_str().unwrap()).collect();
    assert_eq!(text, whole["message"]["content"].as_str().unwrap());

    // The same in OpenAI's shapes: one completion, then server-sent events.
    let request = |stream: bool| {
        json!({"model": "tiny", "messages": [{"role": "user", "content": "Patient has a cough."}],
               "stream": stream, "temperature": 0, "max_tokens": 24})
    };
    let completion = server.post_json("/v1/chat/completions", &request(false)).json();
    assert_eq!(completion["object"], "chat.completion");
    let content = completion["choices"][0]["message"]["content"].as_str().unwrap().to_string();
    assert_eq!(content, text, "Ollama and OpenAI endpoints decode alike");
    let events = server.post_json("/v1/chat/completions", &request(true));
    assert!(events.content_type.starts_with("text/event-stream"));
    let data: Vec<&str> = events.body.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    assert_eq!(*data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> =
        data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
    let streamed: String =
        chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(streamed, content);
    assert!(chunks.last().unwrap()["choices"][0]["finish_reason"].is_string());
}

#[test]
fn serve_structured_output_follows_the_schema_even_from_a_random_model() {
    let server = start(ServeOptions { max_tokens: 200, ..options() });
    let schema = person_schema();
    for seed in 0..3 {
        let reply = server.post_json(
            "/api/chat",
            &json!({"model": "tiny", "messages": [{"role": "user", "content": "45 yo male on aspirin"}],
                    "format": schema, "stream": false, "options": {"temperature": 1.0, "seed": seed}}),
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
        let content: Value =
            serde_json::from_str(reply.json()["message"]["content"].as_str().unwrap()).unwrap();
        assert!(validates(&schema, &content), "{content}");
    }
    let reply = server.post_json(
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "45 yo male"}], "temperature": 0,
                "response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": schema, "strict": true}}}),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let content: Value =
        serde_json::from_str(reply.json()["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert!(validates(&schema, &content), "{content}");
    let reply = server.post_json(
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 60, "temperature": 0,
                "response_format": {"type": "json_object"}}),
    );
    let content = reply.json()["choices"][0]["message"]["content"].as_str().unwrap().to_string();
    // Cut by max_tokens or complete, it is the start of a JSON object.
    assert!(content.starts_with('{'), "{content}");
}

#[test]
fn serve_errors_are_json_with_the_right_status() {
    let server = start(ServeOptions { max_body_bytes: 4096, ..options() });
    let malformed = server.post("/api/chat", "{\"model\": \"tiny\", \"messages\": [");
    assert_eq!(malformed.status, 400);
    assert!(malformed.json()["error"].as_str().unwrap().contains("malformed JSON"));
    let malformed = server.post("/v1/chat/completions", "not json");
    assert_eq!(malformed.status, 400);
    assert_eq!(malformed.json()["error"]["type"], "invalid_request_error");

    let unknown = json!({"model": "other", "messages": [{"role": "user", "content": "hi"}]});
    let reply = server.post_json("/api/chat", &unknown);
    assert_eq!(reply.status, 404);
    assert!(reply.json()["error"].as_str().unwrap().contains("not found"));
    let reply = server.post_json("/v1/chat/completions", &unknown);
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json()["error"]["code"], 404);
    assert_eq!(server.post_json("/api/show", &json!({"model": "other"})).status, 404);
    // ":latest" names the same model, as in Ollama.
    assert_eq!(server.post_json("/api/show", &json!({"model": "tiny:latest"})).status, 200);

    let unenforceable =
        json!({"type": "object", "properties": {"a": {"type": "string", "not": {"const": "x"}}}});
    let reply = server.post_json(
        "/api/chat",
        &json!({"messages": [{"role": "user", "content": "hi"}], "format": unenforceable, "stream": false}),
    );
    assert_eq!(reply.status, 400);
    let message = reply.json()["error"].as_str().unwrap().to_string();
    assert!(message.contains("\"not\"") && message.contains("/properties/a"), "{message}");
    let reply = server.post_json(
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "hi"}],
                "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": unenforceable}}}),
    );
    assert_eq!(reply.status, 400);
    assert!(reply.json()["error"]["message"].as_str().unwrap().contains("\"not\""));

    let big = json!({"messages": [{"role": "user", "content": "x".repeat(5000)}]});
    let reply = server.post_json("/api/chat", &big);
    assert_eq!(reply.status, 413);
    assert!(reply.json()["error"].is_string());
    let reply = server.post_json("/v1/chat/completions", &big);
    assert_eq!(reply.status, 413);
    assert_eq!(reply.json()["error"]["code"], 413);

    // Error messages never quote what was sent.
    let reply = server.post("/api/chat", "{\"messages\": [{\"role\": 5, \"content\": \"SECRET-NAME\"}]}");
    assert_eq!(reply.status, 400);
    assert!(!reply.body.contains("SECRET-NAME"), "{}", reply.body);
}

#[test]
fn serve_requires_the_api_key_when_set_and_refuses_open_binds_without_one() {
    let server = start(ServeOptions { api_keys: vec!["s3cret".into(), "other-key".into()], ..options() });
    let get = |key: Option<&str>| {
        let mut request = agent().get(server.url("/api/tags"));
        if let Some(key) = key {
            request = request.header("authorization", &format!("Bearer {key}"));
        }
        read(request.call().unwrap())
    };
    let reply = get(None);
    assert_eq!(reply.status, 401);
    assert!(reply.json()["error"].is_string());
    assert_eq!(get(Some("wrong")).status, 401);
    assert_eq!(get(Some("s3cret-and-more")).status, 401);
    assert_eq!(get(Some("s3cret")).status, 200);
    assert_eq!(get(Some("other-key")).status, 200, "every key given is accepted");
    let reply = server.post_json("/v1/chat/completions", &json!({"messages": []}));
    assert_eq!(reply.status, 401);
    assert_eq!(reply.json()["error"]["type"], "authentication_error");
    // The page and the health check stay open (the page holds no data).
    assert_eq!(server.get("/healthz").status, 200);
    assert_eq!(server.get("/").status, 200);

    let open: SocketAddr = "0.0.0.0:8080".parse().unwrap();
    let loopback: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    let v6: SocketAddr = "[::1]:8080".parse().unwrap();
    assert!(check_bind(&open, &[]).is_err());
    assert!(check_bind(&open, &["".into()]).is_err());
    assert!(check_bind(&open, &["k".into(), " ".into()]).is_err());
    assert!(check_bind(&open, &["k".into()]).is_ok());
    assert!(check_bind(&loopback, &[]).is_ok());
    assert!(check_bind(&v6, &[]).is_ok());
}

#[test]
fn serve_audit_log_records_a_keyed_hash_of_the_input_and_never_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let key_file = dir.path().join("keys").join("audit.key");
    let audited = || ServeOptions {
        audit_log: Some(log.clone()),
        audit_key_file: Some(key_file.clone()),
        api_keys: vec!["k1".into()],
        ..options()
    };
    let server = start(audited());
    let body = json!({"text": "Jane Roe, MRN 1234567, seen 03/04/2021 for cough."}).to_string();
    let post_deid = |server: &TestServer| {
        read(
            agent()
                .post(server.url("/v1/deid"))
                .header("authorization", "Bearer k1")
                .header("content-type", "application/json")
                .send(&body)
                .unwrap(),
        )
    };
    let reply = post_deid(&server);
    assert_eq!(reply.status, 200);
    assert!(!reply.json()["text"].as_str().unwrap().contains("1234567"));
    // Refused on its headers: the body is never read, so there is nothing to hash.
    assert_eq!(server.post("/api/chat", "{oops").status, 401);
    drop(server);

    // The key was made on first use, readable by its owner only.
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    let hex = std::fs::read_to_string(&key_file).unwrap();
    let key: Vec<u8> =
        (0..32).map(|i| u8::from_str_radix(&hex.trim()[2 * i..2 * i + 2], 16).unwrap()).collect();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("Jane") && !text.contains("1234567") && !text.contains("oops"), "{text}");
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["endpoint"], "/v1/deid");
    assert_eq!(lines[0]["status"], 200);
    let keyed: String = hmac_sha256(&key, body.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(lines[0]["input_hmac_sha256"], keyed);
    assert!(!text.contains(&format!("{:x}", Sha256::digest(body.as_bytes()))), "no plain hash: {text}");
    assert!(lines[0]["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(lines[1]["endpoint"], "/api/chat");
    assert_eq!(lines[1]["status"], 401);
    assert!(lines[1]["input_hmac_sha256"].is_null());

    // A second start keeps the key (the same body hashes the same) and names it alike.
    let server = start(audited());
    let reply = post_deid(&server);
    assert_eq!(reply.status, 200);
    drop(server);
    let lines: Vec<Value> =
        std::fs::read_to_string(&log).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines[2]["input_hmac_sha256"], keyed);
    assert_eq!(lines[2]["key_id"], lines[0]["key_id"]);
    assert!(!hex.contains(lines[0]["key_id"].as_str().unwrap()), "the key id is not part of the key");

    // A key file others can read is refused, and so is one that holds no key.
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let error = Server::start(tiny_model_path(), audited()).unwrap_err();
    assert!(
        matches!(error, ServeError::AuditKey { .. }) && error.to_string().contains("chmod 600"),
        "{error}"
    );
    std::fs::write(&key_file, "not a key\n").unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let error = Server::start(tiny_model_path(), audited()).unwrap_err();
    assert!(error.to_string().contains("does not hold an audit key"), "{error}");
}

#[test]
fn serve_hmac_sha256_matches_rfc_4231() {
    let hex = |bytes: [u8; 32]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    // Test cases 1, 2, 6 (a key longer than a block) and 7 of RFC 4231.
    assert_eq!(
        hex(hmac_sha256(&[0x0b; 20], b"Hi There")),
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
    );
    assert_eq!(
        hex(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    assert_eq!(
        hex(hmac_sha256(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First")),
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
    );
    assert_eq!(
        hex(hmac_sha256(
            &[0xaa; 131],
            b"This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm."
        )),
        "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"
    );
}

#[test]
fn serve_reuses_a_cached_prompt_prefix() {
    let server = start(options());
    let request = json!({"messages": [{"role": "system", "content": "You read clinical notes carefully."},
                                      {"role": "user", "content": "Note one."}], "max_tokens": 4, "temperature": 0});
    let first = server.post_json("/v1/chat/completions", &request).json();
    let prompt = first["usage"]["prompt_tokens"].as_u64().unwrap();
    let second = server.post_json("/v1/chat/completions", &request).json();
    // Everything but the last prompt token (decoded again for its logits) was cached.
    assert_eq!(second["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap(), prompt - 1);
    assert_eq!(first["choices"][0]["message"]["content"], second["choices"][0]["message"]["content"]);
    assert!(server.metric("medllm_prompt_tokens_cached_total") >= (prompt - 1) as f64);
}

#[test]
fn serve_answers_503_when_full_and_a_client_that_leaves_frees_its_sequence() {
    let server = start(ServeOptions {
        parallel: 1,
        queue: 0,
        max_tokens: 100_000,
        ctx_per_sequence: 8192,
        ..options()
    });
    // A string of 6000 characters: the constraint allows no end before it is complete,
    // so this generation runs until it is cancelled.
    let long = json!({"type": "object", "properties": {"a": {"type": "string", "minLength": 6000, "maxLength": 6000}},
                      "required": ["a"]});
    let response = agent()
        .post(server.url("/api/generate"))
        .header("content-type", "application/json")
        .send(json!({"prompt": "x", "format": long, "stream": true}).to_string())
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let mut reader = BufReader::new(response.into_body().into_reader());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&line).unwrap()["done"], false);

    let busy = server.post_json("/api/generate", &json!({"prompt": "y", "stream": false}));
    assert_eq!(busy.status, 503);
    assert!(busy.retry_after.is_some());
    assert!(busy.json()["error"].as_str().unwrap().contains("busy"));
    let busy =
        server.post_json("/v1/chat/completions", &json!({"messages": [{"role": "user", "content": "y"}]}));
    assert_eq!(busy.status, 503);
    assert_eq!(busy.json()["error"]["type"], "overloaded_error");
    assert_eq!(server.metric("medllm_sequences_active"), 1.0);

    // The client goes away mid-stream: its generation is cancelled and the sequence freed.
    let mut buffer = [0u8; 256];
    let _ = reader.read(&mut buffer).unwrap();
    drop(reader);
    server.wait_for("the cancellation", |s| s.metric("medllm_cancelled_total") == 1.0);
    server.wait_for("the sequence to be freed", |s| s.metric("medllm_sequences_active") == 0.0);
    let reply = server
        .post_json("/api/generate", &json!({"prompt": "y", "stream": false, "options": {"num_predict": 4}}));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["done"], true);
}

#[test]
fn serve_extract_returns_the_extract_record_and_refuses_unknown_schemas() {
    let server = start(ServeOptions { max_tokens: 2048, ctx_per_sequence: 4096, ..options() });
    let text = "Clinic note. 45 yo female with hypothyroidism. Meds: levothyroxine 75 mcg daily.";
    let reply =
        server.post_json("/v1/extract", &json!({"id": "n1", "text": text, "schema": person_schema()}));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let record: crate::extract::ExtractionRecord = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(record.id, "n1");
    assert!(record.valid, "{:?}", record.error);
    assert!(validates(&person_schema(), record.data.as_ref().unwrap()));
    assert!(record.tokens.prompt > 0 && record.tokens.generated > 0);
    // Every grounding span points at its text in the source.
    let chars: Vec<char> = text.chars().collect();
    for span in &record.grounding {
        assert_eq!(chars[span.start..span.end].iter().collect::<String>(), span.text);
    }

    let reply = server.post_json("/v1/extract", &json!({"text": text, "schema": "no_such_schema"}));
    assert_eq!(reply.status, 404);
    assert!(reply.json()["error"]["message"].as_str().unwrap().contains("clinic_note"));
    // A path is not a schema name: the server reads no files for clients.
    let path = tiny_model_path().display().to_string();
    assert_eq!(server.post_json("/v1/extract", &json!({"text": text, "schema": path})).status, 404);
    let reply = server.post_json(
        "/v1/extract",
        &json!({"text": text, "schema": {"type": "object", "properties": {"a": {"type": "string", "not": {}}}}}),
    );
    assert_eq!(reply.status, 400);
    assert!(reply.json()["error"]["message"].as_str().unwrap().contains("\"not\""));
    let schemas = server.get("/v1/schemas").json();
    assert!(schemas["schemas"].as_array().unwrap().iter().any(|s| s["name"] == "discharge_summary"));
}

#[test]
fn serve_page_is_self_contained_and_metrics_count_requests() {
    let server = start(options());
    let page = server.get("/");
    assert_eq!(page.status, 200);
    assert!(page.content_type.starts_with("text/html"));
    assert!(page.body.contains("id=\"report\""), "the page has its report box");
    assert!(
        !page.body.contains("http://") && !page.body.contains("https://") && !page.body.contains("src=\"//")
    );
    server.get("/api/tags");
    let metrics = server.get("/metrics").body;
    assert!(metrics.contains("medllm_requests_total{endpoint=\"/api/tags\",status=\"200\"} 1"), "{metrics}");
    assert!(metrics.contains("medllm_request_duration_seconds_count"));
    assert!(metrics.contains("medllm_queue_waiting 0"));
}

#[test]
fn serve_default_name_comes_from_the_file_name() {
    assert_eq!(
        default_model_name(std::path::Path::new("/m/SmolLM2-135M-Instruct.Q4_1.gguf")),
        "smollm2-135m-instruct.q4_1"
    );
    assert_eq!(default_model_name(std::path::Path::new("my model.gguf")), "my-model");
}

/// A reply read off a raw socket.
#[derive(Debug)]
struct RawReply {
    status: u16,
    /// The header lines, lower case.
    head: String,
    body: String,
}

impl RawReply {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')).map(str::trim))
    }
}

/// A connection with a read timeout far beyond any the tests set on the server: when it
/// expires the server held the connection, which the tests treat as the failure it is.
fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    stream
}

/// Reads one response: the head, then Content-Length bytes (or to the end).
fn read_reply(stream: &mut TcpStream) -> RawReply {
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).expect("the server answers before the read timeout");
    let status = status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            break;
        }
        head.push_str(&line.to_ascii_lowercase());
    }
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let mut body = Vec::new();
    match length {
        Some(n) => {
            body.resize(n, 0);
            reader.read_exact(&mut body).unwrap();
        }
        None => {
            reader.read_to_end(&mut body).unwrap();
        }
    }
    RawReply { status, head, body: String::from_utf8_lossy(&body).into_owned() }
}

/// Sends `request` as it is and reads the reply.
fn raw(addr: SocketAddr, request: &str) -> RawReply {
    let mut stream = connect(addr);
    stream.write_all(request.as_bytes()).unwrap();
    read_reply(&mut stream)
}

/// Whether the server closes `stream` (rather than holding it) without answering.
fn closed_without_answer(stream: &mut TcpStream) -> bool {
    let mut buffer = [0u8; 64];
    match stream.read(&mut buffer) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

fn chat_body(content: &str) -> String {
    json!({"messages": [{"role": "user", "content": content}], "stream": false, "options": {"num_predict": 2}})
        .to_string()
}

/// A POST with these extra header lines and a body; the connection closes after it.
fn post_request(host: &str, path: &str, extra: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn serve_checks_the_key_on_headers_before_reading_the_body() {
    let server = start(ServeOptions {
        api_keys: vec!["k1".into()],
        max_body_bytes: 2 << 20,
        body_timeout: Duration::from_secs(1),
        ..options()
    });
    let host = server.addr.to_string();
    // Twenty clients announce a 1 MB body and send none of it: each is answered 401 at
    // once, so no body is waited for or held.
    let mut clients: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut stream = connect(server.addr);
            let head = format!(
                "POST /api/chat HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: 1048576\r\n\r\n"
            );
            stream.write_all(head.as_bytes()).unwrap();
            stream
        })
        .collect();
    for stream in &mut clients {
        let reply = read_reply(stream);
        assert_eq!(reply.status, 401, "{reply:?}");
        assert_eq!(reply.header("www-authenticate"), Some("bearer"));
    }
    // The key holder who stalls in the body is answered 408 after --body-timeout.
    let mut stream = connect(server.addr);
    let head = format!(
        "POST /api/chat HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer k1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"messages\""
    );
    stream.write_all(head.as_bytes()).unwrap();
    let reply = read_reply(&mut stream);
    assert_eq!(reply.status, 408, "{reply:?}");
    assert!(reply.body.contains("--body-timeout"), "{}", reply.body);
    // A body declared larger than --max-body is refused before it is sent.
    let mut stream = connect(server.addr);
    let head = format!(
        "POST /api/chat HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer k1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        3 << 20
    );
    stream.write_all(head.as_bytes()).unwrap();
    assert_eq!(read_reply(&mut stream).status, 413);
}

#[test]
fn serve_closes_connections_whose_headers_stall_and_caps_open_connections() {
    let server =
        start(ServeOptions { header_timeout: Duration::from_secs(1), max_connections: 24, ..options() });
    // Twenty clients that send half a request line, and never the rest, are closed.
    let mut stalled: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut stream = connect(server.addr);
            stream.write_all(b"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le").unwrap();
            stream
        })
        .collect();
    for stream in &mut stalled {
        assert!(closed_without_answer(stream), "a half-sent request holds its connection");
    }
    // So is a connection that never sends anything.
    assert!(closed_without_answer(&mut connect(server.addr)));
    // Headers are bounded in size too.
    let filler = "a".repeat(70_000);
    let big = format!(
        "GET /api/tags HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Filler: {filler}\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(raw(server.addr, &big).status, 431);
    server.wait_for("the stalled connections to close", |s| s.metric("medllm_connections_open") <= 1.0);

    let server = start(ServeOptions { max_connections: 4, ..options() });
    // Connections are accepted in order: with four open, the fifth is answered 503.
    let idle: Vec<TcpStream> = (0..4).map(|_| connect(server.addr)).collect();
    let mut fifth = connect(server.addr);
    let reply = read_reply(&mut fifth);
    assert_eq!(reply.status, 503, "{reply:?}");
    assert_eq!(reply.header("retry-after"), Some("2"));
    assert!(reply.body.contains("too many open connections"), "{}", reply.body);
    drop(idle);
    server.wait_for("a free connection", |s| {
        agent().get(s.url("/healthz")).call().is_ok_and(|r| r.status().as_u16() == 200)
    });
    assert!(server.metric("medllm_connections_refused_total") >= 1.0);
}

#[test]
fn serve_refuses_other_hosts_cross_origin_requests_and_bodies_not_sent_as_json() {
    let server = start(ServeOptions {
        allowed_hosts: vec!["medllm.internal".into()],
        allowed_origins: vec!["https://app.example.org".into()],
        ..options()
    });
    let own = server.addr.to_string();
    let json = "Content-Type: application/json\r\n";
    let body = chat_body("hi");

    // DNS rebinding: a page on evil.example whose name now points here sends its own Host.
    let reply = raw(server.addr, &post_request("evil.example:11434", "/api/chat", json, &body));
    assert_eq!(reply.status, 403, "{reply:?}");
    assert!(reply.body.contains("--allowed-host"), "{}", reply.body);
    let get = |host: &str| {
        raw(server.addr, &format!("GET /api/tags HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"))
    };
    assert_eq!(get("evil.example").status, 403);
    assert_eq!(get(&own).status, 200);
    assert_eq!(get(&format!("localhost:{}", server.addr.port())).status, 200);
    assert_eq!(get("medllm.internal").status, 200);
    assert_eq!(raw(server.addr, "GET /api/tags HTTP/1.0\r\n\r\n").status, 400, "no Host at all");

    // A page elsewhere may not call the API; the server's own page may.
    let from = |origin: &str| format!("{json}Origin: {origin}\r\n");
    let reply = raw(server.addr, &post_request(&own, "/api/chat", &from("http://evil.example"), &body));
    assert_eq!(reply.status, 403, "{reply:?}");
    assert!(reply.header("access-control-allow-origin").is_none());
    let reply = raw(server.addr, &post_request(&own, "/api/chat", &from(&format!("http://{own}")), &body));
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(reply.header("access-control-allow-origin").is_none(), "same origin needs no CORS");
    // An allowed origin is answered with CORS headers, its preflight too.
    let reply = raw(server.addr, &post_request(&own, "/api/chat", &from("https://app.example.org"), &body));
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("access-control-allow-origin"), Some("https://app.example.org"));
    let preflight = |origin: &str| {
        raw(
            server.addr,
            &format!(
                "OPTIONS /api/chat HTTP/1.1\r\nHost: {own}\r\nOrigin: {origin}\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\nConnection: close\r\n\r\n"
            ),
        )
    };
    let reply = preflight("https://app.example.org");
    assert_eq!(reply.status, 204, "{reply:?}");
    assert!(reply.header("access-control-allow-headers").unwrap().contains("content-type"));
    assert_eq!(preflight("https://evil.example").status, 403);

    // JSON endpoints take JSON only: a cross-site form cannot send it.
    for content_type in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]
    {
        let extra = format!("Content-Type: {content_type}\r\n");
        let reply = raw(server.addr, &post_request(&own, "/api/chat", &extra, &body));
        assert_eq!(reply.status, 415, "{content_type}: {reply:?}");
        assert!(reply.body.contains("application/json"), "{}", reply.body);
    }
    let reply = raw(server.addr, &post_request(&own, "/v1/deid", "", r#"{"text": "x"}"#));
    assert_eq!(reply.status, 415, "no Content-Type: {reply:?}");
    let extra = "Content-Type: Application/JSON; charset=utf-8\r\n";
    assert_eq!(raw(server.addr, &post_request(&own, "/v1/deid", extra, r#"{"text": "x"}"#)).status, 200);
    assert!(server.metric("medllm_requests_total{endpoint=\"/api/chat\",status=\"415\"}") >= 3.0);
}

#[test]
fn serve_hosts_and_origins_are_matched_by_name_and_address() {
    let policy = |listen: &str| {
        RequestPolicy::new(
            listen.parse().unwrap(),
            &[],
            &["Medllm.Internal".into()],
            &["https://app.example.org/".into()],
        )
        .unwrap()
    };
    let p = policy("127.0.0.1:11434");
    for host in ["localhost", "LOCALHOST:11434", "127.0.0.1:11434", "127.0.0.2", "[::1]:80", "localhost."] {
        assert!(p.host_allowed(host), "{host}");
    }
    assert!(p.host_allowed("medllm.internal:8080"));
    for host in
        ["evil.example", "evil.example:11434", "10.0.0.5:11434", "localhost.evil.example", "", "a b", "x:y"]
    {
        assert!(!p.host_allowed(host), "{host}");
    }
    let p = policy("10.0.0.5:8080");
    assert!(p.host_allowed("10.0.0.5:8080") && !p.host_allowed("10.0.0.6:8080"));
    // Listening on every address: any address is this machine; names still are not.
    let p = policy("0.0.0.0:8080");
    assert!(p.host_allowed("192.168.1.20:8080") && p.host_allowed("[fe80::1]:8080"));
    assert!(!p.host_allowed("rebind.evil.example:8080"));

    assert!(same_origin("http://127.0.0.1:11434", "127.0.0.1:11434"));
    assert!(same_origin("HTTP://LocalHost:11434", "localhost:11434"));
    assert!(!same_origin("http://127.0.0.1:11435", "127.0.0.1:11434"));
    assert!(!same_origin("http://evil.example", "127.0.0.1:11434"));
    let p = policy("127.0.0.1:11434");
    assert!(p.origin_allowed("https://app.example.org") && p.origin_allowed("HTTPS://APP.example.org"));
    assert!(!p.origin_allowed("http://app.example.org") && !p.origin_allowed("null"));
    let loopback: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let bad_origin = |o: &str| RequestPolicy::new(loopback, &[], &[], &[o.into()]).is_err();
    assert!(bad_origin("app.example.org") && bad_origin("https://a.example/b") && bad_origin("*"));
    let bad_host = |h: &str| RequestPolicy::new(loopback, &[], &[h.into()], &[]).is_err();
    assert!(bad_host("https://a.example") && bad_host("") && bad_host("a/b"));
}

#[test]
fn serve_prefix_reuse_stays_within_a_key_and_a_cache_salt() {
    let server = start(ServeOptions { api_keys: vec!["alice".into(), "bob".into()], ..options() });
    let note = json!([{"role": "system", "content": "You read clinical notes carefully."},
                      {"role": "user", "content": "Note: the patient is HIV positive."}]);
    let ask = |key: &str, salt: Option<&str>| {
        let mut request = json!({"messages": note, "max_tokens": 2, "temperature": 0});
        if let Some(salt) = salt {
            request["cache_salt"] = json!(salt);
        }
        let reply = read(
            agent()
                .post(server.url("/v1/chat/completions"))
                .header("authorization", &format!("Bearer {key}"))
                .header("content-type", "application/json")
                .send(request.to_string())
                .unwrap(),
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
        let usage = reply.json()["usage"].clone();
        (
            usage["prompt_tokens"].as_u64().unwrap(),
            usage["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap(),
        )
    };
    let (prompt, cached) = ask("alice", None);
    assert_eq!(cached, 0);
    // Another key sends the same prompt: nothing of alice's serves it, nothing shows.
    assert_eq!(ask("bob", None), (prompt, 0));
    // The same key again reuses its own prefix (all but the last token).
    assert_eq!(ask("alice", None), (prompt, prompt - 1));
    assert_eq!(ask("bob", None), (prompt, prompt - 1));
    // Behind one key, a salt is a scope of its own.
    assert_eq!(ask("alice", Some("s-4d1f")), (prompt, 0));
    assert_eq!(ask("alice", Some("s-4d1f")), (prompt, prompt - 1));
    assert_eq!(ask("alice", Some("s-other")), (prompt, 0));
    let reply = read(
        agent()
            .post(server.url("/api/chat"))
            .header("authorization", "Bearer alice")
            .header("content-type", "application/json")
            .send(json!({"messages": note, "cache_salt": ""}).to_string())
            .unwrap(),
    );
    assert_eq!(reply.status, 400);
    assert!(reply.json()["error"].as_str().unwrap().contains("cache_salt"));
}

#[test]
fn serve_sequences_active_returns_to_zero_when_idle() {
    let server = start(options());
    assert_eq!(server.metric("medllm_sequences_active"), 0.0);
    for content in ["one", "two"] {
        let reply = server.post("/api/chat", &chat_body(content));
        assert_eq!(reply.status, 200, "{}", reply.body);
        // The gauge is lowered before the answer is sent, so it reads 0 at once.
        assert_eq!(server.metric("medllm_sequences_active"), 0.0);
    }
}

#[test]
fn serve_refuses_a_context_too_small_for_a_prompt_at_start() {
    let error =
        Server::start(tiny_model_path(), ServeOptions { ctx_per_sequence: 1, ..options() }).unwrap_err();
    assert!(matches!(error, ServeError::ContextTooSmall { ctx: 1, .. }), "{error}");
    assert!(error.to_string().contains("raise --ctx"), "{error}");
    // A small context that holds a short prompt answers it; a longer one is refused by
    // name, not by a failed decode.
    let server = start(ServeOptions { ctx_per_sequence: 64, parallel: 1, ..options() });
    let reply = server.post("/api/chat", &chat_body("hi"));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = server.post("/api/chat", &chat_body(&"word ".repeat(80)));
    assert_ne!(reply.status, 200);
    let message = reply.json()["error"].as_str().unwrap().to_string();
    assert!(message.contains("raise --ctx"), "{message}");
}
