//! `medllm ollama`: package a GGUF as an Ollama model, install it, build one from a
//! Modelfile, and push or pull models over the registry protocol.

use std::collections::HashMap;
use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};

use super::{GlobalOptions, Outcome};
use crate::ollama::{
    BuiltModel, DEFAULT_HOST, Manifest, Message, ModelConfig, ModelName, ModelRecipe, Modelfile, Parameters,
    RegistryOptions, Store, TemplateChoice, TransferEvent, auth, build_model, check_registry_host,
};

#[derive(Debug, Args)]
pub(crate) struct OllamaArgs {
    #[command(subcommand)]
    command: OllamaCommand,
}

#[derive(Debug, Subcommand)]
enum OllamaCommand {
    /// Package a GGUF as an Ollama model: a Modelfile and Ollama's store layout under DIR.
    Package(PackageArgs),
    /// Package a GGUF straight into the local Ollama store, ready for `ollama run`.
    Install(InstallArgs),
    /// Build a model from a Modelfile (FROM, ADAPTER, TEMPLATE, SYSTEM, PARAMETER, LICENSE, MESSAGE).
    Create(CreateArgs),
    /// Push a model from a store to a registry (the Ollama hub by default).
    Push(PushArgs),
    /// Pull a model from a registry into a store, checking every digest.
    Pull(PullArgs),
}

/// What the model is made of: shared by `package` and `install`.
#[derive(Debug, Args)]
struct RecipeOptions {
    /// The GGUF model.
    #[arg(value_name = "MODEL.gguf")]
    model: PathBuf,
    /// The model's name: [HOST/]NAMESPACE/MODEL[:TAG].
    #[arg(long, value_name = "NS/MODEL:TAG")]
    name: String,
    /// A LoRA adapter (GGUF) for the same architecture; repeatable.
    #[arg(long, value_name = "A.gguf")]
    adapter: Vec<PathBuf>,
    /// The default system prompt, or @FILE to read it from a file.
    #[arg(long, value_name = "TEXT|@FILE")]
    system: Option<String>,
    /// The prompt template: `auto` derives it from the GGUF's chat template (ChatML, Llama 3,
    /// Gemma, Mistral, Phi) with its stop strings, or gives a GGUF without one Ollama's
    /// default `{{ .Prompt }}` (with a note); FILE holds an Ollama Go template.
    #[arg(long, value_name = "auto|FILE", default_value = "auto")]
    template: String,
    #[command(flatten)]
    chat_template: super::options::ChatTemplateOptions,
    /// A run parameter Ollama understands (temperature=0.2, num_ctx=4096, stop=…); repeatable.
    #[arg(long = "param", value_name = "KEY=VALUE")]
    params: Vec<String>,
    /// A licence text file; repeatable.
    #[arg(long, value_name = "FILE")]
    license: Vec<PathBuf>,
    /// A message the conversation starts from, ROLE being system, user or assistant; repeatable.
    #[arg(long, value_name = "ROLE:TEXT")]
    message: Vec<String>,
    /// Print what was built as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct PackageArgs {
    #[command(flatten)]
    recipe: RecipeOptions,
    /// The folder to write: Modelfile, blobs/ and manifests/.
    #[arg(short, long, value_name = "DIR")]
    output: PathBuf,
}

