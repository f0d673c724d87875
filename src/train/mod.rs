//! Fine-tuning through llama.cpp's own training path (with medllm's patches): chat or text
//! data → packed windows with response-only labels → a LoRA adapter or a full model.
//!
//! The loop is ours: data order, learning-rate schedule, validation, checkpoints (adapter or
//! weights, optimizer state, data position) and stopping on request; each window is one call
//! into llama.cpp ([`crate::llama::Trainer::window`]).

mod data;
mod schedule;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};

pub use data::{BadLine, DataFormat, Example, LoadedData, Overlong, Window, load_examples, pack_windows};
pub use schedule::{LearningRateSchedule, Schedule};

use crate::atomic_file::{write_atomically, write_through_temp_path};
use crate::data::rng::SeededRng;
use crate::gguf::{GgmlType, GgufFile};
use crate::llama::{
    LlamaError, LoraAdapter, LoraInit, Model, ModelParams, Optimizer, OptimizerStep, Token, Trainable,
    Trainer, TrainerParams,
};

/// The weight kinds LoRA adapts by default: every linear map of attention and MLP.
pub const DEFAULT_TARGETS: [&str; 7] =
    ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"];

/// What is trained.
#[derive(Debug, Clone, PartialEq)]
pub enum Method {
    /// A LoRA adapter; the base stays frozen.
    Lora {
        /// Rank.
        rank: u32,
        /// Alpha (the update is scaled by alpha / rank).
        alpha: f32,
        /// Weight kinds to adapt.
        targets: Vec<String>,
    },
    /// Every F32 weight of the model (quantized bases are dequantised first).
    Full,
}

/// Everything a fine-tuning run needs.
#[derive(Debug, Clone)]
pub struct FinetuneSettings {
    /// The base model.
    pub model: PathBuf,
    /// Training data.
    pub train: PathBuf,
    /// Validation data (optional).
    pub val: Option<PathBuf>,
    /// Output folder: the adapter or model, `train_log.jsonl`, `loss.png`, `checkpoint/`.
    pub output: PathBuf,
    /// LoRA or full.
    pub method: Method,
    /// Chat or plain text.
    pub format: DataFormat,
    /// How chat lines become text (`--chat-template`); `None`: the model's own chat
    /// template, else plain text (noted once).
    pub chat_template: Option<crate::llama::ChatTemplateArg>,
    /// Put the loss on prompt tokens too.
    pub train_on_prompt: bool,
    /// Tokens per window.
    pub ctx: u32,
    /// Pack several examples into one window.
    pub pack: bool,
    /// Examples longer than `ctx`.
    pub overlong: Overlong,
    /// Passes over the training data.
    pub epochs: u32,
    /// Stop after this many optimizer steps.
    pub max_steps: Option<u64>,
    /// Stop (with a final checkpoint and output) after this many minutes.
    pub max_minutes: Option<f64>,
    /// Peak learning rate.
    pub learning_rate: f32,
    /// Steps of linear warm-up.
    pub warmup_steps: u64,
    /// Decay after warm-up.
    pub schedule: Schedule,
    /// Optimizer.
    pub optimizer: Optimizer,
    /// Weight decay.
    pub weight_decay: f32,
    /// Windows whose gradients are averaged into one optimizer step (1: a step per window).
    pub grad_accumulation: u32,
    /// Seed of data order and adapter initialisation.
    pub seed: u64,
    /// CPU threads.
    pub threads: i32,
    /// Validate every this many steps (0: at the end of each epoch only).
    pub eval_every: u64,
    /// Checkpoint every this many steps (0: only when stopping).
    pub checkpoint_every: u64,
    /// Continue from this checkpoint folder.
    pub resume: Option<PathBuf>,
}

