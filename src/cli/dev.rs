//! `medllm dev`: hidden developer tools.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};

use std::time::Instant;

use super::options::ModelOptions;
use super::{GlobalOptions, Outcome};
use crate::gguf::{TinyModelSpec, write_tiny_model};
use crate::llama::{Batch, Context, ContextParams, Token};

#[derive(Debug, Args)]
pub(crate) struct DevArgs {
    #[command(subcommand)]
    command: DevCommand,
}

#[derive(Debug, Subcommand)]
enum DevCommand {
    /// Write a tiny llama-architecture GGUF with random weights (for tests and demos).
    TinyModel {
        /// Where to write it.
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
        /// Seed of the random weights.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// general.architecture to record, with that architecture's tensor layout for llama,
        /// gemma, gemma2, gemma3, qwen2, qwen3 and phi3 (other names get llama's layout).
        #[arg(long, default_value = "llama")]
        architecture: String,
        /// Leave out `tokenizer.chat_template`, as base models do.
        #[arg(long)]
        no_chat_template: bool,
    },
    /// Write a PEFT LoRA adapter folder with random weights for a GGUF base (for tests,
    /// the demo and benchmarks): every block's q/k/v/o/gate/up/down_proj.
    PeftAdapter {
        /// The GGUF base model whose shapes the adapter takes.
        #[arg(long, value_name = "BASE.gguf")]
        base: PathBuf,
        /// The folder to write.
        #[arg(short, long, value_name = "DIR")]
        output: PathBuf,
        /// Rank.
        #[arg(long, default_value_t = 16)]
        rank: usize,
        /// lora_alpha.
        #[arg(long, default_value_t = 32.0)]
        alpha: f64,
        /// Values are uniform in ±MAGNITUDE.
        #[arg(long, default_value_t = 0.02)]
        magnitude: f32,
        /// Seed of the random values.
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// Print which rule of the de-identifier found each span of a text file (this prints
    /// the text it found: for developing on synthetic or test documents only).
    ExplainDeid {
        /// The text file.
        file: PathBuf,
    },
    /// Rewrite the `--help` blocks in docs/<command>.md from the binary itself.
    SyncDocs {
        /// The docs folder.
        #[arg(long, default_value = "docs")]
        docs: PathBuf,
    },
    /// Measure the engine alone, the way llama-bench does: prompt processing of N tokens
    /// in one batch, and generation of M tokens one decode at a time, with no sampling.
    BenchEngine {
        #[command(flatten)]
        model: ModelOptions,
        /// Prompt tokens (llama-bench's pp).
        #[arg(long, default_value_t = 512)]
        prompt_tokens: usize,
        /// Generated tokens (llama-bench's tg).
        #[arg(long, default_value_t = 128)]
        gen_tokens: usize,
        /// Repetitions; the mean is printed.
        #[arg(long, default_value_t = 3)]
        repetitions: usize,
        /// Sequences generating together (one token each per decode).
        #[arg(long, default_value_t = 1)]
        sequences: usize,
    },
}

pub(crate) fn run(args: DevArgs, global: &GlobalOptions) -> Result<Outcome> {
    match args.command {
        DevCommand::TinyModel { output, seed, architecture, no_chat_template } => {
            let spec = TinyModelSpec {
                seed,
                architecture,
                chat_template: !no_chat_template,
                ..TinyModelSpec::default()
            };
            write_tiny_model(&output, &spec).with_context(|| format!("cannot write {}", output.display()))?;
            if !global.quiet {
                eprintln!("wrote {}", output.display());
            }
        }
        DevCommand::PeftAdapter { base, output, rank, alpha, magnitude, seed } => {
            let header = crate::gguf::GgufFile::open(&base)
                .with_context(|| format!("cannot read {}", base.display()))?;
            let spec = crate::lora::PeftFixtureSpec { rank, alpha, magnitude, seed, ..Default::default() };
            crate::lora::write_peft_adapter(&header, &output, &spec)
                .with_context(|| format!("cannot write {}", output.display()))?;
            if !global.quiet {
                eprintln!("wrote {}", output.display());
            }
        }
        DevCommand::ExplainDeid { file } => {
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let detector = crate::data::deid::PhiDetector::new();
            for (origin, value, category) in detector.explain(&text) {
                println!("{origin:<12} {:<10} {value:?}", category.as_str());
            }
        }
        DevCommand::SyncDocs { docs } => {
            for command in DOCUMENTED_COMMANDS {
                let page = docs.join(doc_page(command));
                let text = std::fs::read_to_string(&page)
                    .with_context(|| format!("cannot read {}", page.display()))?;
                let help = help_of(command)?;
                let updated = replace_help_block(&text, &help)
                    .with_context(|| format!("{} has no {HELP_START} … {HELP_END} block", page.display()))?;
                if updated != text {
                    crate::atomic_file::write_atomically(&page, |f| {
                        std::io::Write::write_all(f, updated.as_bytes())
                    })?;
                    eprintln!("updated {}", page.display());
                }
            }
        }
        DevCommand::BenchEngine { model, prompt_tokens, gen_tokens, repetitions, sequences } => {
            bench_engine(&model, prompt_tokens, gen_tokens, repetitions, sequences)?;
        }
    }
    Ok(Outcome::Success)
}

/// Subcommands with a page under docs/ whose `--help` block must match the binary.
pub const DOCUMENTED_COMMANDS: &[&str] = &[
    "info",
    "generate",
    "extract",
    "eval extract",
    "synth",
    "deid",
    "prepare",
    "eval deid",
    "eval mcq",
    "eval summary",
    "eval perplexity",
    "eval report",
    "eval synth-mcq",
    "ollama package",
    "ollama install",
    "ollama create",
    "ollama push",
    "ollama pull",
    "quantize",
    "lora convert",
    "lora merge",
    "quality",
    "diff",
    "finetune",
    "serve",
];
/// Marks the start of the generated block in a docs page.
pub const HELP_START: &str = "<!-- help:start -->";
/// Marks its end.
pub const HELP_END: &str = "<!-- help:end -->";

/// The docs page of a (sub)command: `eval extract` → `eval-extract.md`.
pub fn doc_page(command: &str) -> String {
    format!("{}.md", command.replace(' ', "-"))
}

/// `medllm <command> --help`, as the binary prints it.
pub fn help_of(command: &str) -> Result<String> {
    let exe = std::env::current_exe()?;
    let output = std::process::Command::new(exe)
        .args(command.split(' '))
        .arg("--help")
        .env("COLUMNS", "100")
        .output()?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The page with the text between the help markers replaced by `help` in a code block.
pub fn replace_help_block(page: &str, help: &str) -> Option<String> {
    let start = page.find(HELP_START)? + HELP_START.len();
    let end = page[start..].find(HELP_END)? + start;
    Some(format!("{}\n```text\n{}```\n{}", &page[..start], help, &page[end..]))
}

/// Prints `pp<N> <tokens/s>` and `tg<M> <tokens/s>` lines (means over the repetitions,
/// after one warm-up of each).
fn bench_engine(
    options: &ModelOptions,
    n_prompt: usize,
    n_gen: usize,
    repetitions: usize,
    sequences: usize,
) -> Result<()> {
    let model = options.load_model()?;
    let sequences = sequences.max(1);
    let params = ContextParams {
        n_ctx: ((n_prompt + n_gen + 16) * sequences) as u32,
        ..options.context_params(sequences as u32)
    };
    let mut ctx = Context::new(&model, &params)?;
    let n_vocab = model.n_vocab() as i32;
    let token = |i: usize| Token((i as i32 * 7919 + 13) % n_vocab);
    let mut batch = Batch::new(params.n_batch as usize, 1);

    let mut run_prompt = |ctx: &mut Context<'_>| -> Result<f64> {
        ctx.clear_memory();
        let started = Instant::now();
        for start in (0..n_prompt).step_by(params.n_batch as usize) {
            batch.clear();
            let end = (start + params.n_batch as usize).min(n_prompt);
            for i in start..end {
                batch.add(token(i), i as i32, &[0], i + 1 == end)?;
            }
            ctx.decode(&batch)?;
        }
        Ok(n_prompt as f64 / started.elapsed().as_secs_f64())
    };
    let mut step = Batch::new(sequences, 1);
    let mut run_gen = |ctx: &mut Context<'_>| -> Result<f64> {
        ctx.clear_memory();
        let started = Instant::now();
        for i in 0..n_gen {
            step.clear();
            for seq in 0..sequences {
                step.add(token(i + seq), i as i32, &[seq as i32], true)?;
            }
            ctx.decode(&step)?;
        }
        Ok((n_gen * sequences) as f64 / started.elapsed().as_secs_f64())
    };
    run_prompt(&mut ctx)?;
    run_gen(&mut ctx)?;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let pp: Vec<f64> = (0..repetitions.max(1)).map(|_| run_prompt(&mut ctx)).collect::<Result<_>>()?;
    let tg: Vec<f64> = (0..repetitions.max(1)).map(|_| run_gen(&mut ctx)).collect::<Result<_>>()?;
    println!("pp{n_prompt} {:.1}", mean(&pp));
    if sequences > 1 {
        println!("tg{n_gen}x{sequences} {:.1}", mean(&tg));
    } else {
        println!("tg{n_gen} {:.1}", mean(&tg));
    }
    Ok(())
}
