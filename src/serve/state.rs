//! The server's shared state: the model, the engine's queue, limits, and the router.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Instant, SystemTime};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use super::audit::AuditLog;
use super::connections::{ConnectionLimits, serve_connections};
use super::engine::{self, CacheScope, EngineSettings, Event, Job};
use super::guard::{self, RequestPolicy};
use super::http::{self, ApiError, Flavor};
use super::metrics::Metrics;
use super::{ServeError, ServeOptions, ollama_api, openai_api, own_api, page};
use crate::data::deid::Deidentifier;
use crate::extract::{ConstraintFactory, ExtractionPlan};
use crate::llama::{LoraAdapter, Model, ModelParams, SamplingParams, Token};

/// Facts about the served model, for `/api/tags`, `/api/show` and `/v1/models`.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    /// The name clients use.
    pub name: String,
    /// The GGUF file.
    pub path: std::path::PathBuf,
    /// File size in bytes.
    pub size: u64,
    /// Seconds since the epoch of the file's modification.
    pub modified: u64,
    /// general.architecture.
    pub architecture: String,
    /// Parameters.
    pub parameters: u64,
    /// Quantization type name (e.g. Q4_1).
    pub file_type: String,
    /// Context length the model was trained with.
    pub context_length: u64,
    /// The chat template, if the model has one.
    pub chat_template: Option<String>,
    /// How chat messages become the prompt: `--chat-template`, else the model's template,
    /// else plain text.
    pub prompt_format: crate::llama::PromptFormat,
    /// Set when the model has no template and none was chosen (the caller notes it).
    pub plain_by_default: bool,
}

/// Everything handlers share.
pub(crate) struct AppState {
    pub model: Arc<Model>,
    pub info: ServerInfo,
    pub options: ServeOptions,
    pub factory: Arc<ConstraintFactory>,
    pub jobs: Mutex<Option<SyncSender<Job>>>,
    pub metrics: Arc<Metrics>,
    pub in_flight: AtomicUsize,
    pub deid: [OnceLock<Deidentifier>; 3],
    pub plans: Mutex<HashMap<String, Arc<ExtractionPlan>>>,
    pub policy: RequestPolicy,
    pub audit: Option<AuditLog>,
    pub digest: OnceLock<String>,
    pub next_id: AtomicU64,
}

/// A started server: the model loaded, the engine running. Build its router with
/// [`Server::router`].
pub struct Server {
    state: Arc<AppState>,
    engine: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("name", &self.state.info.name).finish_non_exhaustive()
    }
}