/// One line of `train_log.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogRecord {
    /// Optimizer step (1-based).
    pub step: u64,
    /// Epoch, fractional (1.5 = half-way through the second).
    pub epoch: f64,
    /// Training loss of this step's window (mean over its trained tokens).
    pub loss: f64,
    /// Validation loss, on the steps that validated.
    pub val_loss: Option<f64>,
    /// Learning rate used.
    pub lr: f64,
    /// Tokens per second over the run so far (all window tokens, padding excluded).
    pub tokens_per_s: f64,
    /// Seconds since the start of this run (a resumed run starts again at 0).
    pub elapsed: f64,
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct FinetuneReport {
    /// The adapter or model written.
    pub output: PathBuf,
    /// Steps taken in total (including those before a resume).
    pub steps: u64,
    /// Steps planned.
    pub planned_steps: u64,
    /// Training examples used, windows per epoch.
    pub examples: usize,
    /// Windows per epoch.
    pub windows_per_epoch: usize,
    /// Lines that could not be read (train and val).
    pub bad_lines: Vec<(String, usize, String)>,
    /// Examples left out for being longer than the window.
    pub skipped_overlong: usize,
    /// Examples cut to the window.
    pub truncated: usize,
    /// Validation loss before training and after.
    pub val_loss_before: Option<f64>,
    /// Validation loss at the end.
    pub val_loss_after: Option<f64>,
    /// Mean training loss of the first and last 10% of steps of this run.
    pub train_loss_start: f64,
    /// See `train_loss_start`.
    pub train_loss_end: f64,
    /// Tokens per second over the run.
    pub tokens_per_s: f64,
    /// Seconds.
    pub elapsed: f64,
    /// Stopped by a signal or the time budget before the plan was done.
    pub interrupted: bool,
    /// Notes for the user (dequantisation, memory).
    pub notes: Vec<String>,
}

/// Where the run is, saved with every checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct CheckpointState {
    step: u64,
    seed: u64,
    model: String,
    method: String,
    ctx: u32,
    /// Absent in checkpoints written before accumulation could be set: 1.
    #[serde(default = "one")]
    grad_accumulation: u32,
}

fn one() -> u32 {
    1
}

/// Why fine-tuning stopped.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// llama.cpp failed.
    #[error(transparent)]
    Llama(#[from] LlamaError),
    /// A file could not be read or written.
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// An output could not be written.
    #[error("cannot write the output")]
    Write(#[from] std::io::Error),
    /// Nothing to train on.
    #[error("no usable training example in {path} ({detail})")]
    NoData {
        /// The file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
    /// The settings do not fit together.
    #[error("{0}")]
    Settings(String),
    /// The loss or the weights became NaN or infinite (a learning rate too high, broken
    /// data or a broken model): nothing is written from those weights.
    #[error(
        "training went non-finite at step {step}: {what}; the run stopped without writing the output or a checkpoint from it. {kept}. Lower --lr or check the data and the model"
    )]
    NonFinite {
        /// The step (0: before training).
        step: u64,
        /// What was found (`the training loss is NaN`, a tensor's name).
        what: String,
        /// Which checkpoint is the last good one, if any.
        kept: String,
    },
    /// Dequantising the base for full fine-tuning failed.
    #[error("cannot dequantise the base to F32: {0}")]
    Dequantize(String),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io { path: path.to_path_buf(), source }
}

/// Receives progress as training goes.
pub trait TrainObserver {
    /// A step finished.
    fn step(&mut self, record: &LogRecord, planned_steps: u64);
    /// Something the user should know (plain text, no data).
    fn note(&mut self, message: &str);
}

