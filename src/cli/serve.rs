//! `medllm serve`: the HTTP API and web page over one model.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Args;

use super::options::ModelOptions;
use super::{GlobalOptions, Outcome};
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
    /// Require this key as `Authorization: Bearer KEY` on every endpoint but / and /healthz.
    #[arg(long, value_name = "KEY", env = API_KEY_ENV, hide_env_values = true)]
    api_key: Option<String>,
    /// Largest request body in bytes (larger: 413).
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    max_body: usize,
    /// Most tokens one request may generate (also the default when it names none).
    #[arg(long, value_name = "N", default_value_t = 2048)]
    max_tokens: usize,
    /// Seconds a request may take before it is stopped (504, or the stream ends).
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    timeout: u64,
    /// Append one JSON line per request: time, endpoint, status and the body's sha256
    /// (never the body).
    #[arg(long, value_name = "FILE")]
    audit_log: Option<PathBuf>,
    /// maxItems for arrays a schema leaves unbounded.
    #[arg(long, value_name = "N", default_value_t = 16)]
    max_items: u64,
    /// maxLength for strings a schema leaves unbounded.
    #[arg(long, value_name = "CHARS", default_value_t = 200)]
    max_string: u64,
}

pub(crate) fn run(args: ServeArgs, global: &GlobalOptions) -> Result<Outcome> {
    // Refused before the model loads.
    check_bind(&args.listen, args.api_key.as_deref())?;
    if let Some(log) = &args.audit_log {
        crate::atomic_file::refuse_output_among_inputs(log, args.model.files())?;
    }
    let context = args.model.context_params(1);
    let options = ServeOptions {
        name: args.name.clone().unwrap_or_else(|| default_model_name(&args.model.model)),
        adapters: args.model.lora.iter().map(|l| (l.path.clone(), l.scale)).collect(),
        parallel: args.parallel.max(1),
        ctx_per_sequence: args.model.ctx,
        threads: context.n_threads,
        queue: args.queue,
        max_body_bytes: args.max_body,
        max_tokens: args.max_tokens.max(1),
        timeout: Duration::from_secs(args.timeout.max(1)),
        api_key: args.api_key.clone(),
        audit_log: args.audit_log.clone(),
        schema_limits: SchemaLimits { max_items: args.max_items, max_string: args.max_string },
    };
    let server = Server::start(&args.model.model, options)
        .with_context(|| format!("cannot serve {}", args.model.model.display()))?;
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
        crate::serve::serve(listener, server.router()).await.context("the server failed")
    })?;
    Ok(Outcome::Success)
}
