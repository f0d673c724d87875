//! Training data: chat JSONL (as `medllm prepare` writes it) or plain text, turned into
//! tokens with a label per position, then packed into fixed windows.
//!
//! A chat example is rendered in the run's prompt format (`--chat-template`, else the model's
//! own chat template, else plain text). Each assistant turn is
//! the rendered conversation up to it (opened for the assistant) followed by the turn
//! itself; only the turn's tokens are labelled unless the prompt is trained on too.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::llama::{ChatMessage, IGNORED_LABEL, LlamaError, Model, PromptFormat, Token};

/// How lines of the training files are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataFormat {
    /// JSONL with `messages` (role, content), e.g. `medllm prepare` output.
    Chat,
    /// Plain text for continued pre-training: JSONL with `text`, or any other file as one text.
    Text,
}

/// What to do with an example longer than the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlong {
    /// Leave it out (counted).
    Skip,
    /// Keep its first window of tokens (counted).
    Truncate,
}

/// One tokenised example: `tokens[i]` is trained to predict `tokens[i + 1]` where `train[i + 1]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// Tokens, BOS first where the model uses one.
    pub tokens: Vec<Token>,
    /// Whether each token is a target of the loss.
    pub train: Vec<bool>,
}

impl Example {
    /// Number of positions that carry loss.
    pub fn trained_tokens(&self) -> usize {
        self.train.iter().skip(1).filter(|t| **t).count()
    }
}

/// A line that could not be used, by file and line number (never its content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// The file.
    pub file: PathBuf,
    /// 1-based line number.
    pub line: usize,
    /// Why.
    pub reason: String,
}

/// Examples read from a file, and what was left out.
#[derive(Debug, Default)]
pub struct LoadedData {
    /// Usable examples in file order.
    pub examples: Vec<Example>,
    /// Lines that could not be read.
    pub bad_lines: Vec<BadLine>,
    /// Examples longer than the window that were left out.
    pub skipped_overlong: usize,
    /// Examples longer than the window that were cut.
    pub truncated: usize,
    /// Examples with nothing to learn (no response tokens).
    pub empty: usize,
}

#[derive(Deserialize)]
struct ChatLine {
    messages: Vec<ChatMessage>,
}

#[derive(Deserialize)]
struct TextLine {
    text: String,
}

/// Reads and tokenises `path`, rendering chat lines in `prompt_format`. `window` is the
/// context length of training.
pub fn load_examples(
    model: &Model,
    prompt_format: &PromptFormat,
    path: &Path,
    format: DataFormat,
    train_on_prompt: bool,
    window: usize,
    overlong: Overlong,
) -> Result<LoadedData, std::io::Error> {
    let file = std::fs::File::open(path)?;
    let mut data = LoadedData::default();
    let is_jsonl = path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("jsonl"));
    if format == DataFormat::Text && !is_jsonl {
        // A plain text file is one document, cut into windows.
        let text = std::fs::read_to_string(path)?;
        let tokens = model
            .tokenize(&text, true, false)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
        for chunk in tokens.chunks(window) {
            if chunk.len() > 1 {
                data.examples.push(Example { tokens: chunk.to_vec(), train: vec![true; chunk.len()] });
            }
        }
        return Ok(data);
    }
    for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |reason: String| BadLine { file: path.to_path_buf(), line: index + 1, reason };
        let example = match format {
            DataFormat::Chat => match serde_json::from_str::<ChatLine>(&line) {
                Ok(chat) => chat_example(model, prompt_format, &chat.messages, train_on_prompt),
                Err(e) => Err(format!("not a chat line with `messages`: {}", json_error_kind(&e))),
            },
            DataFormat::Text => match serde_json::from_str::<TextLine>(&line) {
                Ok(text) => model
                    .tokenize(&text.text, true, false)
                    .map(|tokens| Example { train: vec![true; tokens.len()], tokens })
                    .map_err(|e| e.to_string()),
                Err(e) => Err(format!("not a text line with `text`: {}", json_error_kind(&e))),
            },
        };
        match example {
            Ok(mut example) => {
                if example.tokens.len() > window {
                    match overlong {
                        Overlong::Skip => {
                            data.skipped_overlong += 1;
                            continue;
                        }
                        Overlong::Truncate => {
                            example.tokens.truncate(window);
                            example.train.truncate(window);
                            data.truncated += 1;
                        }
                    }
                }
                if example.trained_tokens() == 0 {
                    data.empty += 1;
                } else {
                    data.examples.push(example);
                }
            }
            Err(reason) => data.bad_lines.push(bad(reason)),
        }
    }
    Ok(data)
}

