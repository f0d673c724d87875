//! Summaries: reading documents, references and predictions; generating summaries with a
//! model; scoring them with ROUGE and BLEU.
//!
//! Lines are JSON objects with an `id`. A document is `text` (with an optional
//! `instruction`), or a chat conversation `messages` as `medllm prepare` writes it (the
//! final assistant turn, if any, is dropped from the prompt). A reference or prediction is
//! the first of `summary`, `reference`, `prediction`, `text`, or the final assistant turn of
//! `messages`. Lines with a `task` other than `summarization` are passed over, so a
//! `prepare` split can be given as it is for both documents and references.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::EvalError;
use super::bleu::{Bleu, corpus_bleu};
use super::rouge::{CorpusRouge, corpus_rouge};
use crate::generate::{GenerationLimits, generate};
use crate::llama::{ChatMessage, Context, ContextParams, LoraAdapter, Model, Sampler, SamplingParams};

/// The instruction used when a document line brings none.
pub const DEFAULT_SUMMARY_INSTRUCTION: &str =
    "Summarise the assessment of this clinical note in a few lines.";

/// A document to summarise.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryDocument {
    /// Its id.
    pub id: String,
    /// The conversation to answer (system and user turns).
    pub messages: Vec<ChatMessage>,
}

/// A line that could not be used, by line number and reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BadLine {
    /// 1-based line number.
    pub line: usize,
    /// Why.
    pub reason: String,
}

fn lines_of(path: &Path) -> Result<String, EvalError> {
    std::fs::read_to_string(path).map_err(|source| EvalError::Io { path: path.into(), source })
}

/// Calls `each` with every usable JSON object of `text` and its line number.
fn objects(
    text: &str,
    bad: &mut Vec<BadLine>,
    mut each: impl FnMut(usize, &serde_json::Map<String, Value>) -> Result<(), String>,
) {
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let line_no = i + 1;
        match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(fields)) => {
                if fields.get("task").and_then(Value::as_str).is_some_and(|t| t != "summarization") {
                    continue;
                }
                if let Err(reason) = each(line_no, &fields) {
                    bad.push(BadLine { line: line_no, reason });
                }
            }
            _ => bad.push(BadLine { line: line_no, reason: "not a JSON object line".into() }),
        }
    }
}

fn id_of(fields: &serde_json::Map<String, Value>) -> Result<String, String> {
    match fields.get("id") {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        _ => Err("no id".into()),
    }
}

fn messages_of(fields: &serde_json::Map<String, Value>) -> Option<Vec<(String, String)>> {
    let list = fields.get("messages")?.as_array()?;
    list.iter()
        .map(|m| Some((m.get("role")?.as_str()?.to_string(), m.get("content")?.as_str()?.to_string())))
        .collect()
}

/// Reads documents to summarise.
pub fn read_documents(path: &Path) -> Result<(Vec<SummaryDocument>, Vec<BadLine>), EvalError> {
    let text = lines_of(path)?;
    let mut bad = Vec::new();
    let mut docs = Vec::new();
    objects(&text, &mut bad, |_, fields| {
        let id = id_of(fields)?;
        let messages = if let Some(mut turns) = messages_of(fields) {
            if turns.last().is_some_and(|(role, _)| role == "assistant") {
                turns.pop();
            }
            if turns.is_empty() {
                return Err("no user turn in messages".into());
            }
            turns.into_iter().map(|(role, content)| ChatMessage::new(&role, content)).collect()
        } else if let Some(text) = fields.get("text").and_then(Value::as_str) {
            let instruction =
                fields.get("instruction").and_then(Value::as_str).unwrap_or(DEFAULT_SUMMARY_INSTRUCTION);
            vec![ChatMessage::new("system", instruction), ChatMessage::new("user", text)]
        } else {
            return Err("neither text nor messages".into());
        };
        docs.push(SummaryDocument { id, messages });
        Ok(())
    });
    Ok((docs, bad))
}

/// Reads references or predictions: id → text.
pub fn read_summaries(path: &Path) -> Result<(HashMap<String, String>, Vec<BadLine>), EvalError> {
    let text = lines_of(path)?;
    let mut bad = Vec::new();
    let mut out = HashMap::new();
    objects(&text, &mut bad, |_, fields| {
        let id = id_of(fields)?;
        let direct = ["summary", "reference", "prediction", "text"]
            .iter()
            .find_map(|k| fields.get(*k).and_then(Value::as_str).map(str::to_string));
        let summary = direct
            .or_else(|| {
                messages_of(fields)?.into_iter().rev().find(|(role, _)| role == "assistant").map(|(_, c)| c)
            })
            .ok_or("no summary, reference, prediction, text or assistant turn")?;
        out.insert(id, summary);
        Ok(())
    });
    Ok((out, bad))
}

/// ROUGE and BLEU of predictions against references.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SummaryScores {
    /// Pairs scored (ids in both files).
    pub pairs: usize,
    /// References with no prediction (not scored).
    pub missing_predictions: usize,
    /// ROUGE-1/2/L F1 means, plain and stemmed (0–1).
    pub rouge: CorpusRouge,
    /// Corpus BLEU (0–100).
    pub bleu: Option<Bleu>,
}

