//! `medllm finetune`: LoRA or full fine-tuning through llama.cpp's training path.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::{Args, ValueEnum};

use super::{GlobalOptions, Outcome, options};
use crate::atomic_file::InputFiles;
use crate::llama::Optimizer;
use crate::train::{
    DataFormat, FinetuneSettings, LogRecord, Method, Overlong, Schedule, TrainObserver, finetune,
};

#[derive(Debug, Args)]
pub(crate) struct FinetuneArgs {
    /// The base model (GGUF). LoRA trains on top of it as loaded, quantized or not; --full
    /// dequantises a quantized base to F32 first.
    #[arg(short, long, value_name = "BASE.gguf")]
    model: PathBuf,
    /// Training data: chat JSONL (`messages`, as `medllm prepare` writes), or with --text
    /// JSONL with `text` or a plain text file.
    #[arg(long, value_name = "FILE")]
    train: PathBuf,
    /// Validation data in the same format: its loss is logged each epoch (and --eval-every).
    #[arg(long, value_name = "FILE")]
    val: Option<PathBuf>,
    /// Output folder: adapter.gguf (or model.gguf with --full), train_log.jsonl, loss.png,
    /// checkpoint/.
    #[arg(short, long, value_name = "DIR")]
    output: PathBuf,
    /// LoRA rank.
    #[arg(long, value_name = "R", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    lora_rank: u32,
    /// LoRA alpha: the update is scaled by alpha/rank.
    #[arg(long, value_name = "A", default_value_t = 32.0, value_parser = options::positive_f32)]
    lora_alpha: f32,
    /// Weight kinds LoRA adapts, comma-separated.
    #[arg(
        long,
        value_name = "KINDS",
        value_delimiter = ',',
        default_value = "attn_q,attn_k,attn_v,attn_output,ffn_gate,ffn_up,ffn_down"
    )]
    lora_targets: Vec<String>,
    /// Train every weight instead of an adapter (needs F32 weights: about 16 bytes per
    /// parameter with AdamW).
    #[arg(long, conflicts_with_all = ["lora_rank", "lora_alpha", "lora_targets"])]
    full: bool,
    /// Plain text for continued pre-training instead of chat.
    #[arg(long)]
    text: bool,
    #[command(flatten)]
    template: super::options::ChatTemplateOptions,
    /// Also put the loss on prompt tokens (default: responses only).
    #[arg(long)]
    train_on_prompt: bool,
    /// Training context: tokens per window, a multiple of 256 (llama.cpp's context
    /// granularity: the window must fill the context for the K and V projections to train)
    #[arg(short = 'c', long, value_name = "TOKENS", default_value_t = 512, value_parser = parse_window)]
    ctx: u32,
    /// One example per window instead of packing several.
    #[arg(long)]
    no_packing: bool,
    /// Examples longer than --ctx: skip them or keep their first --ctx tokens.
    #[arg(long, value_enum, default_value_t = OverlongArg::Skip)]
    overlong: OverlongArg,
    /// Passes over the training data.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    epochs: u32,
    /// Stop after this many steps (one step = one window).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_steps: Option<u64>,
    /// Stop after this many minutes, writing the output and a checkpoint.
    #[arg(long, value_name = "MIN", value_parser = options::positive_f64)]
    max_minutes: Option<f64>,
    /// Peak learning rate.
    #[arg(long, value_name = "LR", default_value_t = 1e-3, value_parser = options::positive_f32)]
    lr: f32,
    /// Steps of linear warm-up.
    #[arg(long, value_name = "N", default_value_t = 10)]
    warmup: u64,
    /// Learning-rate decay after warm-up.
    #[arg(long, value_enum, default_value_t = ScheduleArg::Cosine)]
    schedule: ScheduleArg,
    /// Optimizer.
    #[arg(long, value_enum, default_value_t = OptimizerArg::Adamw)]
    optimizer: OptimizerArg,
    /// Weight decay (decoupled for AdamW).
    #[arg(long, value_name = "WD", default_value_t = 0.0, value_parser = options::unit_f32)]
    weight_decay: f32,
    /// Windows per optimizer step: their gradients are averaged, as in one batch of N windows
    /// (steps, --max-steps, --warmup and checkpoints count optimizer steps)
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    grad_accum: u32,
    /// Seed of the data order and the adapter's start.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Threads (default: all cores).
    #[arg(short = 't', long, value_name = "N", value_parser = clap::value_parser!(i32).range(1..))]
    threads: Option<i32>,
    /// Validate every N steps as well as at each epoch's end.
    #[arg(long, value_name = "N", default_value_t = 0)]
    eval_every: u64,
    /// Write a checkpoint every N steps (always on Ctrl-C and at --max-minutes).
    #[arg(long, value_name = "N", default_value_t = 100)]
    checkpoint_every: u64,
    /// Continue from a checkpoint folder (OUT/checkpoint), with the same settings.
    #[arg(long, value_name = "DIR")]
    resume: Option<PathBuf>,
    /// Print the report as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OverlongArg {
    Skip,
    Truncate,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ScheduleArg {
    Cosine,
    Linear,
    Constant,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OptimizerArg {
    Adamw,
    Sgd,
}

/// A progress bar with loss and ETA on a terminal; a line per --eval-every or per 10 steps
/// with --verbose otherwise; nothing with --quiet.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    verbose: bool,
    quiet: bool,
}

