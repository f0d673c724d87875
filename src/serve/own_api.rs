//! medllm's own endpoints: `/v1/extract` (the record `medllm extract` writes), `/v1/deid`,
//! `/v1/schemas` (the built-in schemas, for the page), `/healthz` and `/metrics`; and what
//! the generation endpoints share: output constraints and collecting an answer.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};

use super::engine::{CacheScope, Event, FinishReason, Finished};
use super::guard::ClientKey;
use super::http::{ApiError, Flavor, parse_json};
use super::state::{AppState, Generation, GenerationRequest};
use crate::data::deid::{DeidMode, DeidOptions, Deidentifier};
use crate::extract::{
    BUILT_IN_SCHEMAS, DocumentConstraint, ExtractOptions, ExtractionPlan, ExtractionRecord, ExtractionSchema,
    TokenCounts, load_schema,
};
use crate::llama::SamplingParams;

const FLAVOR: Flavor = Flavor::OpenAi;

/// A seed that differs between requests that name none.
pub(crate) fn fresh_seed() -> u32 {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    nanos ^ std::process::id()
}

/// The constraint for an API's `format`: absent or "" for none, "json" for any JSON
/// object, or a JSON Schema (checked fail-closed: an unenforceable keyword is a 400 that
/// names it).
pub(crate) fn format_constraint(
    state: &AppState,
    format: Option<&Value>,
    flavor: Flavor,
) -> Result<Option<DocumentConstraint>, ApiError> {
    let schema = match format {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) if s.is_empty() => return Ok(None),
        Some(Value::String(s)) if s == "json" => json!({
            "type": "object",
            "x-guidance": {
                "whitespace_flexible": false, "item_separator": ",", "key_separator": ":",
                "json_allowed_escapes": "nrbtf\"\\"
            }
        }),
        Some(Value::Object(_)) => {
            let compiled =
                ExtractionSchema::compile("format", format.expect("matched"), state.options.schema_limits)
                    .map_err(|e| {
                        ApiError::bad_request(flavor, e.to_string()).with_kind("unenforceable_schema")
                    })?;
            compiled.constraint_schema()
        }
        Some(_) => {
            return Err(ApiError::bad_request(flavor, "format must be \"json\" or a JSON Schema object"));
        }
    };
    state.factory.json_matcher(&schema).map(Some).map_err(|e| ApiError::bad_request(flavor, e.to_string()))
}

/// The cache scope of a request: its key and its `cache_salt`, which, when given, must
/// not be empty.
pub(crate) fn cache_scope(
    client: ClientKey,
    salt: Option<&str>,
    flavor: Flavor,
) -> Result<CacheScope, ApiError> {
    if salt.is_some_and(str::is_empty) {
        return Err(ApiError::bad_request(flavor, "cache_salt, when given, must not be empty"));
    }
    Ok(CacheScope::new(client.0.as_ref(), salt))
}

/// Everything generated, and how it ended (`None` if the engine went away).
pub(crate) async fn collect(generation: &mut Generation) -> (String, Option<Finished>) {
    let mut text = String::new();
    while let Some(event) = generation.events.recv().await {
        match event {
            Event::Text(piece) => text.push_str(&piece),
            Event::Done(finished) => return (text, Some(finished)),
        }
    }
    (text, None)
}

/// An engine error or timeout becomes the answer's error status.
pub(crate) fn check_finished(finished: Option<Finished>, flavor: Flavor) -> Result<Finished, ApiError> {
    match finished {
        None => Err(ApiError::internal(flavor, "the engine stopped")),
        Some(f) => match &f.reason {
            FinishReason::Error(message) => Err(ApiError::internal(flavor, message.clone())),
            FinishReason::Timeout => Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                flavor,
                "the request took longer than the server's --timeout",
            )),
            _ => Ok(f),
        },
    }
}

/// `GET /healthz`.
pub(crate) async fn healthz(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({ "status": "ok", "model": state.info.name }))
}

/// `GET /metrics`.
pub(crate) async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render())
}

/// `GET /v1/schemas`: the built-in schemas.
pub(crate) async fn schemas() -> Json<Value> {
    let list: Vec<Value> = BUILT_IN_SCHEMAS
        .iter()
        .map(|(name, schema, _)| {
            json!({ "name": name, "schema": serde_json::from_str::<Value>(schema).unwrap_or(Value::Null) })
        })
        .collect();
    Json(json!({ "schemas": list }))
}

#[derive(Debug, Deserialize)]
pub(crate) struct ExtractRequest {
    #[serde(default)]
    id: Option<String>,
    text: String,
    /// A built-in schema's name, or a JSON Schema.
    schema: Value,
    #[serde(default)]
    extractive: bool,
    #[serde(default)]
    require_grounding: bool,
    #[serde(default)]
    model: Option<String>,
    /// Keeps prefix reuse to requests naming the same salt (as vLLM's `cache_salt`).
    #[serde(default)]
    cache_salt: Option<String>,
}