#[derive(Debug, Args)]
struct InstallArgs {
    #[command(flatten)]
    recipe: RecipeOptions,
    /// The Ollama store [default: $OLLAMA_MODELS or ~/.ollama/models].
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct CreateArgs {
    /// The model's name: [HOST/]NAMESPACE/MODEL[:TAG] (as `ollama create NAME -f Modelfile`).
    #[arg(value_name = "NAME", required_unless_present = "name", conflicts_with = "name")]
    model_name: Option<String>,
    /// The model's name, as a flag.
    #[arg(long, value_name = "NS/MODEL:TAG")]
    name: Option<String>,
    /// The template when the Modelfile has no TEMPLATE (see `package`).
    #[command(flatten)]
    chat_template: super::options::ChatTemplateOptions,
    /// The Modelfile; its paths are relative to its folder.
    #[arg(short = 'f', long = "file", value_name = "Modelfile")]
    modelfile: PathBuf,
    /// The Ollama store [default: $OLLAMA_MODELS or ~/.ollama/models].
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
    /// Print what was built as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// How to reach the registry: shared by `push` and `pull`.
#[derive(Debug, Args)]
struct TransferOptions {
    /// The model: [HOST/]NAMESPACE/MODEL[:TAG].
    #[arg(value_name = "NS/MODEL:TAG")]
    name: String,
    /// The registry, HOST[:PORT] [default: the name's host, else the Ollama hub].
    #[arg(long, value_name = "HOST[:PORT]")]
    registry: Option<String>,
    /// Speak plain HTTP to the registry (one on this machine or a trusted network).
    #[arg(long)]
    insecure: bool,
    /// The store to read from or write to [default: $OLLAMA_MODELS or ~/.ollama/models].
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
    /// Further attempts after a broken connection or a server error, with growing waits.
    #[arg(long, value_name = "N", default_value_t = 4)]
    retries: u32,
    /// The ed25519 key (OpenSSH format) that signs token requests [default:
    /// ~/.ollama/id_ed25519, used for the Ollama hub only].
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Print a report as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct PushArgs {
    #[command(flatten)]
    transfer: TransferOptions,
    /// Bytes per upload request (K, M, G suffixes: powers of 1024).
    #[arg(long, value_name = "BYTES", default_value = "64M", value_parser = parse_bytes)]
    chunk_size: u64,
}

#[derive(Debug, Args)]
struct PullArgs {
    #[command(flatten)]
    transfer: TransferOptions,
}

/// What `package`, `install` and `create --json` print.
#[derive(Debug, Serialize, Deserialize)]
pub struct BuildReport {
    /// The model's full name.
    pub name: String,
    /// The store it was written to.
    pub store: PathBuf,
    /// The manifest file.
    pub manifest_path: PathBuf,
    /// Digest of the manifest.
    pub manifest_digest: String,
    /// The manifest.
    pub manifest: Manifest,
    /// The config blob.
    pub config: ModelConfig,
}

pub(crate) fn run(args: OllamaArgs, global: &GlobalOptions) -> Result<Outcome> {
    match args.command {
        OllamaCommand::Package(args) => {
            let modelfile_path = args.output.join("Modelfile");
            crate::atomic_file::refuse_output_among_inputs(&modelfile_path, args.recipe.files())?;
            let store = Store::at(&args.output);
            let (built, json) = build_from_options(&args.recipe, &store)?;
            crate::atomic_file::write_atomically(&modelfile_path, |f| {
                f.write_all(built.modelfile.print().as_bytes())
            })
            .with_context(|| format!("cannot write {}", modelfile_path.display()))?;
            report_build(&built, &store, json, global)?;
            if !global.quiet {
                eprintln!("wrote {} and the store under {}", modelfile_path.display(), args.output.display());
            }
        }
        OllamaCommand::Install(args) => {
            let store = Store::at(store_dir(args.store)?);
            let (built, json) = build_from_options(&args.recipe, &store)?;
            report_build(&built, &store, json, global)?;
        }
        OllamaCommand::Create(args) => {
            let text = std::fs::read_to_string(&args.modelfile)
                .with_context(|| format!("cannot read {}", args.modelfile.display()))?;
            let modelfile =
                Modelfile::parse(&text).with_context(|| format!("in {}", args.modelfile.display()))?;
            let base =
                args.modelfile.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let mut recipe = ModelRecipe::from_modelfile(&modelfile, base)
                .with_context(|| format!("in {}", args.modelfile.display()))?;
            if recipe.template == TemplateChoice::Auto
                && let Some(choice) = chat_template_choice(&args.chat_template)?
            {
                recipe.template = choice;
            }
            let name_text =
                args.model_name.as_deref().or(args.name.as_deref()).context("give the model's name")?;
            let name = ModelName::parse(name_text)?;
            let store = Store::at(store_dir(args.store)?);
            let built =
                build_model(&store, &name, &recipe).with_context(|| format!("cannot build {name}"))?;
            report_build(&built, &store, args.json, global)?;
        }
        OllamaCommand::Push(args) => push(args, global)?,
        OllamaCommand::Pull(args) => pull(args, global)?,
    }
    Ok(Outcome::Success)
}

impl RecipeOptions {
    /// The files the recipe reads: the model, adapters, licences, and the system prompt and
    /// template when they come from files.
    fn files(&self) -> impl Iterator<Item = &Path> {
        let system = self.system.as_deref().and_then(|s| s.strip_prefix('@')).map(Path::new);
        let template = Some(Path::new(&self.template)).filter(|_| self.template != "auto");
        let jinja = match &self.chat_template.chat_template {
            Some(crate::llama::ChatTemplateArg::File(path)) => Some(path.as_path()),
            _ => None,
        };
        std::iter::once(self.model.as_path())
            .chain(jinja)
            .chain(self.adapter.iter().map(PathBuf::as_path))
            .chain(self.license.iter().map(PathBuf::as_path))
            .chain(system)
            .chain(template)
    }
}

fn store_dir(given: Option<PathBuf>) -> Result<PathBuf> {
    match given {
        Some(dir) => Ok(dir),
        None => Ok(Store::default_location()?),
    }
}

/// What `--chat-template` asks of the Ollama template, if given: a family's template, one
/// derived from a Jinja file, or Ollama's plain default.
fn chat_template_choice(options: &super::options::ChatTemplateOptions) -> Result<Option<TemplateChoice>> {
    use crate::llama::ChatTemplateArg;
    Ok(match &options.chat_template {
        None => None,
        Some(ChatTemplateArg::None) => Some(TemplateChoice::Plain),
        Some(ChatTemplateArg::Builtin(builtin)) => Some(TemplateChoice::Family(
            crate::ollama::ChatFamily::from_template_name(builtin.name())
                .with_context(|| format!("no Ollama template for {}", builtin.name()))?,
        )),
        Some(ChatTemplateArg::File(path)) => Some(TemplateChoice::Jinja(
            std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?,
        )),
    })
}

fn build_from_options(options: &RecipeOptions, store: &Store) -> Result<(BuiltModel, bool)> {
    let name = ModelName::parse(&options.name)?;
    let system = match options.system.as_deref() {
        Some(text) => Some(match text.strip_prefix('@') {
            Some(path) => {
                std::fs::read_to_string(path).with_context(|| format!("cannot read --system file {path}"))?
            }
            None => text.to_string(),
        }),
        None => None,
    };
    let template = if options.template == "auto" {
        chat_template_choice(&options.chat_template)?.unwrap_or(TemplateChoice::Auto)
    } else if options.chat_template.chat_template.is_some() {
        anyhow::bail!("--template FILE and --chat-template both choose the template; give one");
    } else {
        TemplateChoice::Given(
            std::fs::read_to_string(&options.template)
                .with_context(|| format!("cannot read --template file {}", options.template))?,
        )
    };
    let mut parameters = Parameters::default();
    for param in &options.params {
        let (key, value) =
            param.split_once('=').with_context(|| format!("--param {param:?} is not KEY=VALUE"))?;
        parameters.set(key, value)?;
    }
    let licenses = options
        .license
        .iter()
        .map(|p| {
            std::fs::read_to_string(p).with_context(|| format!("cannot read --license file {}", p.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    let messages = options
        .message
        .iter()
        .map(|m| {
            let (role, text) =
                m.split_once(':').with_context(|| format!("--message {m:?} is not ROLE:TEXT"))?;
            Ok(Message::new(role, text)?)
        })
        .collect::<Result<Vec<_>>>()?;
    let recipe = ModelRecipe {
        model: options.model.clone(),
        adapters: options.adapter.clone(),
        template,
        system,
        parameters,
        licenses,
        messages,
    };
    let built = build_model(store, &name, &recipe).with_context(|| format!("cannot package {name}"))?;
    Ok((built, options.json))
}

fn report_build(built: &BuiltModel, store: &Store, json: bool, global: &GlobalOptions) -> Result<()> {
    if !global.quiet {
        for note in &built.notes {
            eprintln!("note: {note}");
        }
    }
    let report = BuildReport {
        name: built.name.to_string(),
        store: store.root().to_path_buf(),
        manifest_path: store.manifest_path(&built.name),
        manifest_digest: built.manifest_digest.clone(),
        manifest: built.manifest.clone(),
        config: built.config.clone(),
    };
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        writeln!(out, "{} {}", report.name, report.manifest_digest)?;
        if !global.quiet {
            eprintln!(
                "{} layers, {} {} {}, in {}",
                built.manifest.layers.len(),
                built.config.model_family,
                built.config.model_type,
                built.config.file_type,
                store.root().display()
            );
        }
    }
    out.flush()?;
    Ok(())
}

/// The local name, the name on the registry, and how to reach it.
fn transfer_setup(
    options: &TransferOptions,
    chunk_size: u64,
) -> Result<(Store, ModelName, ModelName, RegistryOptions)> {
    let local = ModelName::parse(&options.name)?;
    let remote = match &options.registry {
        Some(host) => {
            check_registry_host(host)?;
            local.with_host(host)
        }
        None => local.clone(),
    };
    let store = Store::at(store_dir(options.store.clone())?);
    // The default key identifies this machine to the Ollama hub and is offered to no one
    // else; a key given with --key is offered to whichever registry asks.
    let key = match &options.key {
        Some(path) => Some(path.clone()),
        None if remote.host == DEFAULT_HOST => auth::default_ollama_key(),
        None => None,
    };
    let registry = RegistryOptions {
        host: remote.host.clone(),
        insecure: options.insecure,
        chunk_size,
        retries: options.retries,
        first_backoff: Duration::from_millis(500),
        credentials: auth::Credentials::from_environment(key),
        upload_state_dir: upload_state_dir(),
    };
    if remote.host != DEFAULT_HOST
        && registry.credentials.basic.is_none()
        && registry.credentials.token.is_none()
    {
        tracing::info!(
            "no {} or {} set: anonymous unless the registry asks",
            auth::USERNAME_ENV,
            auth::TOKEN_ENV
        );
    }
    Ok((store, local, remote, registry))
}

fn push(args: PushArgs, global: &GlobalOptions) -> Result<()> {
    let options = &args.transfer;
    let (store, local, remote, registry) = transfer_setup(options, args.chunk_size)?;
    let mut bars = TransferBars::new(global);
    let report = crate::ollama::push(&store, &local, &remote, &registry, &mut |e| bars.on(e))
        .with_context(|| format!("cannot push {local} to {}", remote.host))?;
    let mut out = std::io::stdout().lock();
    if options.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        writeln!(out, "{} {}", report.name, report.manifest_digest)?;
    }
    if !global.quiet && !options.json {
        eprintln!(
            "pushed {}: {} blobs uploaded ({}), {} already there",
            report.name,
            report.uploaded.len(),
            super::info::human_bytes(report.bytes_sent),
            report.skipped.len()
        );
    }
    Ok(())
}

fn pull(args: PullArgs, global: &GlobalOptions) -> Result<()> {
    let options = &args.transfer;
    let (store, local, remote, registry) = transfer_setup(options, 0)?;
    let mut bars = TransferBars::new(global);
    let report = crate::ollama::pull(&store, &remote, &local, &registry, &mut |e| bars.on(e))
        .with_context(|| format!("cannot pull {local} from {}", remote.host))?;
    let mut out = std::io::stdout().lock();
    if options.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        writeln!(out, "{} {}", report.name, report.manifest_digest)?;
    }
    if !global.quiet && !options.json {
        eprintln!(
            "pulled {} into {}: {} blobs downloaded and checked ({}), {} already there",
            report.name,
            store.root().display(),
            report.downloaded.len(),
            super::info::human_bytes(report.bytes_received),
            report.skipped.len()
        );
    }
    Ok(())
}

/// Where unfinished uploads are remembered: `$XDG_CACHE_HOME/medllm/uploads`, else
/// `~/.cache/medllm/uploads`.
fn upload_state_dir() -> Option<PathBuf> {
    let cache =
        std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()).map(PathBuf::from).or_else(|| {
            std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| PathBuf::from(h).join(".cache"))
        })?;
    Some(cache.join("medllm").join("uploads"))
}

/// `64M` → 67108864; K, M and G are powers of 1024.
fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let upper = text.to_ascii_uppercase();
    let digits = upper.trim_end_matches(['B', 'I']);
    let (number, unit) = match digits.char_indices().last() {
        Some((i, c @ ('K' | 'M' | 'G'))) => (&digits[..i], c),
        _ => (digits, ' '),
    };
    let value: u64 =
        number.trim().parse().map_err(|_| format!("{text:?} is not a byte count like 8M or 65536"))?;
    let scale: u64 = match unit {
        'K' => 1 << 10,
        'M' => 1 << 20,
        'G' => 1 << 30,
        _ => 1,
    };
    let bytes = value.checked_mul(scale).ok_or_else(|| format!("{text:?} is too large"))?;
    if bytes == 0 {
        return Err("the chunk size must be at least one byte".into());
    }
    Ok(bytes)
}

/// One progress bar per blob, shown only when stderr is a terminal.
struct TransferBars {
    multi: Option<indicatif::MultiProgress>,
    bars: HashMap<String, indicatif::ProgressBar>,
}

impl TransferBars {
    fn new(global: &GlobalOptions) -> TransferBars {
        let shown = !global.quiet && std::io::stderr().is_terminal();
        TransferBars { multi: shown.then(indicatif::MultiProgress::new), bars: HashMap::new() }
    }