/// Runs fine-tuning as `settings` say. `stop` set (by Ctrl-C) ends the run after the current
/// window with a checkpoint and the output written.
pub fn finetune(
    settings: &FinetuneSettings,
    observer: &mut dyn TrainObserver,
    stop: &AtomicBool,
) -> Result<FinetuneReport, TrainError> {
    if settings.ctx < 32 {
        return Err(TrainError::Settings(format!("--ctx {} is too short to train on", settings.ctx)));
    }
    if settings.epochs == 0 && settings.max_steps.is_none() {
        return Err(TrainError::Settings("--epochs 0 without --max-steps trains nothing".into()));
    }
    std::fs::create_dir_all(&settings.output).map_err(io_error(&settings.output))?;
    let mut notes = Vec::new();
    let full = settings.method == Method::Full;
    // A full run resumes from the checkpoint's weights; LoRA from the base and the checkpoint's adapter.
    let model_path = match (&settings.resume, full) {
        (Some(dir), true) => dir.join("model.gguf"),
        (None, true) => f32_base(settings, &mut notes, observer)?,
        (_, false) => settings.model.clone(),
    };
    // No repacked weights: the backward pass dequantises the frozen base's matrices.
    let model = Model::load(&model_path, &ModelParams { use_mmap: !full, vocab_only: false, repack: false })?;
    if !full && !base_is_f32(&settings.model)? {
        let note = "the base stays in its quantized type; gradients flow through it to the F32 adapter";
        observer.note(note);
        notes.push(note.into());
    }

    let window = settings.ctx as usize;
    let resolved = crate::llama::resolve_template(settings.chat_template.as_ref(), model.chat_template())?;
    if resolved.fell_back && settings.format == DataFormat::Chat {
        observer.note(crate::llama::NO_TEMPLATE_NOTE);
        notes.push(crate::llama::NO_TEMPLATE_NOTE.into());
    }
    let prompt_format = resolved.format;
    let train = load_examples(
        &model,
        &prompt_format,
        &settings.train,
        settings.format,
        settings.train_on_prompt,
        window,
        settings.overlong,
    )
    .map_err(io_error(&settings.train))?;
    let val = match &settings.val {
        Some(path) => Some(
            load_examples(
                &model,
                &prompt_format,
                path,
                settings.format,
                settings.train_on_prompt,
                window,
                settings.overlong,
            )
            .map_err(io_error(path))?,
        ),
        None => None,
    };
    let mut bad_lines: Vec<(String, usize, String)> = Vec::new();
    let all_bad: Vec<&BadLine> =
        train.bad_lines.iter().chain(val.iter().flat_map(|v| v.bad_lines.iter())).collect();
    for note in bad_line_notes(&all_bad) {
        observer.note(&note);
    }
    for bad in all_bad {
        bad_lines.push((bad.file.display().to_string(), bad.line, bad.reason.clone()));
    }
    if train.examples.is_empty() {
        return Err(TrainError::NoData {
            path: settings.train.clone(),
            detail: format!(
                "{} bad lines, {} longer than --ctx {}, {} without a response",
                train.bad_lines.len(),
                train.skipped_overlong,
                settings.ctx,
                train.empty
            ),
        });
    }
    let skipped = train.skipped_overlong + val.as_ref().map_or(0, |v| v.skipped_overlong);
    let truncated = train.truncated + val.as_ref().map_or(0, |v| v.truncated);
    if skipped > 0 || truncated > 0 {
        observer.note(&format!(
            "{skipped} examples longer than --ctx {} left out, {truncated} truncated",
            settings.ctx
        ));
    }
    let pad = model.eos().or(model.bos()).unwrap_or(Token(0));
    let val_windows: Vec<Window> = val
        .as_ref()
        .map(|v| pack_windows(&v.examples.iter().collect::<Vec<_>>(), window, pad, settings.pack))
        .unwrap_or_default();
    let windows_per_epoch =
        pack_windows(&train.examples.iter().collect::<Vec<_>>(), window, pad, settings.pack).len();
    let accumulation = settings.grad_accumulation.max(1) as u64;
    // A step is `accumulation` windows; windows left over at the end make no step.
    let mut planned_steps = (settings.epochs as u64 * windows_per_epoch as u64 / accumulation).max(1);
    if let Some(max) = settings.max_steps {
        planned_steps = if settings.epochs == 0 { max } else { planned_steps.min(max) };
    }

    // The adapter: fresh, or the checkpoint's.
    let resume_state = match &settings.resume {
        Some(dir) => Some(read_checkpoint_state(dir, settings)?),
        None => None,
    };
    let adapter = match (&settings.method, &settings.resume) {
        (Method::Lora { .. }, Some(dir)) => Some(LoraAdapter::load(&model, &dir.join("adapter.gguf"))?),
        (Method::Lora { rank, alpha, targets }, None) => Some(LoraAdapter::new_trainable(
            &model,
            &LoraInit { rank: *rank, alpha: *alpha, targets: targets.clone(), seed: settings.seed },
        )?),
        (Method::Full, _) => None,
    };
    let adapters: Vec<&LoraAdapter<'_>> = adapter.iter().collect();
    let mut trainer = Trainer::new(
        &model,
        &adapters,
        &TrainerParams {
            window: settings.ctx,
            threads: settings.threads,
            optimizer: settings.optimizer,
            grad_accumulation: accumulation as u32,
            trainable: if full { Trainable::AllModelTensors } else { Trainable::AdaptersOnly },
        },
    )?;
    let mut step = 0u64;
    if let (Some(state), Some(dir)) = (&resume_state, &settings.resume) {
        trainer.load_state(&dir.join("optimizer.gguf"))?;
        step = state.step;
        observer.note(&format!("resuming at step {step} of {planned_steps}"));
    }

    let schedule = LearningRateSchedule {
        peak: settings.learning_rate,
        warmup_steps: settings.warmup_steps,
        total_steps: planned_steps,
        schedule: settings.schedule,
    };
    let validate = |trainer: &mut Trainer<'_>| -> Result<Option<f64>, TrainError> {
        if val_windows.is_empty() {
            return Ok(None);
        }
        let (mut sum, mut weight) = (0.0, 0usize);
        for w in &val_windows {
            sum += trainer.window(&w.tokens, &w.labels, false)? * w.trained as f64;
            weight += w.trained;
        }
        Ok(Some(sum / weight.max(1) as f64))
    };
    let val_loss_before = if resume_state.is_none() { validate(&mut trainer)? } else { None };
    // The last checkpoint known good (finite loss, finite weights): the one resumed from,
    // then each one written.
    let mut last_good_checkpoint = settings.resume.clone().map(|dir| (step, dir));
    if let Some(loss) = val_loss_before.filter(|l| !l.is_finite()) {
        let what = format!("the validation loss before training is {loss}");
        return Err(naming_last_good(TrainError::NonFinite { step: 0, what, kept: String::new() }, &None));
    }
    if let Some(loss) = val_loss_before {
        observer.note(&format!("validation loss before training: {loss:.4}"));
    }

    let log_path = settings.output.join("train_log.jsonl");
    let mut log_lines = if resume_state.is_some() {
        std::fs::read_to_string(&log_path).unwrap_or_default()
    } else {
        String::new()
    };
    let mut history: Vec<LogRecord> =
        log_lines.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let started = Instant::now();
    let mut tokens_seen = 0usize;
    let mut losses_this_run = Vec::new();
    let mut val_loss_after = val_loss_before;
    let mut interrupted = false;
    let mut validated_last_step = false;
    let checkpoint_dir = settings.output.join("checkpoint");
    let save_checkpoint =
        |trainer: &Trainer<'_>, adapter: Option<&LoraAdapter<'_>>, model: &Model, step: u64| {
            write_checkpoint(&checkpoint_dir, settings, trainer, adapter, model, step)
        };

    // Windows trained so far, and the losses of the step in progress.
    let mut windows_done = step * accumulation;
    let mut step_losses: Vec<(f64, usize)> = Vec::new();
    'epochs: while step < planned_steps {
        // Data order: a shuffle per epoch from the seed, so a resumed run sees the same order.
        let epoch = windows_done / windows_per_epoch.max(1) as u64;
        let mut order: Vec<&Example> = train.examples.iter().collect();
        let mut rng = SeededRng::keyed(settings.seed, &format!("epoch {epoch}"));
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i + 1));
        }
        let windows = pack_windows(&order, window, pad, settings.pack);
        let first = (windows_done % windows_per_epoch.max(1) as u64) as usize;
        for w in windows.iter().skip(first) {
            if step >= planned_steps {
                break 'epochs;
            }
            let lr = schedule.at(step);
            trainer.set_step(OptimizerStep {
                learning_rate: lr,
                weight_decay: settings.weight_decay,
                ..OptimizerStep::default()
            });
            // The optimizer updates after the last window of each accumulation period.
            let window_loss = trainer.window(&w.tokens, &w.labels, true)?;
            windows_done += 1;
            tokens_seen += w.tokens.len();
            step_losses.push((window_loss, w.trained));
            if !windows_done.is_multiple_of(accumulation) {
                continue;
            }
            // The step's loss: the mean over its windows' trained tokens.
            let trained: usize = step_losses.iter().map(|(_, n)| n).sum();
            let loss = if trained == 0 {
                step_losses.iter().map(|(l, _)| l).sum::<f64>() / step_losses.len() as f64
            } else {
                step_losses.iter().map(|(l, n)| l * *n as f64).sum::<f64>() / trained as f64
            };
            step_losses.clear();
            step += 1;
            losses_this_run.push(loss);
            let elapsed = started.elapsed().as_secs_f64();
            // An epoch ended within this step's windows (a step can straddle two epochs).
            let per_epoch = windows_per_epoch.max(1) as u64;
            let end_of_epoch = (windows_done - accumulation) / per_epoch != windows_done / per_epoch
                || step == planned_steps;
            let validate_now =
                (settings.eval_every > 0 && step.is_multiple_of(settings.eval_every)) || end_of_epoch;
            let val_loss = if validate_now { validate(&mut trainer)? } else { None };
            validated_last_step = validate_now;
            if val_loss.is_some() {
                val_loss_after = val_loss;
            }
            let record = LogRecord {
                step,
                epoch: windows_done as f64 / windows_per_epoch as f64,
                loss,
                val_loss,
                lr: lr as f64,
                tokens_per_s: tokens_seen as f64 / elapsed.max(1e-9),
                elapsed,
            };
            observer.step(&record, planned_steps);
            log_lines.push_str(&serde_json::to_string(&record).unwrap_or_default());
            log_lines.push('\n');
            history.push(record);
            // The update that followed a non-finite loss spoilt the weights: keep the log
            // (it shows where), write nothing from them, leave the last checkpoint alone.
            let bad = [("training", Some(loss)), ("validation", val_loss)]
                .into_iter()
                .find_map(|(which, l)| l.filter(|l| !l.is_finite()).map(|l| (which, l)));
            if let Some((which, value)) = bad {
                write_atomically(&log_path, |w| std::io::Write::write_all(w, log_lines.as_bytes()))
                    .map_err(io_error(&log_path))?;
                let what = format!("the {which} loss is {value}");
                let error = TrainError::NonFinite { step, what, kept: String::new() };
                return Err(naming_last_good(error, &last_good_checkpoint));
            }
            let out_of_time = settings.max_minutes.is_some_and(|m| elapsed >= m * 60.0);
            if stop.load(Ordering::Relaxed) || out_of_time {
                interrupted = step < planned_steps;
                break 'epochs;
            }
            if settings.checkpoint_every > 0
                && step.is_multiple_of(settings.checkpoint_every)
                && step < planned_steps
            {
                write_atomically(&log_path, |w| std::io::Write::write_all(w, log_lines.as_bytes()))
                    .map_err(io_error(&log_path))?;
                save_checkpoint(&trainer, adapter.as_ref(), &model, step)
                    .map_err(|e| naming_last_good(e, &last_good_checkpoint))?;
                last_good_checkpoint = Some((step, checkpoint_dir.clone()));
            }
        }
    }
    if interrupted {
        // The stopping step may have validated already; the validation set is not run twice.
        if !validated_last_step && let Some(loss) = validate(&mut trainer)? {
            val_loss_after = Some(loss);
        }
        save_checkpoint(&trainer, adapter.as_ref(), &model, step)
            .map_err(|e| naming_last_good(e, &last_good_checkpoint))?;
        observer.note(&format!(
            "stopped at step {step} of {planned_steps}; continue with --resume {}",
            checkpoint_dir.display()
        ));
    }
    write_atomically(&log_path, |w| std::io::Write::write_all(w, log_lines.as_bytes()))
        .map_err(io_error(&log_path))?;
    let png = settings.output.join("loss.png");
    if let Err(e) = loss_curve(&history, &png) {
        observer.note(&format!("no loss curve: {e}"));
    }
    drop(trainer);
    let output = match &adapter {
        Some(adapter) => {
            let path = settings.output.join("adapter.gguf");
            write_through_temp_path(&path, |temp| {
                adapter.save(temp)?;
                refuse_non_finite_weights(temp, step)
            })
            .map_err(|e| naming_last_good(e, &last_good_checkpoint))?;
            path
        }
        None => {
            let path = settings.output.join("model.gguf");
            write_through_temp_path(&path, |temp| {
                model.save(temp)?;
                refuse_non_finite_weights(temp, step)
            })
            .map_err(|e| naming_last_good(e, &last_good_checkpoint))?;
            path
        }
    };
    let tenth = (losses_this_run.len() / 10).max(1);
    let mean = |xs: &[f64]| if xs.is_empty() { f64::NAN } else { xs.iter().sum::<f64>() / xs.len() as f64 };
    let elapsed = started.elapsed().as_secs_f64();
    Ok(FinetuneReport {
        output,
        steps: step,
        planned_steps,
        examples: train.examples.len(),
        windows_per_epoch,
        bad_lines,
        skipped_overlong: skipped,
        truncated,
        val_loss_before,
        val_loss_after,
        train_loss_start: mean(&losses_this_run[..tenth.min(losses_this_run.len())]),
        train_loss_end: mean(&losses_this_run[losses_this_run.len().saturating_sub(tenth)..]),
        tokens_per_s: tokens_seen as f64 / elapsed.max(1e-9),
        elapsed,
        interrupted,
        notes,
    })
}