impl Server {
    /// Loads the model at `path`, starts the engine thread (which loads the adapters and
    /// makes the context), and returns once it is ready.
    pub fn start(path: &std::path::Path, options: ServeOptions) -> Result<Server, ServeError> {
        let policy = RequestPolicy::new(
            options.listen,
            &options.api_keys,
            &options.allowed_hosts,
            &options.allowed_origins,
        )?;
        let audit = match &options.audit_log {
            Some(file) => {
                let key_file = match &options.audit_key_file {
                    Some(key_file) => key_file.clone(),
                    None => super::default_audit_key_path().ok_or(ServeError::NoAuditKeyPath)?,
                };
                Some(AuditLog::open(file, &key_file)?)
            }
            None => None,
        };
        let model = Arc::new(Model::load(path, &ModelParams::default())?);
        let resolved = crate::llama::resolve_template(options.chat_template.as_ref(), model.chat_template())?;
        let info = model_info(&model, path, &options.name, resolved);
        // Refused now rather than failing every request later.
        let smallest = templated(&info.prompt_format, &[crate::llama::ChatMessage::new("user", "")])
            .ok()
            .and_then(|text| model.tokenize(&text, model.adds_bos(), true).ok())
            .map_or(1, |tokens| tokens.len().max(1));
        if (options.ctx_per_sequence as usize) <= smallest {
            return Err(ServeError::ContextTooSmall { ctx: options.ctx_per_sequence, smallest });
        }
        let factory = Arc::new(ConstraintFactory::new(&model)?);
        let metrics = Arc::new(Metrics::default());
        // The channel itself is not the limit (admission is, see `submit`): room for all.
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Job>(options.parallel + options.queue + 1);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), ServeError>>();
        let settings = EngineSettings {
            parallel: options.parallel.max(1),
            ctx_per_sequence: options.ctx_per_sequence,
            threads: options.threads,
            speculate: options.speculate,
        };
        let engine_model = Arc::clone(&model);
        let engine_factory = Arc::clone(&factory);
        let engine_metrics = Arc::clone(&metrics);
        let adapter_paths = options.adapters.clone();
        let engine = std::thread::Builder::new()
            .name("medllm-engine".into())
            .spawn(move || {
                let model: &Model = &engine_model;
                let adapters: Result<Vec<(LoraAdapter<'_>, f32)>, _> = adapter_paths
                    .iter()
                    .map(|(p, scale)| LoraAdapter::load(model, p).map(|a| (a, *scale)))
                    .collect();
                let adapters = match adapters {
                    Ok(a) => a,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.into()));
                        return;
                    }
                };
                let attached: Vec<(&LoraAdapter<'_>, f32)> = adapters.iter().map(|(a, s)| (a, *s)).collect();
                let ready = ready_tx.clone();
                let result = engine::run(
                    model,
                    &attached,
                    Some(&engine_factory),
                    &settings,
                    receiver,
                    engine_metrics,
                    move || {
                        let _ = ready.send(Ok(()));
                    },
                );
                if let Err(e) = result {
                    let _ = ready_tx.send(Err(e.into()));
                }
            })
            .map_err(|_| ServeError::EngineGone)?;
        ready_rx.recv().map_err(|_| ServeError::EngineGone)??;
        let state = AppState {
            model,
            info,
            options,
            factory,
            jobs: Mutex::new(Some(sender)),
            metrics,
            in_flight: AtomicUsize::new(0),
            deid: [OnceLock::new(), OnceLock::new(), OnceLock::new()],
            plans: Mutex::new(HashMap::new()),
            policy,
            audit,
            digest: OnceLock::new(),
            next_id: AtomicU64::new(1),
        };
        Ok(Server { state: Arc::new(state), engine: Some(engine) })
    }

    /// The served model.
    pub fn info(&self) -> &ServerInfo {
        &self.state.info
    }

    /// The counters behind `/metrics`.
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.state.metrics)
    }

    /// The router: every endpoint, with the checks on headers (Host, Origin, key,
    /// Content-Type), body limits, metrics and the audit log.
    pub fn router(&self) -> Router {
        router(Arc::clone(&self.state))
    }

    /// Serves the router on `listener`, with the options' limits on connections and
    /// header time, until `shutdown` completes; then lets running requests end. The future
    /// owns what it needs, so it can be spawned.
    pub fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = std::io::Result<()>> + Send + 'static {
        let limits = ConnectionLimits {
            max_connections: self.state.options.max_connections,
            header_timeout: self.state.options.header_timeout,
        };
        serve_connections(listener, self.router(), limits, Arc::clone(&self.state.metrics), shutdown)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Closing the queue lets the engine finish what runs and stop.
        if let Ok(mut jobs) = self.state.jobs.lock() {
            jobs.take();
        }
        if let Some(engine) = self.engine.take()
            && Arc::strong_count(&self.state) == 1
        {
            let _ = engine.join();
        }
    }
}

fn router(state: Arc<AppState>) -> Router {
    let limit = state.options.max_body_bytes;
    Router::new()
        .route("/", get(page::index))
        .route("/healthz", get(own_api::healthz))
        .route("/metrics", get(own_api::metrics))
        .route("/api/version", get(ollama_api::version))
        .route("/api/tags", get(ollama_api::tags))
        .route("/api/ps", get(ollama_api::tags))
        .route("/api/show", post(ollama_api::show))
        .route("/api/generate", post(ollama_api::generate))
        .route("/api/chat", post(ollama_api::chat))
        .route("/v1/models", get(openai_api::models))
        .route("/v1/chat/completions", post(openai_api::chat_completions))
        .route("/v1/extract", post(own_api::extract))
        .route("/v1/deid", post(own_api::deid))
        .route("/v1/schemas", get(own_api::schemas))
        // The last layer runs first: accounting around everything, then the checks on
        // headers, and only then is the body read.
        .layer(middleware::from_fn_with_state(Arc::clone(&state), http::read_body))
        .layer(middleware::from_fn_with_state(Arc::clone(&state), guard::guard))
        .layer(middleware::from_fn_with_state(Arc::clone(&state), http::account))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Facts about the model from its GGUF header.
fn model_info(
    model: &Model,
    path: &std::path::Path,
    name: &str,
    resolved: crate::llama::ResolvedTemplate,
) -> ServerInfo {
    let metadata = std::fs::metadata(path).ok();
    let summary = crate::gguf::GgufFile::open(path).ok().map(|f| crate::gguf::ModelSummary::of(&f));
    ServerInfo {
        name: name.to_string(),
        path: path.to_path_buf(),
        size: metadata.as_ref().map_or(0, |m| m.len()),
        modified: metadata
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs()),
        architecture: model.architecture().to_string(),
        parameters: model.n_params(),
        file_type: summary.as_ref().and_then(|s| s.file_type.clone()).unwrap_or_else(|| "unknown".into()),
        context_length: u64::from(model.n_ctx_train()),
        chat_template: model.chat_template(),
        prompt_format: resolved.format,
        plain_by_default: resolved.fell_back,
    }
}

