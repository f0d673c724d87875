//! Option groups shared by several subcommands (clap `flatten`), and the value parsers
//! every numeric flag goes through: NaN, infinities and values out of range are refused
//! when the command line is parsed, before anything loads.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Args;

use crate::llama::{
    ChatTemplateArg, ContextParams, LoraAdapter, Model, ModelParams, NO_TEMPLATE_NOTE, PromptFormat,
    SamplingParams, resolve_template,
};

/// The model to run: every subcommand that loads a model takes these.
#[derive(Debug, Clone, Args)]
pub(crate) struct ModelOptions {
    /// GGUF model file.
    #[arg(short = 'm', long, value_name = "FILE", env = "MEDLLM_MODEL")]
    pub model: PathBuf,
    /// LoRA adapter GGUF to apply, with an optional scale (default 1.0); repeatable.
    #[arg(long = "lora", value_name = "FILE[:SCALE]", value_parser = parse_lora)]
    pub lora: Vec<LoraSpec>,
    /// CPU threads (default: all cores).
    #[arg(short = 't', long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
    /// Context length in tokens.
    #[arg(short = 'c', long = "ctx", value_name = "TOKENS", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    pub ctx: u32,
}

/// How prompts are laid out: every subcommand that builds prompts takes this, with one rule.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct ChatTemplateOptions {
    /// Chat template: chatml, llama3, gemma, mistral, phi3, none (plain text), or a file with
    /// a Jinja chat template [default: the model's own; plain text when it has none]
    #[arg(long = "chat-template", value_name = "NAME|FILE", value_parser = parse_chat_template)]
    pub chat_template: Option<ChatTemplateArg>,
}

fn parse_chat_template(value: &str) -> Result<ChatTemplateArg, String> {
    value.parse()
}

impl ChatTemplateOptions {
    /// The prompt format for `model`: `--chat-template`, else the model's own template, else
    /// plain text with a note (printed once per run, whatever the number of prompts).
    pub fn resolve(&self, model: &Model, quiet: bool) -> Result<PromptFormat> {
        let resolved = resolve_template(self.chat_template.as_ref(), model.chat_template())?;
        if resolved.fell_back {
            note_no_template(quiet);
        }
        Ok(resolved.format)
    }
}

/// Prints the note for a model without a chat template, once per process.
pub(crate) fn note_no_template(quiet: bool) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    if !quiet {
        ONCE.call_once(|| eprintln!("note: {NO_TEMPLATE_NOTE}"));
    }
}

/// An adapter file and the scale to apply it with.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LoraSpec {
    pub path: PathBuf,
    pub scale: f32,
}

pub(crate) fn parse_lora(value: &str) -> Result<LoraSpec, String> {
    if let Some((path, scale)) = value.rsplit_once(':')
        && scale.parse::<f64>().is_ok()
    {
        let scale = finite_f32(scale).map_err(|e| format!("scale {e}"))?;
        return Ok(LoraSpec { path: path.into(), scale });
    }
    Ok(LoraSpec { path: value.into(), scale: 1.0 })
}

/// A number that is not NaN or infinite (in f64, where the flag is f64).
fn finite(text: &str) -> Result<f64, String> {
    let value: f64 = text.trim().parse().map_err(|_| format!("`{text}` is not a number"))?;
    if !value.is_finite() {
        return Err(format!("{text} is not a finite number"));
    }
    Ok(value)
}

/// The same number as an f32, which must not overflow to infinity.
fn narrow(text: &str, value: f64) -> Result<f32, String> {
    let narrowed = value as f32;
    if !narrowed.is_finite() {
        return Err(format!("{text} is too large"));
    }
    Ok(narrowed)
}

/// Any finite number (penalties that may be negative, adapter scales).
pub(crate) fn finite_f32(text: &str) -> Result<f32, String> {
    narrow(text, finite(text)?)
}