/// Training loss per step and validation loss where measured, as a PNG.
fn loss_curve(history: &[LogRecord], path: &Path) -> Result<(), crate::eval::EvalError> {
    use crate::eval::chart::{Line, line_chart};
    let train = Line {
        label: "train loss".into(),
        points: history.iter().map(|r| (r.step as f64, r.loss)).collect(),
    };
    let val = Line {
        label: "validation loss".into(),
        points: history.iter().filter_map(|r| r.val_loss.map(|v| (r.step as f64, v))).collect(),
    };
    line_chart(path, "medllm finetune", "step", "loss", &[train, val])
}

fn base_is_f32(path: &Path) -> Result<bool, TrainError> {
    let header = crate::gguf::GgufFile::open(path).map_err(LlamaError::from)?;
    Ok(header
        .tensors
        .iter()
        .filter(|t| t.dims.len() == 2 && t.name.starts_with("blk."))
        .all(|t| t.ggml_type == crate::gguf::GgmlType::F32))
}

/// The base as F32, for full fine-tuning: the file itself if it is F32, else a dequantised
/// copy in the output folder (llama.cpp trains only F32 weights).
fn f32_base(
    settings: &FinetuneSettings,
    notes: &mut Vec<String>,
    observer: &mut dyn TrainObserver,
) -> Result<PathBuf, TrainError> {
    if base_is_f32(&settings.model)? {
        return Ok(settings.model.clone());
    }
    let header = crate::gguf::GgufFile::open(&settings.model).map_err(LlamaError::from)?;
    let parameters = crate::gguf::ModelSummary::of(&header).parameters;
    // F32 weights, their gradients and AdamW's two moments: four copies, plus activations.
    let note = format!(
        "full fine-tuning needs F32 weights: dequantising the base ({:.0} M parameters, {:.1} GB as F32; \
         training holds weights, gradients and two optimizer moments, about {:.1} GB plus activations)",
        parameters as f64 / 1e6,
        parameters as f64 * 4.0 / 1e9,
        parameters as f64 * 16.0 / 1e9
    );
    observer.note(&note);
    notes.push(note);
    let path = settings.output.join("base-f32.gguf");
    let quantize = crate::quant::QuantizeSettings {
        input: settings.model.clone(),
        output: Some(path.clone()),
        file_type: crate::quant::parse_file_type("f32").map_err(TrainError::Dequantize)?,
        threads: settings.threads.max(1) as usize,
        output_tensor_type: None,
        token_embedding_type: None,
        pure: true,
        dry_run: false,
        imatrix: None,
    };
    crate::quant::quantize(&quantize, |_| {}).map_err(|e| TrainError::Dequantize(crate::with_causes(&e)))?;
    Ok(path)
}