/// Holds one admitted request; dropping it frees its place.
pub(crate) struct Admission {
    state: Arc<AppState>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.state.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A request's generation as it arrives.
pub(crate) struct Generation {
    pub events: UnboundedReceiver<Event>,
    pub _admission: Admission,
    pub started: Instant,
}

/// What a handler asks the engine for.
pub(crate) struct GenerationRequest {
    pub prompt: Vec<Token>,
    pub cache_scope: CacheScope,
    pub constraint: Option<crate::extract::DocumentConstraint>,
    pub sampling: SamplingParams,
    pub max_tokens: Option<usize>,
    pub stop: Vec<String>,
    /// Roll back repeated array items (constrained, non-streamed requests).
    pub repeat_control: bool,
}

impl AppState {
    /// Checks the model name a request gives: empty means the served one.
    pub fn check_model(&self, name: Option<&str>, flavor: Flavor) -> Result<(), ApiError> {
        match name {
            None | Some("") => Ok(()),
            Some(n) if n == self.info.name || n.strip_suffix(":latest") == Some(self.info.name.as_str()) => {
                Ok(())
            }
            Some(_) => Err(ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                flavor,
                format!("model not found; this server serves \"{}\"", self.info.name),
            )
            .with_kind("model_not_found")),
        }
    }

    /// Hands a request to the engine, or refuses it when the queue is full (503).
    pub fn submit(
        self: &Arc<Self>,
        request: GenerationRequest,
        flavor: Flavor,
    ) -> Result<Generation, ApiError> {
        let limit = self.options.parallel.max(1) + self.options.queue;
        let admitted = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < limit).then_some(n + 1))
            .is_ok();
        if !admitted {
            return Err(ApiError::busy(flavor));
        }
        let admission = Admission { state: Arc::clone(self) };
        let max_tokens = request.max_tokens.unwrap_or(self.options.max_tokens).min(self.options.max_tokens);
        let (events_tx, events) = unbounded_channel();
        let job = Job {
            prompt: request.prompt,
            cache_scope: request.cache_scope,
            constraint: request.constraint,
            sampling: request.sampling,
            max_tokens,
            stop: request.stop,
            repeat_control: request.repeat_control,
            deadline: Instant::now() + self.options.timeout,
            events: events_tx,
        };
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        let Some(sender) = jobs.as_ref() else {
            return Err(ApiError::busy(flavor));
        };
        self.metrics.queued.fetch_add(1, Ordering::Relaxed);
        if sender.try_send(job).is_err() {
            self.metrics.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(ApiError::busy(flavor));
        }
        Ok(Generation { events, _admission: admission, started: Instant::now() })
    }

    /// The chat prompt of `messages` in the model's template, tokenised.
    pub fn chat_prompt(
        &self,
        messages: &[crate::llama::ChatMessage],
        flavor: Flavor,
    ) -> Result<Vec<Token>, ApiError> {
        let text = templated(&self.info.prompt_format, messages)
            .map_err(|e| ApiError::bad_request(flavor, e.to_string()))?;
        self.tokenize(&text, true, flavor)
    }

    /// Tokenises `text`; `special` parses control tokens the template wrote.
    pub fn tokenize(&self, text: &str, special: bool, flavor: Flavor) -> Result<Vec<Token>, ApiError> {
        self.model
            .tokenize(text, self.model.adds_bos(), special)
            .map_err(|e| ApiError::bad_request(flavor, e.to_string()))
    }

    /// The sha256 of the model file, computed once.
    pub fn digest(&self) -> String {
        self.digest
            .get_or_init(|| {
                let mut hasher = Sha256::new();
                if let Ok(mut file) = std::fs::File::open(&self.info.path) {
                    let _ = std::io::copy(&mut file, &mut hasher);
                }
                format!("{:x}", hasher.finalize())
            })
            .clone()
    }

    /// A fresh id for a response.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// `messages` in the server's prompt format, the assistant's turn opened; after plain text
/// the answer starts its own paragraph.
fn templated(
    format: &crate::llama::PromptFormat,
    messages: &[crate::llama::ChatMessage],
) -> Result<String, crate::llama::LlamaError> {
    let mut text = format.render(messages, true)?;
    if !format.is_chat() {
        text.push_str("\n\n");
    }
    Ok(text)
}
