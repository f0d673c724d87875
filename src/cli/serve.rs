//! `medllm serve`: the HTTP API and web page over one model.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::Args;

use super::options::ModelOptions;
use super::{GlobalOptions, Outcome};
use crate::atomic_file::InputFiles;
use crate::extract::SchemaLimits;
use crate::serve::{API_KEY_ENV, ServeOptions, Server, check_bind, default_model_name};

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    model: ModelOptions,
    /// Address to listen on. Anything but loopback requires --api-key.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:11434")]
    listen: SocketAddr,
    /// The name the model is listed and requested under (default: from the file name).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Requests decoded together, each a sequence of one shared context (--ctx tokens each).
    #[arg(short = 'P', long, value_name = "N", default_value_t = 4)]
    parallel: usize,
    /// Requests that may wait for a free sequence; beyond that the answer is 503 with
    /// Retry-After.
    #[arg(long, value_name = "N", default_value_t = 64)]
    queue: usize,
    /// Require this key as `Authorization: Bearer KEY` on every endpoint but / and /healthz;
    /// repeatable (one key per person or group: cached prompts are never shared between
    /// keys).
    #[arg(long, value_name = "KEY", env = API_KEY_ENV, hide_env_values = true)]
    api_key: Vec<String>,
    /// A host name requests may name in their Host header besides loopback names and the
    /// listen address (as behind a reverse proxy); repeatable. Others get 403.
    #[arg(long, value_name = "HOST")]
    allowed_host: Vec<String>,
    /// An origin (scheme://host[:port]) whose web pages may call the API, besides the
    /// server's own page; repeatable. Other cross-origin requests get 403.
    #[arg(long, value_name = "ORIGIN")]
    allowed_origin: Vec<String>,
    /// Largest request body in bytes (larger: 413).
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    max_body: usize,
    /// Seconds a request's headers may take to arrive (also how long an idle connection
    /// stays open); then the connection is closed.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    header_timeout: u64,
    /// Seconds a request's body may take to arrive after its headers (then 408).
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    body_timeout: u64,
    /// Connections open at once; more are answered 503 and closed.
    #[arg(long, value_name = "N", default_value_t = 128)]
    max_connections: usize,
    /// Most tokens one request may generate (also the default when it names none).
    #[arg(long, value_name = "N", default_value_t = 2048)]
    max_tokens: usize,
    /// Seconds a request may take before it is stopped (504, or the stream ends).
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    timeout: u64,
    /// Append one JSON line per request: time, endpoint, status and the body's
    /// HMAC-SHA256 under the audit key (never the body).
    #[arg(long, value_name = "FILE")]
    audit_log: Option<PathBuf>,
    /// The audit key: a secret made on first use, readable by its owner only (default:
    /// $XDG_CONFIG_HOME/medllm/audit.key, else ~/.config/medllm/audit.key).
    #[arg(long, value_name = "FILE", requires = "audit_log")]
    audit_key_file: Option<PathBuf>,
    /// maxItems for arrays a schema leaves unbounded.
    #[arg(long, value_name = "N", default_value_t = 16)]
    max_items: u64,
    /// maxLength for strings a schema leaves unbounded.
    #[arg(long, value_name = "CHARS", default_value_t = 200)]
    max_string: u64,
    #[command(flatten)]
    template: super::options::ChatTemplateOptions,
    /// Draft tokens by copying from the prompt for greedy constrained requests and keep
    /// those the model would choose. Off by default: on CPUs it measured no faster.
    #[arg(long)]
    speculate: bool,
}

pub(crate) fn run(args: ServeArgs, global: &GlobalOptions) -> Result<Outcome> {
    // Refused before the model loads.
    check_bind(&args.listen, &args.api_key)?;
    // The audit log is appended to, and a missing audit key is created: neither may be the
    // model, an adapter or each other.
    let model_files = InputFiles::new(args.model.files());
    for output in [&args.audit_log, &args.audit_key_file].into_iter().flatten() {
        model_files.check(output)?;
    }
    if let (Some(log), Some(key)) = (&args.audit_log, &args.audit_key_file)
        && crate::atomic_file::same_path(log, key)
    {
        bail!("--audit-log and --audit-key-file name the same file {}; give each its own", log.display());
    }
    let context = args.model.context_params(1);
    let options = ServeOptions {
        name: args.name.clone().unwrap_or_else(|| default_model_name(&args.model.model)),
        listen: args.listen,
        adapters: args.model.lora.iter().map(|l| (l.path.clone(), l.scale)).collect(),
        parallel: args.parallel.max(1),
        ctx_per_sequence: args.model.ctx,
        threads: context.n_threads,
        queue: args.queue,
        max_body_bytes: args.max_body,
        header_timeout: Duration::from_secs(args.header_timeout.max(1)),
        body_timeout: Duration::from_secs(args.body_timeout.max(1)),
        max_connections: args.max_connections.max(1),
        max_tokens: args.max_tokens.max(1),
        timeout: Duration::from_secs(args.timeout.max(1)),
        api_keys: args.api_key.clone(),
        allowed_hosts: args.allowed_host.clone(),
        allowed_origins: args.allowed_origin.clone(),
        audit_log: args.audit_log.clone(),
        audit_key_file: args.audit_key_file.clone(),
        schema_limits: SchemaLimits { max_items: args.max_items, max_string: args.max_string },
        chat_template: args.template.chat_template.clone(),
        speculate: args.speculate,
    };
    let server = Server::start(&args.model.model, options)
        .with_context(|| format!("cannot serve {}", args.model.model.display()))?;
    if server.info().plain_by_default {
        super::options::note_no_template(global.quiet);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let local = listener.local_addr().context("cannot read the bound address")?;
        if !global.quiet {
            // The one line scripts wait for; it names the real port when 0 was asked for.
            eprintln!("medllm serve: {} listening on {local}", server.info().name);
        }
        server.serve(listener, crate::serve::shutdown_signal()).await.context("the server failed")
    })?;
    Ok(Outcome::Success)
}