fn method_name(method: &Method) -> String {
    match method {
        Method::Lora { rank, targets, .. } => format!("lora rank {rank} on {}", targets.join(",")),
        Method::Full => "full".into(),
    }
}

fn read_checkpoint_state(dir: &Path, settings: &FinetuneSettings) -> Result<CheckpointState, TrainError> {
    let path = dir.join("state.json");
    let text = std::fs::read_to_string(&path).map_err(io_error(&path))?;
    let state: CheckpointState = serde_json::from_str(&text)
        .map_err(|e| TrainError::Settings(format!("{}: not a medllm checkpoint ({e})", path.display())))?;
    let accumulation = settings.grad_accumulation.max(1);
    if state.method != method_name(&settings.method)
        || state.ctx != settings.ctx
        || state.seed != settings.seed
        || state.grad_accumulation != accumulation
    {
        return Err(TrainError::Settings(format!(
            "the checkpoint in {} was made with {} (ctx {}, seed {}, grad-accum {}); \
             this run asks for {} (ctx {}, seed {}, grad-accum {})",
            dir.display(),
            state.method,
            state.ctx,
            state.seed,
            state.grad_accumulation,
            method_name(&settings.method),
            settings.ctx,
            settings.seed,
            accumulation
        )));
    }
    Ok(state)
}