/// A finite number above 0 (learning rate, LoRA alpha, repetition penalty).
pub(crate) fn positive_f32(text: &str) -> Result<f32, String> {
    let value = finite(text)?;
    let narrowed = narrow(text, value)?;
    if narrowed <= 0.0 {
        return Err(format!("{text} is not above 0"));
    }
    Ok(narrowed)
}

/// A finite number of at least 0 (temperature, DRY multiplier).
pub(crate) fn non_negative_f32(text: &str) -> Result<f32, String> {
    let value = finite(text)?;
    if value < 0.0 {
        return Err(format!("{text} is below 0"));
    }
    narrow(text, value)
}

/// A number from 0 to 1 (probabilities, thresholds, weight decay).
pub(crate) fn unit_f32(text: &str) -> Result<f32, String> {
    let value = unit_f64(text)?;
    narrow(text, value)
}

/// A number from 0 to 1, kept as f64 (rates, similarity thresholds).
pub(crate) fn unit_f64(text: &str) -> Result<f64, String> {
    let value = finite(text)?;
    if !(0.0..=1.0).contains(&value) {
        return Err(format!("{text} is not between 0 and 1"));
    }
    Ok(value)
}

/// A finite number above 0, as f64 (minutes).
pub(crate) fn positive_f64(text: &str) -> Result<f64, String> {
    let value = finite(text)?;
    if value <= 0.0 {
        return Err(format!("{text} is not above 0"));
    }
    Ok(value)
}

/// A count of at least 1 (sequences, threads, tokens, chunks).
pub(crate) fn count(text: &str) -> Result<usize, String> {
    let value: usize = text.trim().parse().map_err(|_| format!("`{text}` is not a whole number"))?;
    if value == 0 {
        return Err("0 is not allowed: at least 1".into());
    }
    Ok(value)
}

impl ModelOptions {
    /// The files these options read: the model and the adapters.
    pub fn files(&self) -> impl Iterator<Item = &std::path::Path> {
        std::iter::once(self.model.as_path()).chain(self.lora.iter().map(|l| l.path.as_path()))
    }

    /// Loads the model named by `--model`.
    pub fn load_model(&self) -> Result<Model> {
        Model::load(&self.model, &ModelParams::default())
            .with_context(|| format!("cannot load model {}", self.model.display()))
    }

    /// Loads the `--lora` adapters for `model`.
    pub fn load_adapters<'m>(&self, model: &'m Model) -> Result<Vec<(LoraAdapter<'m>, f32)>> {
        self.lora
            .iter()
            .map(|spec| {
                LoraAdapter::load(model, &spec.path)
                    .map(|a| (a, spec.scale))
                    .with_context(|| format!("cannot load adapter {}", spec.path.display()))
            })
            .collect()
    }

    /// Context settings for `sequences` parallel sequences.
    pub fn context_params(&self, sequences: u32) -> ContextParams {
        let defaults = ContextParams::default();
        let threads = self.threads.map_or(defaults.n_threads, i32::from);
        ContextParams {
            n_ctx: self.ctx,
            n_seq_max: sequences,
            n_threads: threads,
            n_threads_batch: threads,
            ..defaults
        }
    }
}

