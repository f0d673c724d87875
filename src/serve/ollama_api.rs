//! Ollama's API: `/api/generate`, `/api/chat` (NDJSON streaming or one JSON answer;
//! `format` "json" or a JSON Schema, enforced while decoding), `/api/tags`, `/api/show`,
//! `/api/version`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::SystemTime;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::engine::{Event, FinishReason, Finished};
use super::guard::ClientKey;
use super::http::{ApiError, Flavor, parse_json, rfc3339};
use super::state::{AppState, Generation, GenerationRequest};
use crate::llama::{ChatMessage, SamplingParams};

const FLAVOR: Flavor = Flavor::Ollama;

/// Ollama's `options` (those that apply here; others are ignored as Ollama ignores
/// unknown ones).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Options {
    temperature: Option<f32>,
    top_k: Option<i32>,
    top_p: Option<f32>,
    min_p: Option<f32>,
    seed: Option<i64>,
    num_predict: Option<i64>,
    stop: Option<Vec<String>>,
    repeat_penalty: Option<f32>,
    repeat_last_n: Option<i32>,
    presence_penalty: Option<f32>,
    frequency_penalty: Option<f32>,
}

impl Options {
    fn sampling(&self) -> SamplingParams {
        let defaults = SamplingParams::default();
        SamplingParams {
            temperature: self.temperature.unwrap_or(0.8),
            top_k: self.top_k.unwrap_or(40),
            top_p: self.top_p.unwrap_or(0.9),
            min_p: self.min_p.unwrap_or(0.0),
            repeat_penalty: self.repeat_penalty.unwrap_or(1.0),
            repeat_last_n: self.repeat_last_n.unwrap_or(64),
            presence_penalty: self.presence_penalty.unwrap_or(0.0),
            frequency_penalty: self.frequency_penalty.unwrap_or(0.0),
            seed: self.seed.map_or_else(super::own_api::fresh_seed, |s| s as u32),
            ..defaults
        }
    }