/// `POST /v1/extract`: `{text, schema (name or JSON Schema), extractive?}` → the record
/// `medllm extract` writes for the text.
pub(crate) async fn extract(
    State(state): State<Arc<AppState>>,
    Extension(client): Extension<ClientKey>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ExtractionRecord>, ApiError> {
    let request: ExtractRequest = parse_json(body, FLAVOR)?;
    let cache_scope = cache_scope(client, request.cache_salt.as_deref(), FLAVOR)?;
    state.check_model(request.model.as_deref(), FLAVOR)?;
    if request.text.trim().is_empty() {
        return Err(ApiError::bad_request(FLAVOR, "text is empty"));
    }
    let plan = {
        let state = Arc::clone(&state);
        let schema = request.schema.clone();
        let (extractive, require_grounding) = (request.extractive, request.require_grounding);
        tokio::task::spawn_blocking(move || plan_for(&state, &schema, extractive, require_grounding))
            .await
            .map_err(|_| ApiError::internal(FLAVOR, "the schema could not be prepared"))??
    };
    let prompt =
        plan.prompt(&state.model, &request.text).map_err(|e| ApiError::bad_request(FLAVOR, e.to_string()))?;
    let constraint = plan
        .constraint(&state.factory, &request.text)
        .map_err(|e| ApiError::bad_request(FLAVOR, e.to_string()))?;
    let prompt_tokens = prompt.len();
    let started = Instant::now();
    let mut generation = state.submit(
        GenerationRequest {
            prompt,
            cache_scope,
            constraint: Some(constraint),
            sampling: SamplingParams { seed: 0, ..SamplingParams::greedy() },
            max_tokens: Some(plan.budget()),
            stop: Vec::new(),
            repeat_control: true,
        },
        FLAVOR,
    )?;
    let (output, finished) = collect(&mut generation).await;
    let finished = match finished {
        Some(f) if f.reason == FinishReason::Timeout => {
            return Err(check_finished(Some(f), FLAVOR).unwrap_err());
        }
        other => other,
    };
    let failure = match finished.as_ref().map(|f| &f.reason) {
        None => Some("the engine stopped".to_string()),
        Some(FinishReason::Length) => {
            Some(format!("output budget of {} tokens exhausted before the JSON was complete", plan.budget()))
        }
        Some(FinishReason::Error(message)) => Some(message.clone()),
        Some(_) => None,
    };
    let generated = finished.as_ref().map_or(0, |f| f.generated_tokens);
    let id = request.id.unwrap_or_else(|| "request".into());
    let record = plan.record(
        id,
        &request.text,
        output.as_bytes(),
        failure,
        TokenCounts { prompt: prompt_tokens, generated },
        started.elapsed().as_millis() as u64,
    );
    Ok(Json(record))
}

/// The extraction plan for a schema: built-in ones (by name) are prepared once and kept.
fn plan_for(
    state: &AppState,
    schema: &Value,
    extractive: bool,
    require_grounding: bool,
) -> Result<Arc<ExtractionPlan>, ApiError> {
    let (name, schema, examples, key) = match schema {
        Value::String(name) => {
            // Only built-in names: a path would let a client read the server's files.
            if !BUILT_IN_SCHEMAS.iter().any(|(n, _, _)| n == name) {
                let known: Vec<&str> = BUILT_IN_SCHEMAS.iter().map(|(n, _, _)| *n).collect();
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    FLAVOR,
                    format!("no built-in schema named {name:?} (built in: {})", known.join(", ")),
                ));
            }
            let source = load_schema(name).map_err(|e| ApiError::internal(FLAVOR, e.to_string()))?;
            let key = format!("{name}|{extractive}|{require_grounding}");
            (source.name, source.schema, source.examples, Some(key))
        }
        Value::Object(_) => ("request".to_string(), schema.clone(), Vec::new(), None),
        _ => {
            return Err(ApiError::bad_request(
                FLAVOR,
                "schema must be a built-in name or a JSON Schema object",
            ));
        }
    };
    if let Some(key) = &key
        && let Some(plan) = state.plans.lock().unwrap_or_else(|e| e.into_inner()).get(key)
    {
        return Ok(Arc::clone(plan));
    }
    let compiled = ExtractionSchema::compile(&name, &schema, state.options.schema_limits)
        .map_err(|e| ApiError::bad_request(FLAVOR, e.to_string()).with_kind("unenforceable_schema"))?;
    let options = ExtractOptions {
        max_tokens: state.options.max_tokens,
        extractive,
        require_grounding,
        examples,
        ..ExtractOptions::default()
    };
    let plan = Arc::new(
        ExtractionPlan::new(&state.model, &state.factory, compiled, options)
            .map_err(|e| ApiError::bad_request(FLAVOR, e.to_string()))?,
    );
    if let Some(key) = key {
        state.plans.lock().unwrap_or_else(|e| e.into_inner()).insert(key, Arc::clone(&plan));
    }
    Ok(plan)
}

#[derive(Debug, Deserialize)]
pub(crate) struct DeidRequest {
    text: String,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    patient: Option<String>,
}

/// `POST /v1/deid`: `{text, mode?: redact|mask|surrogate, patient?}` → `{text, spans}`.
pub(crate) async fn deid(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let request: DeidRequest = parse_json(body, FLAVOR)?;
    let mode = match request.mode.as_deref() {
        None | Some("redact") => DeidMode::Redact,
        Some("mask") => DeidMode::Mask,
        Some("surrogate") => DeidMode::Surrogate,
        Some(_) => return Err(ApiError::bad_request(FLAVOR, "mode must be redact, mask or surrogate")),
    };
    let result = tokio::task::spawn_blocking(move || {
        let deid = state.deidentifier(mode);
        let out = deid.deidentify(&request.text, request.patient.as_deref().unwrap_or("request"));
        json!({ "text": out.text, "spans": out.spans })
    })
    .await
    .map_err(|_| ApiError::internal(FLAVOR, "de-identification failed"))?;
    Ok(Json(result))
}

impl AppState {
    /// The de-identifier for `mode`, made on first use.
    pub(crate) fn deidentifier(&self, mode: DeidMode) -> &Deidentifier {
        let index = match mode {
            DeidMode::Redact => 0,
            DeidMode::Mask => 1,
            DeidMode::Surrogate => 2,
        };
        self.deid[index].get_or_init(|| Deidentifier::new(DeidOptions { mode, ..DeidOptions::default() }))
    }
}