    fn on(&mut self, event: TransferEvent) {
        let Some(multi) = &self.multi else { return };
        match event {
            TransferEvent::Start { digest, done, .. } if self.bars.contains_key(&digest) => {
                self.bars[&digest].set_position(done);
            }
            TransferEvent::Start { digest, size, done } => {
                let style = indicatif::ProgressStyle::with_template(
                    "{msg:16} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
                let bar = multi.add(indicatif::ProgressBar::new(size).with_style(style));
                bar.set_message(digest.trim_start_matches("sha256:").chars().take(12).collect::<String>());
                bar.set_position(done);
                self.bars.insert(digest, bar);
            }
            TransferEvent::Progress { digest, bytes } => {
                if let Some(bar) = self.bars.get(&digest) {
                    bar.inc(bytes);
                }
            }
            TransferEvent::Finish { digest, skipped } => {
                if let Some(bar) = self.bars.get(&digest) {
                    if skipped {
                        bar.set_position(bar.length().unwrap_or(0));
                    }
                    bar.finish();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_take_binary_suffixes() {
        assert_eq!(parse_bytes("64M"), Ok(64 << 20));
        assert_eq!(parse_bytes("8MiB"), Ok(8 << 20));
        assert_eq!(parse_bytes("4k"), Ok(4096));
        assert_eq!(parse_bytes("1000"), Ok(1000));
        assert!(parse_bytes("0").is_err());
        assert!(parse_bytes("lots").is_err());
    }
}
