//! What every endpoint shares: JSON errors in each API's own shape, body parsing,
//! authentication, and per-request accounting (metrics, audit log, a log line without
//! any body: request and response bodies can hold patient data).

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::state::AppState;

/// Which API an error answers, so that its body has the shape that API's clients read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    /// `{"error": "message"}`.
    Ollama,
    /// `{"error": {"message", "type", "code"}}` (also medllm's own endpoints).
    OpenAi,
}

/// An error answered as JSON with a status.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub flavor: Flavor,
    pub message: String,
    pub kind: &'static str,
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, flavor: Flavor, message: impl Into<String>) -> ApiError {
        let kind = match status {
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::NOT_FOUND => "not_found_error",
            StatusCode::PAYLOAD_TOO_LARGE => "request_too_large",
            StatusCode::SERVICE_UNAVAILABLE => "overloaded_error",
            StatusCode::GATEWAY_TIMEOUT => "timeout_error",
            s if s.is_client_error() => "invalid_request_error",
            _ => "server_error",
        };
        ApiError { status, flavor, message: message.into(), kind, retry_after: None }
    }

    pub fn with_kind(mut self, kind: &'static str) -> ApiError {
        self.kind = kind;
        self
    }

    pub fn bad_request(flavor: Flavor, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, flavor, message)
    }

    pub fn busy(flavor: Flavor) -> ApiError {
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            flavor,
            "the server is busy: every sequence and queue place is taken; retry later",
        );
        e.retry_after = Some(2);
        e
    }

    pub fn internal(flavor: Flavor, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, flavor, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match self.flavor {
            Flavor::Ollama => serde_json::json!({ "error": self.message }),
            Flavor::OpenAi => serde_json::json!({
                "error": { "message": self.message, "type": self.kind, "code": self.status.as_u16() }
            }),
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The request body as `T`: 413 when too large, 400 (naming where the JSON is wrong, never
/// quoting it) when it is not the JSON expected.
pub(crate) fn parse_json<T: DeserializeOwned>(
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
    flavor: Flavor,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|rejection| ApiError::new(rejection.status(), flavor, rejection.body_text()))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        // serde's messages quote no input values for syntax errors, but type errors can
        // show a value ("invalid type: string \"...\""): keep only its category and place.
        let what = match e.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => "malformed JSON",
            serde_json::error::Category::Data => "JSON of the wrong shape",
            serde_json::error::Category::Io => "an unreadable body",
        };
        let detail = if e.classify() == serde_json::error::Category::Data {
            data_error_summary(&e.to_string())
        } else {
            String::new()
        };
        ApiError::bad_request(
            flavor,
            format!("the request body is {what} (line {}, column {}){detail}", e.line(), e.column()),
        )
    })
}

/// The part of a serde data error that names fields, never values.
fn data_error_summary(message: &str) -> String {
    for marker in ["missing field `", "unknown field `", "unknown variant `"] {
        if let Some(at) = message.find(marker) {
            let rest = &message[at + marker.len()..];
            if let Some(end) = rest.find('`') {
                return format!(": {}{}`", marker, &rest[..end]);
            }
        }
    }
    String::new()
}

/// Requires the API key (when one is set) on every path but the page and `/healthz`;
/// compared in constant time.
pub(crate) async fn authenticate(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(expected) = &state.api_key_digest else { return next.run(request).await };
    let path = request.uri().path();
    if path == "/" || path == "/healthz" {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .or_else(|| request.headers().get("x-api-key").and_then(|v| v.to_str().ok()))
        .map(|v| v.trim().to_string());
    let ok = given.is_some_and(|key| {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        constant_time_eq(&digest, expected)
    });
    if ok {
        next.run(request).await
    } else {
        let flavor = if path.starts_with("/api/") { Flavor::Ollama } else { Flavor::OpenAi };
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            flavor,
            "a valid API key is required (Authorization: Bearer KEY)",
        )
        .into_response()
    }
}

/// Equality of two digests that takes the same time wherever they differ.
pub(crate) fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b.iter()) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// Counts the request in the metrics, writes the audit line (with the input's sha256,
/// never the input) and a log line with endpoint, status and time only.
pub(crate) async fn account(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let (parts, body) = request.into_parts();
    let limit = state.options.max_body_bytes;
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => bytes,
        Err(_) => {
            let flavor = if endpoint.starts_with("/api/") { Flavor::Ollama } else { Flavor::OpenAi };
            let response = ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                flavor,
                format!("the request body is larger than {limit} bytes"),
            )
            .into_response();
            finish(&state, &endpoint, response.status(), started, None);
            return response;
        }
    };
    let input_sha256 = state.audit.is_some().then(|| format!("{:x}", Sha256::digest(&bytes)));
    let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    finish(&state, &endpoint, response.status(), started, input_sha256.as_deref());
    response
}

fn finish(
    state: &AppState,
    endpoint: &str,
    status: StatusCode,
    started: Instant,
    input_sha256: Option<&str>,
) {
    let elapsed = started.elapsed();
    state.metrics.record(endpoint, status.as_u16(), elapsed);
    if state.audit.is_some() {
        let empty = format!("{:x}", Sha256::digest(b""));
        state.audit(endpoint, status.as_u16(), input_sha256.unwrap_or(&empty));
    }
    tracing::info!(target: "medllm::serve", "{endpoint} {} {:.0} ms", status.as_u16(), elapsed.as_secs_f64() * 1000.0);
}

/// `time` as RFC 3339 in UTC with milliseconds, e.g. `2026-12-01T14:05:09.123Z`.
pub(crate) fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() as i64;
    let (y, m, d) = crate::data::deid::civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}
