//! OpenAI's API: `/v1/chat/completions` (`response_format` json_object or json_schema,
//! enforced while decoding; SSE streaming) and `/v1/models`.

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
use super::http::{ApiError, Flavor, parse_json};
use super::state::{AppState, GenerationRequest};
use crate::llama::{ChatMessage, SamplingParams};

const FLAVOR: Flavor = Flavor::OpenAi;

#[derive(Debug, Deserialize)]
pub(crate) struct CompletionRequest {
    #[serde(default)]
    model: Option<String>,
    messages: Vec<IncomingMessage>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    top_p: Option<f32>,
    #[serde(default)]
    seed: Option<i64>,
    #[serde(default)]
    stop: Option<Stop>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    response_format: Option<ResponseFormat>,
    #[serde(default)]
    frequency_penalty: Option<f32>,
    #[serde(default)]
    presence_penalty: Option<f32>,
    #[serde(default)]
    n: Option<u32>,
    /// Keeps prefix reuse to requests naming the same salt (as vLLM's `cache_salt`).
    #[serde(default)]
    cache_salt: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Debug, Deserialize)]
pub(crate) struct IncomingMessage {
    role: String,
    #[serde(default)]
    content: Option<Content>,
}

/// A message's content: text, or a list of parts of which the text ones count.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
pub(crate) struct Part {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema { json_schema: JsonSchemaFormat },
}

#[derive(Debug, Deserialize)]
pub(crate) struct JsonSchemaFormat {
    #[serde(default)]
    schema: Option<Value>,
}

/// `GET /v1/models`.
pub(crate) async fn models(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": [{ "id": state.info.name, "object": "model", "created": state.info.modified, "owned_by": "medllm" }]
    }))
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn finish_reason(reason: &FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "stop",
        FinishReason::Length | FinishReason::Timeout => "length",
        FinishReason::Error(_) => "stop",
    }
}

fn usage(finished: &Finished) -> Value {
    json!({
        "prompt_tokens": finished.prompt_tokens,
        "completion_tokens": finished.generated_tokens,
        "total_tokens": finished.prompt_tokens + finished.generated_tokens,
        "prompt_tokens_details": { "cached_tokens": finished.cached_tokens },
    })
}

/// `POST /v1/chat/completions`.
pub(crate) async fn chat_completions(
    State(state): State<Arc<AppState>>,
    Extension(client): Extension<ClientKey>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: CompletionRequest = parse_json(body, FLAVOR)?;
    let cache_scope = super::own_api::cache_scope(client, request.cache_salt.as_deref(), FLAVOR)?;
    state.check_model(request.model.as_deref(), FLAVOR)?;
    if request.n.is_some_and(|n| n != 1) {
        return Err(ApiError::bad_request(FLAVOR, "only n = 1 is supported"));
    }
    if request.messages.is_empty() {
        return Err(ApiError::bad_request(FLAVOR, "messages must not be empty"));
    }
    let messages: Vec<ChatMessage> = request
        .messages
        .iter()
        .map(|m| {
            let content = match &m.content {
                None => String::new(),
                Some(Content::Text(text)) => text.clone(),
                Some(Content::Parts(parts)) => parts
                    .iter()
                    .filter(|p| p.kind == "text")
                    .filter_map(|p| p.text.clone())
                    .collect::<Vec<_>>()
                    .join("\n"),
            };
            // OpenAI's "developer" role is the system prompt of older models.
            let role = if m.role == "developer" { "system" } else { m.role.as_str() };
            ChatMessage::new(role, content)
        })
        .collect();
    let prompt = state.chat_prompt(&messages, FLAVOR)?;
    let format = match &request.response_format {
        None | Some(ResponseFormat::Text) => None,
        Some(ResponseFormat::JsonObject) => Some(Value::String("json".into())),
        Some(ResponseFormat::JsonSchema { json_schema }) => match &json_schema.schema {
            Some(schema) => Some(schema.clone()),
            None => Some(Value::String("json".into())),
        },
    };
    let constraint = super::own_api::format_constraint(&state, format.as_ref(), FLAVOR)?;
    let sampling = SamplingParams {
        temperature: request.temperature.unwrap_or(1.0),
        top_k: 0,
        top_p: request.top_p.unwrap_or(1.0),
        min_p: 0.0,
        frequency_penalty: request.frequency_penalty.unwrap_or(0.0),
        presence_penalty: request.presence_penalty.unwrap_or(0.0),
        seed: request.seed.map_or_else(super::own_api::fresh_seed, |s| s as u32),
        ..SamplingParams::default()
    };
    let stop = match request.stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s],
        Some(Stop::Many(v)) => v,
    };
    let max_tokens = request.max_completion_tokens.or(request.max_tokens).map(|n| n as usize);
    let mut generation = {
        let repeat_control = constraint.is_some() && !request.stream;
        state.submit(
            GenerationRequest { prompt, cache_scope, constraint, sampling, max_tokens, stop, repeat_control },
            FLAVOR,
        )?
    };
    let id = format!("chatcmpl-{:016x}", state.next_id());
    let model = state.info.name.clone();
    let created = unix_now();
    if !request.stream {
        let (text, finished) = super::own_api::collect(&mut generation).await;
        let finished = super::own_api::check_finished(finished, FLAVOR)?;
        return Ok(Json(json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{
                "index": 0,
                "message": { "role": "assistant", "content": text },
                "logprobs": null,
                "finish_reason": finish_reason(&finished.reason),
            }],
            "usage": usage(&finished),
        }))
        .into_response());
    }
    let include_usage = request.stream_options.is_some_and(|o| o.include_usage);
    let chunk = move |delta: Value, finish: Option<&str>| {
        json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }],
        })
    };
    let first = sse(&chunk(json!({ "role": "assistant", "content": "" }), None));
    let head = futures_util::stream::iter([Ok::<_, Infallible>(first)]);
    let rest = futures_util::stream::unfold(Some((generation, chunk)), move |state| async move {
        let (mut generation, chunk) = state?;
        match generation.events.recv().await {
            Some(Event::Text(text)) => {
                let event = sse(&chunk(json!({ "content": text }), None));
                Some((Ok::<_, Infallible>(event), Some((generation, chunk))))
            }
            Some(Event::Done(finished)) => {
                let mut out = Vec::new();
                if let FinishReason::Error(message) = &finished.reason {
                    out.extend_from_slice(&sse(
                        &json!({ "error": { "message": message, "type": "server_error" } }),
                    ));
                } else {
                    out.extend_from_slice(&sse(&chunk(json!({}), Some(finish_reason(&finished.reason)))));
                    if include_usage {
                        let mut last = chunk(json!({}), None);
                        last["choices"] = json!([]);
                        last["usage"] = usage(&finished);
                        out.extend_from_slice(&sse(&last));
                    }
                }
                out.extend_from_slice(b"data: [DONE]\n\n");
                Some((Ok(Bytes::from(out)), None))
            }
            None => Some((Ok(Bytes::from_static(b"data: [DONE]\n\n")), None)),
        }
    });
    use futures_util::StreamExt as _;
    Ok((
        [(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")],
        Body::from_stream(head.chain(rest)),
    )
        .into_response())
}

fn sse(value: &Value) -> Bytes {
    Bytes::from(format!("data: {}\n\n", serde_json::to_string(value).unwrap_or_default()))
}