/// Scores `predictions` against `references` (by id; references order the pairs).
pub fn score_summaries(
    references: &HashMap<String, String>,
    predictions: &HashMap<String, String>,
) -> SummaryScores {
    let mut ids: Vec<&String> = references.keys().collect();
    ids.sort();
    let pairs: Vec<(&str, &str)> = ids
        .iter()
        .filter_map(|id| Some((references[*id].as_str(), predictions.get(*id)?.as_str())))
        .collect();
    SummaryScores {
        pairs: pairs.len(),
        missing_predictions: references.len() - pairs.len(),
        rouge: corpus_rouge(pairs.iter().copied()),
        bleu: (!pairs.is_empty()).then(|| corpus_bleu(pairs.iter().copied())),
    }
}

/// Settings of summary generation.
#[derive(Debug, Clone)]
pub struct SummarySettings {
    /// Most tokens per summary.
    pub max_tokens: usize,
    /// Context length.
    pub ctx: u32,
    /// CPU threads.
    pub threads: i32,
    /// Prompt layout (`--chat-template`); `None`: the model's own chat template, else plain
    /// text.
    pub prompt_format: Option<crate::llama::PromptFormat>,
}

/// Generates a summary of every document, greedily, calling `progress` after each.
pub fn generate_summaries(
    model: &Model,
    adapters: &[(&LoraAdapter<'_>, f32)],
    docs: &[SummaryDocument],
    settings: &SummarySettings,
    progress: &mut dyn FnMut(usize),
) -> Result<HashMap<String, String>, EvalError> {
    let params = ContextParams {
        n_ctx: settings.ctx,
        n_threads: settings.threads,
        n_threads_batch: settings.threads,
        ..ContextParams::default()
    };
    let mut ctx = Context::new(model, &params)?;
    if !adapters.is_empty() {
        ctx.set_adapters(adapters)?;
    }
    let format = match &settings.prompt_format {
        Some(format) => format.clone(),
        None => crate::llama::resolve_template(None, model.chat_template())?.format,
    };
    let mut out = HashMap::new();
    for (k, doc) in docs.iter().enumerate() {
        let mut prompt = format.render(&doc.messages, true)?;
        if !format.is_chat() {
            // The summary starts its own paragraph after the plain-text prompt.
            prompt.push_str("\n\n");
        }
        let mut tokens = model.tokenize(&prompt, model.adds_bos(), true)?;
        let room = (settings.ctx as usize).saturating_sub(settings.max_tokens + 1).max(8);
        if tokens.len() > room {
            tracing::warn!("{}: prompt of {} tokens cut to its last {room}", doc.id, tokens.len());
            tokens.drain(..tokens.len() - room);
        }
        ctx.clear_memory();
        let mut sampler = Sampler::new(model, &SamplingParams::greedy());
        let mut summary = String::new();
        generate::<std::convert::Infallible>(
            &mut ctx,
            &mut sampler,
            &tokens,
            GenerationLimits::new(settings.max_tokens),
            &mut |piece| {
                summary.push_str(piece);
                Ok(true)
            },
        )
        .map_err(|e| EvalError::Engine(crate::with_causes(&e)))?;
        out.insert(doc.id.clone(), summary.trim().to_string());
        progress(k + 1);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_text_chat_and_reference_lines_and_skips_other_tasks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.jsonl");
        std::fs::write(
            &path,
            r#"{"id":"a","text":"Report A."}
{"id":"b","task":"summarization","messages":[{"role":"system","content":"S"},{"role":"user","content":"U"},{"role":"assistant","content":"Ref B."}]}
{"id":"c","task":"extraction","messages":[{"role":"user","content":"X"}]}
{"text":"no id"}
"#,
        )
        .unwrap();
        let (docs, bad) = read_documents(&path).unwrap();
        assert_eq!(docs.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(docs[1].messages.len(), 2);
        assert_eq!(docs[0].messages[0].content, DEFAULT_SUMMARY_INSTRUCTION);
        assert_eq!(bad, [BadLine { line: 4, reason: "no id".into() }]);
        let (refs, _) = read_summaries(&path).unwrap();
        assert_eq!(refs["b"], "Ref B.");
        assert_eq!(refs["a"], "Report A.");
        assert!(!refs.contains_key("c"));
    }

    #[test]
    fn scores_pairs_by_id() {
        let refs: HashMap<String, String> =
            [("1", "the cat sat on the mat"), ("2", "a b c d")].map(|(k, v)| (k.into(), v.into())).into();
        let preds: HashMap<String, String> =
            [("1", "the cat sat on the mat")].map(|(k, v)| (k.into(), v.into())).into();
        let s = score_summaries(&refs, &preds);
        assert_eq!((s.pairs, s.missing_predictions), (1, 1));
        assert_eq!(s.rouge.rouge_l, 1.0);
        assert!((s.bleu.unwrap().score - 100.0).abs() < 1e-9);
    }
}