/// serde's message without the input it quotes (a training line may hold patient text).
fn json_error_kind(e: &serde_json::Error) -> String {
    format!("{:?} error at column {}", e.classify(), e.column())
}

/// The tokens of a conversation, with only assistant turns trained unless `train_on_prompt`.
fn chat_example(
    model: &Model,
    template: &PromptFormat,
    messages: &[ChatMessage],
    train_on_prompt: bool,
) -> Result<Example, String> {
    if !messages.iter().any(|m| m.role == "assistant") {
        return Err("no assistant message to learn".into());
    }
    let render = |messages: &[ChatMessage], open: bool| -> Result<String, String> {
        template.render(messages, open).map_err(|e: LlamaError| e.to_string())
    };
    // Text pieces in order, each trained or not.
    let mut pieces: Vec<(String, bool)> = Vec::new();
    let mut rendered = String::new();
    for (k, message) in messages.iter().enumerate() {
        if message.role != "assistant" {
            continue;
        }
        let prompt = render(&messages[..k], true)?;
        let full = render(&messages[..=k], false)?;
        let (Some(new_prompt), Some(response)) = (prompt.strip_prefix(&rendered), full.strip_prefix(&prompt))
        else {
            return Err("the chat template does not render turn by turn; cannot find the responses".into());
        };
        pieces.push((new_prompt.to_string(), train_on_prompt));
        pieces.push((response.to_string(), true));
        rendered = full;
    }
    let mut tokens = Vec::new();
    let mut train = Vec::new();
    if model.adds_bos()
        && let Some(bos) = model.bos()
    {
        tokens.push(bos);
        train.push(train_on_prompt);
    }
    for (text, trained) in pieces {
        if text.is_empty() {
            continue;
        }
        let piece = model.tokenize(&text, false, true).map_err(|e| e.to_string())?;
        train.extend(std::iter::repeat_n(trained, piece.len()));
        tokens.extend(piece);
    }
    Ok(Example { tokens, train })
}

/// One training window: tokens and the label of each position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Exactly `window` tokens (padded at the end).
    pub tokens: Vec<Token>,
    /// The next token where it is trained, else [`IGNORED_LABEL`].
    pub labels: Vec<i32>,
    /// Positions with a label.
    pub trained: usize,
}

/// Packs whole examples into windows of `window` tokens, in order, never splitting an
/// example; the rest of a window is padding with no labels. Without `pack`, one per window.
/// A packed example attends to the examples before it in its window (no attention mask).
pub fn pack_windows(examples: &[&Example], window: usize, pad: Token, pack: bool) -> Vec<Window> {
    let mut windows = Vec::new();
    let mut tokens: Vec<Token> = Vec::with_capacity(window);
    let mut labels: Vec<i32> = Vec::with_capacity(window);
    let flush = |tokens: &mut Vec<Token>, labels: &mut Vec<i32>, windows: &mut Vec<Window>| {
        if tokens.is_empty() {
            return;
        }
        let trained = labels.iter().filter(|l| **l != IGNORED_LABEL).count();
        tokens.resize(window, pad);
        labels.resize(window, IGNORED_LABEL);
        windows.push(Window { tokens: std::mem::take(tokens), labels: std::mem::take(labels), trained });
    };
    for example in examples {
        let n = example.tokens.len().min(window);
        if !tokens.is_empty() && (!pack || tokens.len() + n > window) {
            flush(&mut tokens, &mut labels, &mut windows);
        }
        for i in 0..n {
            tokens.push(example.tokens[i]);
            let next_trained = i + 1 < n && example.train[i + 1];
            labels.push(if next_trained { example.tokens[i + 1].0 } else { IGNORED_LABEL });
        }
    }
    flush(&mut tokens, &mut labels, &mut windows);
    windows.retain(|w| w.trained > 0);
    windows
}