/// Sampling flags.
#[derive(Debug, Clone, Args)]
pub(crate) struct SamplingOptions {
    /// Temperature; 0 always picks the most likely token (greedy).
    #[arg(long, visible_alias = "temp", value_name = "T", default_value_t = 0.8, value_parser = non_negative_f32)]
    pub temperature: f32,
    /// Sample from the K most likely tokens (0: all).
    #[arg(long, value_name = "K", default_value_t = 40, value_parser = clap::value_parser!(i32).range(0..))]
    pub top_k: i32,
    /// Sample from the smallest set of tokens whose probability reaches P.
    #[arg(long, value_name = "P", default_value_t = 0.95, value_parser = unit_f32)]
    pub top_p: f32,
    /// Drop tokens less likely than P times the most likely one.
    #[arg(long, value_name = "P", default_value_t = 0.05, value_parser = unit_f32)]
    pub min_p: f32,
    /// Penalise tokens repeated within --repeat-last-n (1.0: off).
    #[arg(long, value_name = "X", default_value_t = 1.0, value_parser = positive_f32)]
    pub repeat_penalty: f32,
    /// Window of the repetition penalties, in tokens.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(i32).range(-1..))]
    pub repeat_last_n: i32,
    /// Penalise tokens by how often they appeared (0: off).
    #[arg(long, value_name = "X", default_value_t = 0.0, value_parser = finite_f32)]
    pub frequency_penalty: f32,
    /// Penalise tokens that appeared at all (0: off).
    #[arg(long, value_name = "X", default_value_t = 0.0, value_parser = finite_f32)]
    pub presence_penalty: f32,
    /// DRY penalty against repeated phrases (0: off; 0.8 is a common choice).
    #[arg(long, value_name = "X", default_value_t = 0.0, value_parser = non_negative_f32)]
    pub dry_multiplier: f32,
    /// Random seed (default: a fresh one each run).
    #[arg(long, value_name = "N")]
    pub seed: Option<u32>,
}

impl SamplingOptions {
    /// The sampler settings these flags describe.
    pub fn params(&self) -> SamplingParams {
        let seed = self.seed.unwrap_or_else(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            nanos ^ std::process::id()
        });
        SamplingParams {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: self.repeat_last_n,
            frequency_penalty: self.frequency_penalty,
            presence_penalty: self.presence_penalty,
            dry_multiplier: self.dry_multiplier,
            seed,
            ..SamplingParams::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lora_scale_is_optional() {
        assert_eq!(parse_lora("a.gguf").unwrap(), LoraSpec { path: "a.gguf".into(), scale: 1.0 });
        assert_eq!(parse_lora("dir/a.gguf:0.5").unwrap(), LoraSpec { path: "dir/a.gguf".into(), scale: 0.5 });
        // A colon that is not followed by a number is part of the path.
        assert_eq!(parse_lora("c:/x.gguf").unwrap().path, PathBuf::from("c:/x.gguf"));
        assert!(parse_lora("a.gguf:inf").is_err());
        assert!(parse_lora("a.gguf:nan").is_err());
        assert!(parse_lora("a.gguf:1e39").is_err(), "overflows f32");
        assert_eq!(parse_lora("a.gguf:-0.5").unwrap().scale, -0.5, "a negative scale subtracts");
    }

    #[test]
    fn numeric_parsers_refuse_non_finite_and_out_of_range_values() {
        for bad in ["nan", "NaN", "inf", "-inf", "x", ""] {
            assert!(finite_f32(bad).is_err(), "{bad}");
            assert!(positive_f32(bad).is_err(), "{bad}");
            assert!(unit_f64(bad).is_err(), "{bad}");
        }
        assert!(positive_f32("0").is_err() && positive_f32("-1").is_err() && positive_f32("1e-300").is_err());
        assert_eq!(positive_f32("1e-3"), Ok(1e-3));
        assert!(non_negative_f32("-0.1").is_err());
        assert_eq!(non_negative_f32("0"), Ok(0.0));
        assert!(unit_f32("7").is_err() && unit_f32("-0.01").is_err() && unit_f32("1.0001").is_err());
        assert_eq!((unit_f32("0"), unit_f32("1"), unit_f64("0.85")), (Ok(0.0), Ok(1.0), Ok(0.85)));
        assert!(positive_f64("0").is_err());
        assert!(finite_f32("1e39").is_err(), "overflows f32");
        assert_eq!(finite_f32("-2"), Ok(-2.0));
        assert!(count("0").is_err() && count("-1").is_err());
        assert_eq!(count("3"), Ok(3));
    }
}
