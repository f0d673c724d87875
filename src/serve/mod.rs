//! The HTTP server: one model shared by many clients through Ollama- and OpenAI-compatible
//! endpoints, medllm's extraction and de-identification API, and a web page; safe by default.

mod engine;
mod http;
mod metrics;
mod ollama_api;
mod openai_api;
mod own_api;
mod page;
mod state;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use metrics::Metrics;
pub use state::{Server, ServerInfo};

use crate::extract::SchemaLimits;

/// The environment variable that may hold the API key.
pub const API_KEY_ENV: &str = "MEDLLM_API_KEY";

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The name the model is listed and requested under.
    pub name: String,
    /// LoRA adapters to apply, with their scales.
    pub adapters: Vec<(PathBuf, f32)>,
    /// Requests decoded together, each a sequence of one context.
    pub parallel: usize,
    /// Context tokens per sequence.
    pub ctx_per_sequence: u32,
    /// CPU threads.
    pub threads: i32,
    /// Requests that may wait for a free sequence; more get 503.
    pub queue: usize,
    /// Largest request body in bytes; larger gets 413.
    pub max_body_bytes: usize,
    /// Most tokens one request may generate (and the default when it names none).
    pub max_tokens: usize,
    /// Time a request may take before it is stopped.
    pub timeout: Duration,
    /// Required as a bearer token when set.
    pub api_key: Option<String>,
    /// Where to append one JSON line per request: time, endpoint, status, input sha256.
    pub audit_log: Option<PathBuf>,
    /// Bounds added to JSON Schemas that leave sizes open.
    pub schema_limits: SchemaLimits,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            name: "model".into(),
            adapters: Vec::new(),
            parallel: 4,
            ctx_per_sequence: 4096,
            threads: crate::llama::ContextParams::default().n_threads,
            queue: 64,
            max_body_bytes: 1 << 20,
            max_tokens: 2048,
            timeout: Duration::from_secs(300),
            api_key: None,
            audit_log: None,
            schema_limits: SchemaLimits::default(),
        }
    }
}

/// What went wrong starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A non-loopback address without an API key.
    #[error(
        "refusing to listen on {addr} without an API key: anyone who can reach it could read what is sent (set --api-key or {API_KEY_ENV}, or bind 127.0.0.1)"
    )]
    OpenWithoutKey {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// An empty API key.
    #[error("the API key is empty")]
    EmptyKey,
    /// llama.cpp failed (model, adapter or context).
    #[error(transparent)]
    Llama(#[from] crate::llama::LlamaError),
    /// The constraint engine could not take the model's vocabulary.
    #[error(transparent)]
    Extract(#[from] crate::extract::ExtractError),
    /// The audit log cannot be opened.
    #[error("cannot open the audit log {path}: {reason}")]
    AuditLog {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The engine thread stopped before it was ready.
    #[error("the engine stopped while starting")]
    EngineGone,
}

/// Refuses a non-loopback address unless an API key is set.
pub fn check_bind(addr: &SocketAddr, api_key: Option<&str>) -> Result<(), ServeError> {
    if api_key.is_some_and(str::is_empty) {
        return Err(ServeError::EmptyKey);
    }
    if !addr.ip().is_loopback() && api_key.is_none() {
        return Err(ServeError::OpenWithoutKey { addr: *addr });
    }
    Ok(())
}

/// The model name derived from a file name: `SmolLM2-135M-Instruct.Q4_1.gguf` →
/// `smollm2-135m-instruct.q4_1` (lower case; Ollama-style names are lower case).
pub fn default_model_name(path: &std::path::Path) -> String {
    let stem = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = stem.strip_suffix(".gguf").unwrap_or(&stem);
    let name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    if name.is_empty() { "model".into() } else { name }
}

/// Serves `router` on `listener` until Ctrl-C (or SIGTERM), then lets running requests end.
pub async fn serve(listener: tokio::net::TcpListener, router: axum::Router) -> std::io::Result<()> {
    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown_signal())
        .await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
