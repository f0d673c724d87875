//! The server on the tiny test model, over real TCP: endpoints, errors, limits,
//! authentication, the audit log, prefix reuse and cancellation.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{ServeOptions, Server, check_bind, default_model_name};
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
    let router = server.router();
    runtime.spawn(async move { axum::serve(listener, router).await });
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
    let server = start(ServeOptions { api_key: Some("s3cret".into()), ..options() });
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
    let reply = server.post_json("/v1/chat/completions", &json!({"messages": []}));
    assert_eq!(reply.status, 401);
    assert_eq!(reply.json()["error"]["type"], "authentication_error");
    // The page and the health check stay open (the page holds no data).
    assert_eq!(server.get("/healthz").status, 200);
    assert_eq!(server.get("/").status, 200);

    let open: SocketAddr = "0.0.0.0:8080".parse().unwrap();
    let loopback: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    let v6: SocketAddr = "[::1]:8080".parse().unwrap();
    assert!(check_bind(&open, None).is_err());
    assert!(check_bind(&open, Some("")).is_err());
    assert!(check_bind(&open, Some("k")).is_ok());
    assert!(check_bind(&loopback, None).is_ok());
    assert!(check_bind(&v6, None).is_ok());
}

#[test]
fn serve_audit_log_records_the_input_hash_and_never_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let server = start(ServeOptions { audit_log: Some(log.clone()), ..options() });
    let body = json!({"text": "Jane Roe, MRN 1234567, seen 03/04/2021 for cough."}).to_string();
    let reply = server.post("/v1/deid", &body);
    assert_eq!(reply.status, 200);
    assert!(!reply.json()["text"].as_str().unwrap().contains("1234567"));
    assert_eq!(server.post("/api/chat", "{oops").status, 400);
    drop(server);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("Jane") && !text.contains("1234567") && !text.contains("oops"), "{text}");
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["endpoint"], "/v1/deid");
    assert_eq!(lines[0]["status"], 200);
    assert_eq!(lines[0]["input_sha256"], format!("{:x}", Sha256::digest(body.as_bytes())));
    assert!(lines[0]["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(lines[1]["endpoint"], "/api/chat");
    assert_eq!(lines[1]["status"], 400);
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
