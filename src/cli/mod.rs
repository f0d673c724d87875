//! The command line: clap arguments become plain settings, handed to the library.
//! Exit codes: 0 ok, 1 some input failed (the rest was processed), 2 usage or internal error,
//! 130 interrupted by a signal (Ctrl-C, SIGTERM).

mod deid;
pub mod dev;
mod diff;
mod escape;
mod eval;
mod extract;
mod finetune;
mod generate;
mod info;
mod lora;
mod ollama;
mod options;
mod prepare;
mod progress;
mod quality;
mod quantize;
mod serve;
mod synth;

use std::io;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// What a finished command reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything succeeded.
    Success,
    /// Some inputs failed and were reported; the rest were processed.
    SomeInputsFailed,
    /// A signal stopped the run; what finished was kept and reported.
    Interrupted,
}

/// The command line of `medllm`.
#[derive(Debug, Parser)]
#[command(
    name = "medllm",
    version,
    about = "Run language models on medical text, offline, on llama.cpp.",
    long_about = None,
    propagate_version = true
)]
pub struct Cli {
    /// Print progress details, timings and llama.cpp warnings to stderr.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Print nothing but results and errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show what a GGUF model file holds: architecture, size, context, vocabulary, types.
    Info(info::InfoArgs),
    /// Generate text from a prompt, streamed to stdout.
    Generate(generate::GenerateArgs),
    /// Extract schema-valid JSON from medical documents, each value traced to the source.
    Extract(extract::ExtractArgs),
    /// Find and replace PHI (all 18 HIPAA Safe Harbor identifier types) in documents.
    Deid(deid::DeidArgs),
    /// Turn documents into de-identified chat-format train/val/test sets for fine-tuning.
    Prepare(prepare::PrepareArgs),
    /// Write synthetic clinical documents with gold PHI spans and gold extractions.
    Synth(synth::SynthArgs),
    /// Evaluate: score predictions against gold labels.
    Eval(eval::EvalArgs),
    /// Fine-tune a model (LoRA or full) through llama.cpp's training path.
    Finetune(finetune::FinetuneArgs),
    /// Package a GGUF as an Ollama model, install it, and push or pull it over a registry.
    Ollama(ollama::OllamaArgs),
    /// Quantize (or dequantize) a GGUF model with llama.cpp's quantizer.
    Quantize(quantize::QuantizeArgs),
    /// LoRA adapters: convert PEFT adapters to GGUF, merge adapters into a base model.
    Lora(lora::LoraArgs),
    /// Compare a model with a reference on a text: perplexity, KL divergence, top-1 agreement.
    Quality(quality::QualityArgs),
    /// Show how two GGUF files differ in metadata, tensor types and shapes.
    Diff(diff::DiffArgs),
    /// Serve a model over HTTP: Ollama- and OpenAI-compatible API, extraction API, web page.
    Serve(serve::ServeArgs),
    /// Developer tools (tiny test models).
    #[command(hide = true)]
    Dev(dev::DevArgs),
}

/// Runs the parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    init_logging(cli.verbose, cli.quiet);
    let global = GlobalOptions { verbose: cli.verbose, quiet: cli.quiet };
    let result = match cli.command {
        Command::Info(args) => info::run(args, &global),
        Command::Generate(args) => generate::run(args, &global),
        Command::Extract(args) => extract::run(args, &global),
        Command::Deid(args) => deid::run(args, &global),
        Command::Prepare(args) => prepare::run(args, &global),
        Command::Synth(args) => synth::run(args, &global),
        Command::Eval(args) => eval::run(args, &global),
        Command::Finetune(args) => finetune::run(args, &global),
        Command::Ollama(args) => ollama::run(args, &global),
        Command::Quantize(args) => quantize::run(args, &global),
        Command::Lora(args) => lora::run(args, &global),
        Command::Quality(args) => quality::run(args, &global),
        Command::Diff(args) => diff::run(args, &global),
        Command::Serve(args) => serve::run(args, &global),
        Command::Dev(args) => dev::run(args, &global),
    };
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::SomeInputsFailed) => ExitCode::from(1),
        Ok(Outcome::Interrupted) => ExitCode::from(crate::interrupt::INTERRUPTED_EXIT_CODE),
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// Flags every subcommand sees.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GlobalOptions {
    pub verbose: bool,
    pub quiet: bool,
}

/// A reader that went away (`medllm ... | head`) is not an error.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| e.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe))
}

/// Logs go to stderr. `MEDLLM_LOG` (tracing filter syntax) overrides the defaults; llama.cpp's
/// own messages appear under the target `llama.cpp`.
fn init_logging(verbose: bool, quiet: bool) {
    let default = if quiet {
        "error,llama.cpp=off"
    } else if verbose {
        "info,llama.cpp=warn"
    } else {
        "warn,llama.cpp=error"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("MEDLLM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_target(true)
        .without_time()
        .try_init();
}
