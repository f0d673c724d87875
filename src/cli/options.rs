//! Option groups shared by several subcommands (clap `flatten`).

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Args;

use crate::llama::{ContextParams, LoraAdapter, Model, ModelParams, SamplingParams};

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
    #[arg(short = 't', long, value_name = "N")]
    pub threads: Option<u16>,
    /// Context length in tokens.
    #[arg(short = 'c', long = "ctx", value_name = "TOKENS", default_value_t = 4096)]
    pub ctx: u32,
}

/// An adapter file and the scale to apply it with.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LoraSpec {
    pub path: PathBuf,
    pub scale: f32,
}

pub(crate) fn parse_lora(value: &str) -> Result<LoraSpec, String> {
    if let Some((path, scale)) = value.rsplit_once(':')
        && let Ok(scale) = scale.parse::<f32>()
    {
        if !scale.is_finite() {
            return Err(format!("scale {scale} is not a finite number"));
        }
        return Ok(LoraSpec { path: path.into(), scale });
    }
    Ok(LoraSpec { path: value.into(), scale: 1.0 })
}

impl ModelOptions {
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
    #[arg(long, visible_alias = "temp", value_name = "T", default_value_t = 0.8)]
    pub temperature: f32,
    /// Sample from the K most likely tokens (0: all).
    #[arg(long, value_name = "K", default_value_t = 40)]
    pub top_k: i32,
    /// Sample from the smallest set of tokens whose probability reaches P.
    #[arg(long, value_name = "P", default_value_t = 0.95)]
    pub top_p: f32,
    /// Drop tokens less likely than P times the most likely one.
    #[arg(long, value_name = "P", default_value_t = 0.05)]
    pub min_p: f32,
    /// Penalise tokens repeated within --repeat-last-n (1.0: off).
    #[arg(long, value_name = "X", default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Window of the repetition penalties, in tokens.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub repeat_last_n: i32,
    /// Penalise tokens by how often they appeared (0: off).
    #[arg(long, value_name = "X", default_value_t = 0.0)]
    pub frequency_penalty: f32,
    /// Penalise tokens that appeared at all (0: off).
    #[arg(long, value_name = "X", default_value_t = 0.0)]
    pub presence_penalty: f32,
    /// DRY penalty against repeated phrases (0: off; 0.8 is a common choice).
    #[arg(long, value_name = "X", default_value_t = 0.0)]
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
    }
}