/// Fills in which checkpoint is the last good one in a [`TrainError::NonFinite`].
fn naming_last_good(error: TrainError, last_good: &Option<(u64, PathBuf)>) -> TrainError {
    match error {
        TrainError::NonFinite { step, what, .. } => {
            let kept = match last_good {
                Some((at, dir)) => format!(
                    "The last checkpoint with a finite loss and finite weights (step {at}) is left as it was in {} (continue from it with --resume {0} and a lower --lr)",
                    dir.display()
                ),
                None => "No checkpoint was written before it".to_string(),
            };
            TrainError::NonFinite { step, what, kept }
        }
        other => other,
    }
}

/// Refuses weights just saved to `path` (before they replace anything) when an F32 tensor
/// holds NaN or infinity: the update after a huge gradient leaves such weights while the
/// loss that caused it was still finite.
fn refuse_non_finite_weights(path: &Path, step: u64) -> Result<(), TrainError> {
    let file = GgufFile::open(path).map_err(LlamaError::from)?;
    let data = file.reopen().map_err(LlamaError::from)?;
    let mut buf = Vec::new();
    for tensor in file.tensors.iter().filter(|t| t.ggml_type == GgmlType::F32) {
        file.read_tensor_data_into(&data, tensor, &mut buf).map_err(LlamaError::from)?;
        let finite = buf.chunks_exact(4).all(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]).is_finite());
        if !finite {
            let what = format!("tensor {} holds NaN or infinite values", tensor.name);
            return Err(TrainError::NonFinite { step, what, kept: String::new() });
        }
    }
    Ok(())
}