impl TrainObserver for Progress {
    fn step(&mut self, record: &LogRecord, planned_steps: u64) {
        let val = record.val_loss.map_or(String::new(), |v| format!(" val {v:.4}"));
        let message =
            format!("loss {:.4}{val} lr {:.2e} {:.0} tok/s", record.loss, record.lr, record.tokens_per_s);
        if let Some(bar) = &self.bar {
            bar.set_length(planned_steps);
            bar.set_position(record.step);
            bar.set_message(message);
        } else if self.verbose || (!self.quiet && record.val_loss.is_some()) {
            eprintln!("step {}/{planned_steps} epoch {:.2} {message}", record.step, record.epoch);
        }
    }

    fn note(&mut self, message: &str) {
        if self.quiet {
            return;
        }
        match &self.bar {
            Some(bar) => bar.println(format!("note: {message}")),
            None => eprintln!("note: {message}"),
        }
    }
}

pub(crate) fn run(args: FinetuneArgs, global: &GlobalOptions) -> Result<Outcome> {
    // What the run writes into --output; the checkpoint it resumes from is rewritten there
    // by design, so only the base and the data are inputs to protect.
    let inputs =
        InputFiles::new([args.model.as_path(), args.train.as_path()].into_iter().chain(args.val.as_deref()));
    for name in ["adapter.gguf", "model.gguf", "train_log.jsonl", "loss.png"] {
        inputs.check(&args.output.join(name))?;
    }
    for name in ["adapter.gguf", "model.gguf", "optimizer.gguf", "state.json"] {
        inputs.check(&args.output.join("checkpoint").join(name))?;
    }
    let settings = FinetuneSettings {
        model: args.model.clone(),
        train: args.train.clone(),
        val: args.val.clone(),
        output: args.output.clone(),
        method: if args.full {
            Method::Full
        } else {
            Method::Lora { rank: args.lora_rank, alpha: args.lora_alpha, targets: args.lora_targets.clone() }
        },
        format: if args.text { DataFormat::Text } else { DataFormat::Chat },
        chat_template: args.template.chat_template.clone(),
        train_on_prompt: args.train_on_prompt,
        ctx: args.ctx,
        pack: !args.no_packing,
        overlong: match args.overlong {
            OverlongArg::Skip => Overlong::Skip,
            OverlongArg::Truncate => Overlong::Truncate,
        },
        epochs: args.epochs,
        max_steps: args.max_steps,
        max_minutes: args.max_minutes,
        learning_rate: args.lr,
        warmup_steps: args.warmup,
        schedule: match args.schedule {
            ScheduleArg::Cosine => Schedule::Cosine,
            ScheduleArg::Linear => Schedule::Linear,
            ScheduleArg::Constant => Schedule::Constant,
        },
        optimizer: match args.optimizer {
            OptimizerArg::Adamw => Optimizer::AdamW,
            OptimizerArg::Sgd => Optimizer::Sgd,
        },
        weight_decay: args.weight_decay,
        grad_accumulation: args.grad_accum,
        seed: args.seed,
        threads: args.threads.unwrap_or_else(crate::llama::default_threads),
        eval_every: args.eval_every,
        checkpoint_every: args.checkpoint_every,
        resume: args.resume.clone(),
    };

    // Ctrl-C (or SIGTERM) ends the run after the current window with a checkpoint; a
    // second one ends it at once, removing the files half-written.
    crate::interrupt::stop_on_request();

    let terminal = std::io::stderr().is_terminal();
    let bar = (!global.quiet && terminal).then(|| {
        let bar = indicatif::ProgressBar::new(0).with_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}  ETA {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        bar
    });
    let mut progress = Progress { bar, verbose: global.verbose, quiet: global.quiet };
    let report = finetune(&settings, &mut progress, crate::interrupt::stop_flag());
    if let Some(bar) = &progress.bar {
        bar.finish_and_clear();
    }
    let report = report.with_context(|| format!("fine-tuning {} failed", args.model.display()))?;

    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if !global.quiet {
        let val = match (report.val_loss_before, report.val_loss_after) {
            (Some(before), Some(after)) => format!(", val loss {before:.4} → {after:.4}"),
            (None, Some(after)) => format!(", val loss {after:.4}"),
            _ => String::new(),
        };
        eprintln!(
            "wrote {} after {} of {} steps ({} examples, {} windows per epoch): train loss {:.4} → {:.4}{val}; \
             {:.0} tokens/s, {:.1} s",
            report.output.display(),
            report.steps,
            report.planned_steps,
            report.examples,
            report.windows_per_epoch,
            report.train_loss_start,
            report.train_loss_end,
            report.tokens_per_s,
            report.elapsed
        );
    }
    // Stopped by a signal (not by --max-minutes): the output and checkpoint were written,
    // yet the run did not finish, which scripts and schedulers must be able to tell.
    if report.interrupted && crate::interrupt::stop_requested() {
        return Ok(Outcome::Interrupted);
    }
    Ok(if report.bad_lines.is_empty() { Outcome::Success } else { Outcome::SomeInputsFailed })
}

fn parse_window(text: &str) -> Result<u32, String> {
    let tokens: u32 = text.parse().map_err(|_| format!("`{text}` is not a number of tokens"))?;
    if tokens == 0 || !tokens.is_multiple_of(256) {
        return Err(format!("{tokens} is not a multiple of 256 (try {})", tokens.div_ceil(256).max(1) * 256));
    }
    Ok(tokens)
}