    fn max_tokens(&self) -> Option<usize> {
        self.num_predict.filter(|&n| n >= 0).map(|n| n as usize)
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct GenerateRequest {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    system: Option<String>,
    #[serde(default)]
    raw: bool,
    #[serde(default)]
    format: Option<Value>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    options: Options,
    /// Keeps prefix reuse to requests naming the same salt (as vLLM's `cache_salt`).
    #[serde(default)]
    cache_salt: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ChatRequest {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    messages: Vec<IncomingMessage>,
    #[serde(default)]
    format: Option<Value>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    options: Options,
    /// Keeps prefix reuse to requests naming the same salt (as vLLM's `cache_salt`).
    #[serde(default)]
    cache_salt: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct IncomingMessage {
    role: String,
    #[serde(default)]
    content: String,
}

/// `GET /api/version`.
pub(crate) async fn version() -> Json<Value> {
    Json(json!({ "version": env!("CARGO_PKG_VERSION") }))
}

fn details(state: &AppState) -> Value {
    json!({
        "parent_model": "",
        "format": "gguf",
        "family": state.info.architecture,
        "families": [state.info.architecture],
        "parameter_size": parameter_size(state.info.parameters),
        "quantization_level": state.info.file_type,
    })
}

fn parameter_size(n: u64) -> String {
    if n >= 1_000_000_000 { format!("{:.1}B", n as f64 / 1e9) } else { format!("{:.0}M", n as f64 / 1e6) }
}

fn modified_at(state: &AppState) -> String {
    rfc3339(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(state.info.modified))
}

/// `GET /api/tags` (and `/api/ps`): the one model.
pub(crate) async fn tags(State(state): State<Arc<AppState>>) -> Json<Value> {
    let digest = {
        let state = Arc::clone(&state);
        tokio::task::spawn_blocking(move || state.digest()).await.unwrap_or_default()
    };
    Json(json!({
        "models": [{
            "name": state.info.name,
            "model": state.info.name,
            "modified_at": modified_at(&state),
            "size": state.info.size,
            "digest": digest,
            "details": details(&state),
        }]
    }))
}

#[derive(Debug, Deserialize)]
pub(crate) struct ShowRequest {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

/// `POST /api/show`.
pub(crate) async fn show(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let request: ShowRequest = parse_json(body, FLAVOR)?;
    let name = request.model.or(request.name).unwrap_or_default();
    if name.is_empty() {
        return Err(ApiError::bad_request(FLAVOR, "model is required"));
    }
    state.check_model(Some(&name), FLAVOR)?;
    let info = &state.info;
    let mut model_info = serde_json::Map::new();
    model_info.insert("general.architecture".into(), json!(info.architecture));
    model_info.insert("general.parameter_count".into(), json!(info.parameters));
    model_info.insert(format!("{}.context_length", info.architecture), json!(info.context_length));
    Ok(Json(json!({
        "modelfile": format!("FROM {}\n", info.path.display()),
        "parameters": "",
        "template": info.chat_template.clone().unwrap_or_default(),
        "details": details(&state),
        "model_info": model_info,
        "capabilities": ["completion"],
        "modified_at": modified_at(&state),
    })))
}

/// `POST /api/generate`.
pub(crate) async fn generate(
    State(state): State<Arc<AppState>>,
    Extension(client): Extension<ClientKey>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: GenerateRequest = parse_json(body, FLAVOR)?;
    let cache_scope = super::own_api::cache_scope(client, request.cache_salt.as_deref(), FLAVOR)?;
    state.check_model(request.model.as_deref(), FLAVOR)?;
    let model = state.info.name.clone();
    let prompt_text = request.prompt.unwrap_or_default();
    if prompt_text.is_empty() {
        // Ollama answers an empty prompt by loading the model.
        return Ok(Json(json!({
            "model": model, "created_at": rfc3339(SystemTime::now()), "response": "",
            "done": true, "done_reason": "load"
        }))
        .into_response());
    }
    let prompt = if request.raw {
        state.tokenize(&prompt_text, false, FLAVOR)?
    } else {
        let mut messages = Vec::new();
        if let Some(system) = request.system.filter(|s| !s.is_empty()) {
            messages.push(ChatMessage::new("system", system));
        }
        messages.push(ChatMessage::new("user", prompt_text));
        state.chat_prompt(&messages, FLAVOR)?
    };
    let constraint = super::own_api::format_constraint(&state, request.format.as_ref(), FLAVOR)?;
    let stream = request.stream.unwrap_or(true);
    let repeat_control = constraint.is_some() && !stream;
    let generation = state.submit(
        GenerationRequest {
            prompt,
            cache_scope,
            constraint,
            sampling: request.options.sampling(),
            max_tokens: request.options.max_tokens(),
            stop: request.options.stop.clone().unwrap_or_default(),
            repeat_control,
        },
        FLAVOR,
    )?;
    respond(generation, stream, model, Shape::Generate).await
}

/// `POST /api/chat`.
pub(crate) async fn chat(
    State(state): State<Arc<AppState>>,
    Extension(client): Extension<ClientKey>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: ChatRequest = parse_json(body, FLAVOR)?;
    let cache_scope = super::own_api::cache_scope(client, request.cache_salt.as_deref(), FLAVOR)?;
    state.check_model(request.model.as_deref(), FLAVOR)?;
    let model = state.info.name.clone();
    if request.messages.is_empty() {
        return Ok(Json(json!({
            "model": model, "created_at": rfc3339(SystemTime::now()),
            "message": {"role": "assistant", "content": ""}, "done": true, "done_reason": "load"
        }))
        .into_response());
    }
    let messages: Vec<ChatMessage> =
        request.messages.into_iter().map(|m| ChatMessage::new(&m.role, m.content)).collect();
    let prompt = state.chat_prompt(&messages, FLAVOR)?;
    let constraint = super::own_api::format_constraint(&state, request.format.as_ref(), FLAVOR)?;
    let stream = request.stream.unwrap_or(true);
    let repeat_control = constraint.is_some() && !stream;
    let generation = state.submit(
        GenerationRequest {
            prompt,
            cache_scope,
            constraint,
            sampling: request.options.sampling(),
            max_tokens: request.options.max_tokens(),
            stop: request.options.stop.clone().unwrap_or_default(),
            repeat_control,
        },
        FLAVOR,
    )?;
    respond(generation, stream, model, Shape::Chat).await
}

#[derive(Debug, Clone, Copy)]
enum Shape {
    Generate,
    Chat,
}

fn piece(shape: Shape, model: &str, text: &str) -> Value {
    let mut value = json!({ "model": model, "created_at": rfc3339(SystemTime::now()), "done": false });
    match shape {
        Shape::Generate => value["response"] = json!(text),
        Shape::Chat => value["message"] = json!({ "role": "assistant", "content": text }),
    }
    value
}

fn done_reason(reason: &FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::Timeout => "timeout",
        FinishReason::Error(_) => "error",
    }
}

fn last(shape: Shape, model: &str, text: &str, finished: &Finished, total: std::time::Duration) -> Value {
    let mut value = piece(shape, model, text);
    value["done"] = json!(true);
    value["done_reason"] = json!(done_reason(&finished.reason));
    value["total_duration"] = json!(total.as_nanos() as u64);
    value["load_duration"] = json!(0);
    value["prompt_eval_count"] = json!(finished.prompt_tokens);
    value["prompt_eval_duration"] = json!(finished.prompt_time.as_nanos() as u64);
    value["eval_count"] = json!(finished.generated_tokens);
    value["eval_duration"] = json!(finished.generation_time.as_nanos() as u64);
    value
}

async fn respond(
    mut generation: Generation,
    stream: bool,
    model: String,
    shape: Shape,
) -> Result<Response, ApiError> {
    if !stream {
        let (text, finished) = super::own_api::collect(&mut generation).await;
        let finished = super::own_api::check_finished(finished, FLAVOR)?;
        return Ok(Json(last(shape, &model, &text, &finished, generation.started.elapsed())).into_response());
    }
    let body = futures_util::stream::unfold(Some((generation, model)), move |state| async move {
        let (mut generation, model) = state?;
        match generation.events.recv().await {
            Some(Event::Text(text)) => {
                let line = ndjson(&piece(shape, &model, &text));
                Some((Ok::<_, Infallible>(line), Some((generation, model))))
            }
            Some(Event::Done(finished)) => {
                let mut value = last(shape, &model, "", &finished, generation.started.elapsed());
                if let FinishReason::Error(message) = &finished.reason {
                    value = json!({ "error": message });
                }
                Some((Ok(ndjson(&value)), None))
            }
            None => Some((Ok(ndjson(&json!({ "error": "the engine stopped" }))), None)),
        }
    });
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], Body::from_stream(body)).into_response())
}

fn ndjson(value: &Value) -> Bytes {
    let mut line = serde_json::to_vec(value).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}