/// Adapter (or weights), optimizer state, then the position last: a checkpoint whose
/// `state.json` is there is complete. Non-finite weights are refused before anything of
/// the previous checkpoint is touched.
fn write_checkpoint(
    dir: &Path,
    settings: &FinetuneSettings,
    trainer: &Trainer<'_>,
    adapter: Option<&LoraAdapter<'_>>,
    model: &Model,
    step: u64,
) -> Result<(), TrainError> {
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    // Once the new weights are known finite, the old checkpoint stops being complete.
    let checked_then_unmark = |temp: &Path| {
        refuse_non_finite_weights(temp, step)?;
        let _ = std::fs::remove_file(dir.join("state.json"));
        Ok::<_, TrainError>(())
    };
    match adapter {
        Some(adapter) => write_through_temp_path(&dir.join("adapter.gguf"), |t| {
            adapter.save(t)?;
            checked_then_unmark(t)
        })?,
        None => write_through_temp_path(&dir.join("model.gguf"), |t| {
            model.save(t)?;
            checked_then_unmark(t)
        })?,
    }
    write_through_temp_path(&dir.join("optimizer.gguf"), |t| {
        trainer.save_state(t).map_err(TrainError::from)
    })?;
    let state = CheckpointState {
        step,
        seed: settings.seed,
        model: settings.model.display().to_string(),
        method: method_name(&settings.method),
        ctx: settings.ctx,
        grad_accumulation: settings.grad_accumulation.max(1),
    };
    let path = dir.join("state.json");
    write_atomically(&path, |w| serde_json::to_writer_pretty(w, &state).map_err(std::io::Error::other))
        .map_err(io_error(&path))
}

/// One note per file and reason, however many lines share it: `FILE:LINE: reason` for a
/// single line, `FILE: N lines (first: line L): reason` for several.
fn bad_line_notes(bad: &[&BadLine]) -> Vec<String> {
    let mut groups: Vec<(&Path, &str, usize, usize)> = Vec::new();
    for line in bad {
        match groups
            .iter_mut()
            .find(|(file, reason, _, _)| *file == line.file.as_path() && *reason == line.reason)
        {
            Some(group) => group.3 += 1,
            None => groups.push((line.file.as_path(), line.reason.as_str(), line.line, 1)),
        }
    }
    groups
        .into_iter()
        .map(|(file, reason, first, count)| {
            if count == 1 {
                format!("{}:{first}: {reason}", file.display())
            } else {
                format!("{}: {count} lines (first: line {first}): {reason}", file.display())
            }
        })
        .collect()
}
