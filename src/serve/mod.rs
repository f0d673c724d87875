//! The HTTP server: one model shared by many clients through Ollama- and OpenAI-compatible
//! endpoints, medllm's extraction and de-identification API, and a web page; safe by default.

mod audit;
mod connections;
mod engine;
mod guard;
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

pub use audit::default_audit_key_path;
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
    /// The address listened on; requests must name it, a loopback name or an allowed host
    /// in their Host header.
    pub listen: SocketAddr,
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
    /// Time for a request's headers to arrive (and an idle connection's life).
    pub header_timeout: Duration,
    /// Time for a request's body to arrive once its headers have; then 408.
    pub body_timeout: Duration,
    /// Connections open at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// Most tokens one request may generate (and the default when it names none).
    pub max_tokens: usize,
    /// Time a request may take before it is stopped.
    pub timeout: Duration,
    /// Keys, one of which every request but the page and `/healthz` must carry as a bearer
    /// token; none means no key is asked for. Each key is a cache scope of its own.
    pub api_keys: Vec<String>,
    /// Host names besides loopback and the listen address that requests may name.
    pub allowed_hosts: Vec<String>,
    /// Origins (`scheme://host[:port]`) besides the server's own whose pages may call it.
    pub allowed_origins: Vec<String>,
    /// Where to append one JSON line per request: time, endpoint, status, the body's
    /// HMAC-SHA256.
    pub audit_log: Option<PathBuf>,
    /// The secret of the audit log's HMAC (default: [`default_audit_key_path`]); made on
    /// first use.
    pub audit_key_file: Option<PathBuf>,
    /// Bounds added to JSON Schemas that leave sizes open.
    pub schema_limits: SchemaLimits,
    /// How chat messages become the prompt (`--chat-template`); `None`: the model's own
    /// chat template, else plain text.
    pub chat_template: Option<crate::llama::ChatTemplateArg>,
    /// Speculative copying from the prompt for greedy constrained requests (see
    /// [`crate::extract::ExtractOptions::speculate`] for when replies can differ).
    pub speculate: bool,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            name: "model".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 11434)),
            adapters: Vec::new(),
            parallel: 4,
            ctx_per_sequence: 4096,
            threads: crate::llama::ContextParams::default().n_threads,
            queue: 64,
            max_body_bytes: 1 << 20,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 128,
            max_tokens: 2048,
            timeout: Duration::from_secs(300),
            api_keys: Vec::new(),
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            audit_log: None,
            audit_key_file: None,
            schema_limits: SchemaLimits::default(),
            chat_template: None,
            speculate: false,
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
    /// The audit log's key file cannot be read or made.
    #[error("cannot use the audit key file {path}: {reason}")]
    AuditKey {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// No place for the audit key: neither `--audit-key-file`, `XDG_CONFIG_HOME` nor `HOME`.
    #[error("no place for the audit log's key: set --audit-key-file (or HOME)")]
    NoAuditKeyPath,
    /// A sequence cannot hold the smallest chat prompt and one generated token.
    #[error(
        "--ctx {ctx} is too small: a sequence cannot hold this model's smallest chat prompt ({smallest} tokens) and an answer; raise --ctx to at least {} (the default is 4096)",
        smallest + 1
    )]
    ContextTooSmall {
        /// Tokens per sequence asked for.
        ctx: u32,
        /// Tokens of the chat prompt of one empty user message.
        smallest: usize,
    },
    /// An `--allowed-host` that is not a host name or address.
    #[error("--allowed-host {host:?} is not a host name or address (such as medllm.example.org)")]
    BadAllowedHost {
        /// What was given.
        host: String,
    },
    /// An `--allowed-origin` that is not an origin.
    #[error(
        "--allowed-origin {origin:?} is not an origin (scheme://host[:port], such as https://app.example.org)"
    )]
    BadAllowedOrigin {
        /// What was given.
        origin: String,
    },
    /// The engine thread stopped before it was ready.
    #[error("the engine stopped while starting")]
    EngineGone,
}

/// Refuses a non-loopback address unless an API key is set, and empty keys.
pub fn check_bind(addr: &SocketAddr, api_keys: &[String]) -> Result<(), ServeError> {
    if api_keys.iter().any(|k| k.trim().is_empty()) {
        return Err(ServeError::EmptyKey);
    }
    if !addr.ip().is_loopback() && api_keys.is_empty() {
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

/// Completes on Ctrl-C or SIGTERM: the signal for [`Server::serve`] to stop.
pub async fn shutdown_signal() {
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
