//! `medllm prepare`: documents → de-identified chat-format train/val/test sets.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Args;

use super::{GlobalOptions, Outcome};
use crate::atomic_file::InputFiles;
use crate::data::InputOptions;
use crate::data::deid::{DeidMode, DeidOptions};
use crate::data::prepare::{Message, PrepareOptions, SPLITS, TokenCounter, prepare};
use crate::llama::{ChatMessage, Model, ModelParams, PromptFormat};

#[derive(Debug, Args)]
pub(crate) struct PrepareArgs {
    /// Inputs: `medllm synth` folders, text folders, .txt/.md/.jsonl/.csv files.
    #[arg(value_name = "INPUT", required = true)]
    inputs: Vec<PathBuf>,
    /// Folder for train.jsonl, val.jsonl, test.jsonl, rejected.jsonl, data_card.md/.json.
    #[arg(short, long, value_name = "DIR")]
    out: PathBuf,
    /// Seed of the patient split.
    #[arg(long, value_name = "N", default_value_t = 0)]
    seed: u64,
    /// Percent of patients in train and in val; the rest go to test.
    #[arg(long, value_name = "TRAIN,VAL", default_value = "80,10", value_parser = parse_split)]
    split: (u64, u64),
    /// How PHI is replaced in training data.
    #[arg(long, value_enum, default_value_t = DeidMode::Redact)]
    deid_mode: DeidMode,
    /// Secret seed of date shifting, surrogates and the pseudonyms that replace patient and
    /// record ids in the outputs. Default: random per run.
    #[arg(long, value_name = "N")]
    date_shift_seed: Option<u64>,
    /// Write training data WITHOUT de-identification. Only for data that holds no PHI.
    #[arg(long = "unsafe-keep-phi")]
    unsafe_keep_phi: bool,
    /// Keep lay terms and abbreviations as written (no normalisation from the synonym table).
    #[arg(long)]
    no_normalize: bool,
    /// Records shorter than this many characters are rejected.
    #[arg(long, value_name = "CHARS", default_value_t = 40)]
    min_chars: usize,
    /// Near-duplicate threshold: estimated Jaccard similarity of word 5-grams (0-1).
    #[arg(long, value_name = "X", default_value_t = 0.9, value_parser = super::options::unit_f64)]
    near_duplicate: f64,
    /// Count tokens with this model's tokenizer and chat template (data card).
    #[arg(short = 'm', long, value_name = "FILE")]
    model: Option<PathBuf>,
    /// How --model's token counts lay out the conversations (see generate).
    #[command(flatten)]
    template: super::options::ChatTemplateOptions,
    /// JSONL field / CSV column holding the text.
    #[arg(long, value_name = "NAME", default_value = "text")]
    text_field: String,
    /// JSONL field / CSV column holding the id.
    #[arg(long, value_name = "NAME", default_value = "id")]
    id_field: String,
    /// JSONL field / CSV column naming the patient (splits keep a patient's records together).
    #[arg(long, alias = "patient-column", value_name = "NAME", default_value = "patient")]
    patient_field: String,
    /// JSONL field holding gold extractions: {"schema name": {...}}.
    #[arg(long, value_name = "NAME", default_value = "gold")]
    gold_field: String,
}

fn parse_split(value: &str) -> Result<(u64, u64), String> {
    let (train, val) = value.split_once(',').ok_or("expected TRAIN,VAL such as 80,10")?;
    let train: u64 = train.trim().parse().map_err(|_| "TRAIN must be a whole percentage")?;
    let val: u64 = val.trim().parse().map_err(|_| "VAL must be a whole percentage")?;
    if train + val > 100 || train == 0 {
        return Err("TRAIN must be above 0 and TRAIN + VAL at most 100".into());
    }
    Ok((train, val))
}

/// Token counts with the model's own tokenizer, in the prompt format fine-tuning will use.
struct ModelTokens {
    model: Model,
    format: PromptFormat,
}

impl TokenCounter for ModelTokens {
    fn count_tokens(&self, messages: &[Message]) -> usize {
        let chat: Vec<ChatMessage> =
            messages.iter().map(|m| ChatMessage::new(&m.role, m.content.clone())).collect();
        let text = self.format.render(&chat, false).unwrap_or_default();
        self.model.tokenize(&text, true, true).map_or(0, |t| t.len())
    }
}

pub(crate) fn run(args: PrepareArgs, global: &GlobalOptions) -> Result<Outcome> {
    if args.template.chat_template.is_some() && args.model.is_none() {
        anyhow::bail!("--chat-template lays out token counts for --model; give --model too");
    }
    let inputs = InputFiles::new(args.inputs.iter().map(PathBuf::as_path).chain(args.model.as_deref()));
    let written = SPLITS
        .iter()
        .map(|s| format!("{s}.jsonl"))
        .chain(["rejected.jsonl", "data_card.json", "data_card.md"].map(String::from));
    for name in written {
        inputs.check(&args.out.join(name))?;
    }
    let deid = if args.unsafe_keep_phi {
        eprintln!(
            "WARNING: --unsafe-keep-phi: de-identification is OFF; any PHI in the inputs goes into the training data"
        );
        None
    } else {
        let seed = args.date_shift_seed.unwrap_or_else(crate::data::rng::fresh_seed);
        Some(DeidOptions { mode: args.deid_mode, date_shift_seed: seed })
    };
    let tokens = match &args.model {
        Some(path) => {
            let model = Model::load(path, &ModelParams::default())
                .with_context(|| format!("cannot load model {}", path.display()))?;
            let format = args.template.resolve(&model, global.quiet)?;
            Some(ModelTokens { model, format })
        }
        None => None,
    };
    let mut options = PrepareOptions::new(args.out.clone());
    options.seed = args.seed;
    options.split = args.split;
    options.deid = deid;
    options.normalize_terms = !args.no_normalize;
    options.min_chars = args.min_chars;
    options.near_duplicate_threshold = args.near_duplicate;
    options.patient_field = args.patient_field.clone();
    options.gold_field = args.gold_field.clone();
    options.input = InputOptions {
        text_field: args.text_field.clone(),
        id_field: args.id_field.clone(),
        text_column: args.text_field.clone(),
        id_column: args.id_field.clone(),
    };

    let bar = (!global.quiet && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {pos} records read, {per_sec}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar
    });
    let counter = tokens.as_ref().map(|t| t as &dyn TokenCounter);
    let card = prepare(&args.inputs, &options, counter, |n| {
        if let Some(bar) = &bar {
            bar.set_position(n as u64);
        }
    })
    .with_context(|| format!("cannot prepare into {}", args.out.display()))?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if !global.quiet {
        let examples: usize = card.examples.values().flat_map(|m| m.values()).sum();
        let dropped: usize = card.dropped.values().sum();
        let reasons: Vec<String> = card.dropped.iter().map(|(r, n)| format!("{r} {n}")).collect();
        eprintln!(
            "prepared {} of {} records into {examples} examples in {}{}",
            card.records_kept,
            card.records_read,
            args.out.display(),
            if dropped == 0 {
                String::new()
            } else {
                format!("; dropped {dropped} ({}), see rejected.jsonl", reasons.join(", "))
            }
        );
    }
    Ok(if card.rejected > 0 { Outcome::SomeInputsFailed } else { Outcome::Success })
}
