//! What every endpoint shares: JSON errors in each API's own shape, reading and parsing
//! the body, and per-request accounting (metrics, audit log, a log line without any body:
//! request and response bodies can hold patient data).

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use serde::de::DeserializeOwned;

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
            StatusCode::FORBIDDEN => "permission_error",
            StatusCode::PAYLOAD_TOO_LARGE => "request_too_large",
            StatusCode::REQUEST_TIMEOUT => "timeout_error",
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

/// Equality of two digests that takes the same time wherever they differ.
pub(crate) fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b.iter()) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// The keyed hash of the request body for the audit log (`None` without one), left on
/// the response by [`read_body`] for [`account`].
#[derive(Debug, Clone)]
struct BodyHmac(Option<String>);

/// Counts the request in the metrics, writes the audit line (with the body's keyed hash,
/// never the body) and a log line with endpoint, status and time only. Runs around every
/// other check, so that refused requests are counted too.
pub(crate) async fn account(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let response = next.run(request).await;
    let body_hmac = response.extensions().get::<BodyHmac>().and_then(|h| h.0.clone());
    let status = response.status();
    let elapsed = started.elapsed();
    state.metrics.record(&endpoint, status.as_u16(), elapsed);
    if let Some(audit) = &state.audit {
        audit.record(&endpoint, status.as_u16(), body_hmac.as_deref());
    }
    tracing::info!(target: "medllm::serve", "{endpoint} {} {:.0} ms", status.as_u16(), elapsed.as_secs_f64() * 1000.0);
    response
}

enum BodyError {
    TooLarge,
    Unreadable,
}

/// Reads the whole body (after [`super::guard::guard`] has passed the headers): 413 beyond
/// `--max-body` (at once when Content-Length says so), 408 when it has not all arrived
/// within `--body-timeout`.
pub(crate) async fn read_body(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let flavor = if request.uri().path().starts_with("/api/") { Flavor::Ollama } else { Flavor::OpenAi };
    let limit = state.options.max_body_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            flavor,
            format!("the request body is larger than {limit} bytes"),
        )
        .into_response()
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large();
    }
    let (parts, body) = request.into_parts();
    let collect = async {
        let mut stream = body.into_data_stream();
        // Content-Length is only a claim: grow as bytes arrive.
        let mut bytes = Vec::with_capacity(declared.unwrap_or(0).min(64 << 10) as usize);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| BodyError::Unreadable)?;
            if bytes.len() + chunk.len() > limit {
                return Err(BodyError::TooLarge);
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    };
    let bytes = match tokio::time::timeout(state.options.body_timeout, collect).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(BodyError::TooLarge)) => return too_large(),
        Ok(Err(BodyError::Unreadable)) => {
            return ApiError::bad_request(flavor, "the request body could not be read").into_response();
        }
        Err(_) => {
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                flavor,
                "the request body did not arrive within the server's --body-timeout",
            )
            .into_response();
        }
    };
    let body_hmac = state.audit.as_ref().map(|audit| audit.body_hmac(&bytes));
    let mut response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    response.extensions_mut().insert(BodyHmac(body_hmac));
    response
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
