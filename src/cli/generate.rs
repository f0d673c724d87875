//! `medllm generate`: chat-templated generation streamed to stdout.

use std::io::{IsTerminal, Read, Write};

use anyhow::{Context as _, Result, bail};
use clap::Args;

use super::options::{ChatTemplateOptions, ModelOptions, SamplingOptions};
use super::{GlobalOptions, Outcome};
use crate::generate::{GenerateError, GenerationLimits, generate};
use crate::llama::{ChatMessage, Context, Sampler};

#[derive(Debug, Args)]
pub(crate) struct GenerateArgs {
    #[command(flatten)]
    model: ModelOptions,
    /// The prompt; `-` reads it from stdin (also the default when stdin is a pipe).
    #[arg(short, long, value_name = "TEXT|-")]
    prompt: Option<String>,
    /// System message placed before the prompt.
    #[arg(long, value_name = "TEXT")]
    system: Option<String>,
    /// Send the prompt as is (with the model's BOS), without any chat template.
    #[arg(long, conflicts_with = "chat_template")]
    raw: bool,
    #[command(flatten)]
    template: ChatTemplateOptions,
    /// Most tokens to generate.
    #[arg(short = 'n', long, value_name = "N", default_value_t = 512, value_parser = super::options::count)]
    max_tokens: usize,
    /// Keep generating after the model ends its answer (for benchmarks).
    #[arg(long)]
    ignore_eos: bool,
    #[command(flatten)]
    sampling: SamplingOptions,
}

pub(crate) fn run(args: GenerateArgs, global: &GlobalOptions) -> Result<Outcome> {
    let prompt_text = read_prompt(args.prompt.as_deref())?;
    let model = args.model.load_model()?;
    let adapters = args.model.load_adapters(&model)?;

    let prompt_text = if args.raw {
        prompt_text
    } else {
        let format = args.template.resolve(&model, global.quiet)?;
        let mut messages = Vec::new();
        if let Some(system) = &args.system {
            messages.push(ChatMessage::new("system", system.as_str()));
        }
        messages.push(ChatMessage::new("user", prompt_text));
        format.render(&messages, true)?
    };
    // A raw prompt gets the model's BOS; a templated one already carries what it needs,
    // and control tokens written in it are parsed as such.
    let prompt = model.tokenize(&prompt_text, args.raw || model.adds_bos(), true)?;

    let mut ctx = Context::new(&model, &args.model.context_params(1))?;
    let pairs: Vec<_> = adapters.iter().map(|(a, s)| (a, *s)).collect();
    if !pairs.is_empty() {
        ctx.set_adapters(&pairs)?;
    }
    let mut sampler = Sampler::new(&model, &args.sampling.params());

    let mut out = std::io::stdout().lock();
    let mut ended_with_newline = true;
    let limits = GenerationLimits { max_tokens: args.max_tokens, ignore_end: args.ignore_eos };
    let stats = generate(&mut ctx, &mut sampler, &prompt, limits, &mut |text: &str| {
        out.write_all(text.as_bytes())?;
        out.flush()?;
        ended_with_newline = text.ends_with('\n');
        Ok::<_, std::io::Error>(true)
    })
    .map_err(|e| match e {
        // Keep the io::Error itself in the chain, so a closed pipe is recognised.
        GenerateError::Sink(io) => anyhow::Error::from(io),
        other => anyhow::Error::from(other),
    })?;
    if !ended_with_newline {
        writeln!(out)?;
    }
    out.flush()?;
    if stats.stop == crate::generate::StopReason::ContextFull && !global.quiet {
        eprintln!(
            "stopped after {} tokens: the context of {} tokens is full (the prompt took {}); raise --ctx for longer answers",
            stats.generated_tokens,
            ctx.n_ctx_per_sequence(),
            stats.prompt_tokens
        );
    }
    if global.verbose {
        eprintln!(
            "prompt processing: {} tokens in {:.0} ms, {:.1} tokens/s",
            stats.prompt_tokens,
            stats.prompt_time.as_secs_f64() * 1000.0,
            stats.prompt_tokens_per_second()
        );
        eprintln!(
            "generation: {} tokens in {:.0} ms, {:.1} tokens/s (stopped: {:?})",
            stats.generated_tokens,
            stats.generation_time.as_secs_f64() * 1000.0,
            stats.generation_tokens_per_second(),
            stats.stop
        );
    }
    Ok(Outcome::Success)
}

/// `-p TEXT`, `-p -` (stdin), or stdin when it is not a terminal.
fn read_prompt(prompt: Option<&str>) -> Result<String> {
    let from_stdin = match prompt {
        Some("-") => true,
        Some(text) => return Ok(text.to_string()),
        None => !std::io::stdin().is_terminal(),
    };
    if !from_stdin {
        bail!("no prompt: pass -p TEXT, or -p - to read it from stdin");
    }
    let mut bytes = Vec::new();
    std::io::stdin().read_to_end(&mut bytes).context("cannot read the prompt from stdin")?;
    let text = String::from_utf8(bytes).map_err(|e| {
        tracing::warn!("stdin is not valid UTF-8; invalid bytes replaced");
        String::from_utf8_lossy(e.as_bytes()).into_owned()
    });
    let text = text.unwrap_or_else(|lossy| lossy);
    if text.trim().is_empty() {
        bail!("the prompt read from stdin is empty");
    }
    Ok(text)
}
