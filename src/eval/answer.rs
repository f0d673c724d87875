//! Answering multiple-choice questions with a model, several sequences per batch.
//!
//! - `logprob`: the harness way. The context is `Question: …\nAnswer:` (with the context
//!   passage first, if any, and no options listed); each option's continuation
//!   `" " + text` is scored by the sum of its tokens' log-probabilities divided by its
//!   length in UTF-8 bytes (like `acc_norm`, so long options are not penalised for being
//!   long). The option with the highest score is the answer.
//! - `choice`: the options are listed in the prompt (the model's chat template when it has
//!   one) and the answer is generated under a grammar that allows only the option letters;
//!   greedy, so the letter with the highest logit among those allowed wins.

use serde::{Deserialize, Serialize};

use super::EvalError;
use super::mcq::{McqAnswer, Question};
use crate::extract::ConstraintFactory;
use crate::llama::{
    Batch, ChatMessage, Context, ContextParams, LoraAdapter, Model, PromptFormat, Token, resolve_template,
};

/// How an answer is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum McqMethod {
    /// Most likely option text, length-normalised.
    #[default]
    Logprob,
    /// A letter generated under a grammar.
    Choice,
}

impl McqMethod {
    /// The method's name.
    pub fn name(self) -> &'static str {
        match self {
            McqMethod::Logprob => "logprob",
            McqMethod::Choice => "choice",
        }
    }
}

/// Settings of an MCQ run.
#[derive(Debug, Clone)]
pub struct McqSettings {
    /// How answers are chosen.
    pub method: McqMethod,
    /// Sequences decoded together.
    pub parallel: usize,
    /// Context length per sequence; longer prompts lose their beginning.
    pub ctx_per_sequence: u32,
    /// CPU threads.
    pub threads: i32,
    /// Layout of the `choice` prompt (`--chat-template`); `None`: the model's own chat
    /// template, else plain text.
    pub prompt_format: Option<PromptFormat>,
}

impl Default for McqSettings {
    fn default() -> Self {
        McqSettings {
            method: McqMethod::Logprob,
            parallel: 4,
            ctx_per_sequence: 1024,
            threads: ContextParams::default().n_threads,
            prompt_format: None,
        }
    }
}

/// The system instruction of the `choice` prompt.
const CHOICE_INSTRUCTION: &str =
    "Answer the multiple-choice medical question with the letter of the correct option only.";

/// Answers every question, calling `progress` after each; answers come back in order.
pub fn answer_questions(
    model: &Model,
    adapters: &[(&LoraAdapter<'_>, f32)],
    questions: &[Question],
    settings: &McqSettings,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<McqAnswer>, EvalError> {
    let parallel = settings.parallel.max(1);
    let per_seq = settings.ctx_per_sequence.max(64);
    let n_ctx = per_seq
        .checked_mul(parallel as u32)
        .ok_or(EvalError::Settings("--ctx × --parallel is too large".into()))?;
    let n_batch = n_ctx.min(8192);
    let params = ContextParams {
        n_ctx,
        n_batch,
        n_ubatch: n_batch.min(512),
        n_seq_max: parallel as u32,
        n_threads: settings.threads,
        n_threads_batch: settings.threads,
        unified_kv: false,
        f32_kv: false,
    };
    let mut ctx = Context::new(model, &params)?;
    if !adapters.is_empty() {
        ctx.set_adapters(adapters)?;
    }
    match settings.method {
        McqMethod::Logprob => by_logprob(model, &mut ctx, questions, per_seq as usize, progress),
        McqMethod::Choice => {
            let format = match &settings.prompt_format {
                Some(format) => format.clone(),
                None => resolve_template(None, model.chat_template())?.format,
            };
            by_choice(model, &format, &mut ctx, questions, per_seq as usize, progress)
        }
    }
}

/// The harness-style context of a question (no options listed).
fn logprob_context(q: &Question) -> String {
    match &q.context {
        Some(c) if !c.trim().is_empty() => format!("{c}\nQuestion: {}\nAnswer:", q.question),
        _ => format!("Question: {}\nAnswer:", q.question),
    }
}

/// One option to score: its question, its tokens and how many of them are context.
struct Continuation {
    question: usize,
    option: usize,
    tokens: Vec<Token>,
    context_len: usize,
    bytes: usize,
}

fn by_logprob(
    model: &Model,
    ctx: &mut Context<'_>,
    questions: &[Question],
    per_seq: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<McqAnswer>, EvalError> {
    let parallel = ctx.n_seq_max() as usize;
    let n_batch = ctx.n_batch() as usize;
    let mut scores: Vec<Vec<f64>> =
        questions.iter().map(|q| vec![f64::NEG_INFINITY; q.options.len()]).collect();
    let mut pending: Vec<Continuation> = Vec::new();
    for (qi, q) in questions.iter().enumerate() {
        let mut context = model.tokenize(&logprob_context(q), model.adds_bos(), false)?;
        if context.is_empty() {
            context.extend(model.bos());
        }
        for (oi, (_, text)) in q.options.iter().enumerate() {
            let continuation_text = format!(" {}", text.trim());
            let continuation = model.tokenize(&continuation_text, false, false)?;
            // The continuation is kept whole; the context loses its beginning if need be.
            let room = per_seq.min(n_batch).saturating_sub(continuation.len()).max(1);
            let keep = context.len().min(room);
            let mut tokens = context[context.len() - keep..].to_vec();
            let context_len = tokens.len();
            tokens.extend(&continuation);
            tokens.truncate(per_seq.min(n_batch));
            pending.push(Continuation {
                question: qi,
                option: oi,
                tokens,
                context_len,
                bytes: continuation_text.len(),
            });
        }
    }
    let mut batch = Batch::new(n_batch, 1);
    let mut done_options = vec![0usize; questions.len()];
    let mut answered = 0usize;
    let mut next = 0usize;
    while next < pending.len() {
        batch.clear();
        ctx.clear_memory();
        // Fill the batch with whole continuations, one sequence each.
        let mut round: Vec<(usize, Vec<usize>)> = Vec::new();
        while next < pending.len() && round.len() < parallel {
            let item = &pending[next];
            if !round.is_empty() && item.tokens.len() > batch.remaining() {
                break;
            }
            let seq = round.len() as i32;
            let mut rows = Vec::new();
            for (pos, &token) in item.tokens.iter().enumerate() {
                // Rows predicting continuation tokens: the last context token onwards.
                let wanted = pos + 1 >= item.context_len && pos + 1 < item.tokens.len();
                let index = batch.add(token, pos as i32, &[seq], wanted)?;
                if wanted {
                    rows.push(index);
                }
            }
            round.push((next, rows));
            next += 1;
        }
        ctx.decode(&batch)?;
        for (item_index, rows) in round {
            let item = &pending[item_index];
            let mut log_likelihood = 0.0f64;
            for (k, &row) in rows.iter().enumerate() {
                let logits =
                    ctx.logits(row).ok_or_else(|| EvalError::Engine("no logits for a scored row".into()))?;
                let target = item.tokens[item.context_len + k];
                log_likelihood += log_probability(logits, target.0 as usize);
            }
            scores[item.question][item.option] = log_likelihood / item.bytes.max(1) as f64;
            done_options[item.question] += 1;
            if done_options[item.question] == questions[item.question].options.len() {
                answered += 1;
                progress(answered);
            }
        }
    }
    Ok(questions.iter().zip(scores).map(|(q, s)| answer_of(q, s)).collect())
}

fn answer_of(q: &Question, scores: Vec<f64>) -> McqAnswer {
    // Highest score; a tie goes to the earlier option.
    let best = scores
        .iter()
        .enumerate()
        .fold((0usize, f64::NEG_INFINITY), |b, (i, &s)| if s > b.1 { (i, s) } else { b })
        .0;
    let predicted = q.options[best].0.clone();
    McqAnswer {
        id: q.id.clone(),
        gold: q.answer_letter().to_string(),
        correct: best == q.answer,
        predicted,
        scores,
    }
}

/// log softmax(logits)[target], in f64.
pub(crate) fn log_probability(logits: &[f32], target: usize) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    logits[target] as f64 - max - sum.ln()
}

/// The `choice` prompt: the question and its lettered options, as a chat turn when the
/// model has a template.
fn choice_prompt(format: &PromptFormat, q: &Question) -> Result<String, EvalError> {
    let mut body = String::new();
    if let Some(c) = q.context.as_deref().filter(|c| !c.trim().is_empty()) {
        body.push_str(&format!("Context: {c}\n"));
    }
    body.push_str(&format!("Question: {}\n", q.question));
    for (letter, text) in &q.options {
        body.push_str(&format!("{letter}. {text}\n"));
    }
    let letters: Vec<&str> = q.options.iter().map(|(l, _)| l.as_str()).collect();
    body.push_str(&format!("Answer with one letter ({}).", letters.join(", ")));
    let messages = [ChatMessage::new("system", CHOICE_INSTRUCTION), ChatMessage::new("user", body)];
    let mut text = format.render(&messages, true)?;
    if !format.is_chat() {
        text.push_str("\nAnswer:");
    }
    Ok(text)
}

/// A Lark grammar allowing exactly the option letters.
fn letters_grammar(q: &Question) -> String {
    let alternatives: Vec<String> =
        q.options.iter().map(|(l, _)| serde_json::to_string(l).unwrap_or_default()).collect();
    format!("start: {}", alternatives.join(" | "))
}

fn by_choice(
    model: &Model,
    format: &PromptFormat,
    ctx: &mut Context<'_>,
    questions: &[Question],
    per_seq: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<McqAnswer>, EvalError> {
    let factory = ConstraintFactory::new(model).map_err(|e| EvalError::Engine(crate::with_causes(&e)))?;
    let parallel = ctx.n_seq_max() as usize;
    let n_batch = ctx.n_batch() as usize;
    let eos = factory.eos();
    let mut answers = Vec::with_capacity(questions.len());
    let mut batch = Batch::new(n_batch, 1);
    // Room for the letter tokens after the prompt.
    let max_prompt = per_seq.min(n_batch / parallel.max(1)).saturating_sub(8).max(8);
    for group in questions.chunks(parallel) {
        let mut states = Vec::with_capacity(group.len());
        for q in group {
            let text = choice_prompt(format, q)?;
            let mut tokens = model.tokenize(&text, model.adds_bos(), true)?;
            if tokens.len() > max_prompt {
                // Keep the end: the options and the assistant's opening matter most.
                tokens.drain(..tokens.len() - max_prompt);
            }
            let matcher = factory
                .lark_matcher(&letters_grammar(q))
                .map_err(|e| EvalError::Engine(crate::with_causes(&e)))?;
            states.push((tokens, matcher, Vec::<u8>::new(), 0i32, None::<usize>, false, f64::NAN));
        }
        // Decode prompts, then letters, until every question of the group has its letter.
        let mut pending: Vec<Vec<Token>> = states.iter().map(|s| s.0.clone()).collect();
        loop {
            batch.clear();
            for (seq, state) in states.iter_mut().enumerate() {
                let tokens = std::mem::take(&mut pending[seq]);
                if state.5 || tokens.is_empty() {
                    continue;
                }
                let last = tokens.len() - 1;
                for (k, &token) in tokens.iter().enumerate() {
                    let index = batch.add(token, state.3, &[seq as i32], k == last)?;
                    state.3 += 1;
                    if k == last {
                        state.4 = Some(index);
                    }
                }
            }
            if batch.is_empty() {
                break;
            }
            ctx.decode(&batch)?;
            for (seq, state) in states.iter_mut().enumerate() {
                let Some(row) = state.4.take() else { continue };
                let logits = ctx.logits(row).ok_or_else(|| EvalError::Engine("no logits".into()))?;
                let mask = state.1.allowed().map_err(|e| EvalError::Engine(crate::with_causes(&e)))?;
                let mut best: Option<(usize, f32)> = None;
                mask.iter_set_entries(|i| {
                    if i != eos.0 as usize
                        && let Some(&l) = logits.get(i)
                        && best.is_none_or(|(_, b)| l > b)
                    {
                        best = Some((i, l));
                    }
                });
                let Some((token, _)) = best else {
                    state.5 = true;
                    continue;
                };
                if state.2.is_empty() {
                    state.6 = log_probability(logits, token);
                }
                let token = Token(token as i32);
                state.1.accept(token).map_err(|e| EvalError::Engine(crate::with_causes(&e)))?;
                state.2.extend(model.token_piece(token, false));
                let complete = state.1.is_stopped()
                    || state
                        .1
                        .allowed()
                        .map(|m| m.num_set() == 1 && m.is_allowed(eos.0 as u32))
                        .unwrap_or(true);
                if complete || state.2.len() > 8 {
                    state.5 = true;
                } else {
                    pending[seq] = vec![token];
                }
            }
            if states.iter().all(|s| s.5) {
                break;
            }
        }
        ctx.clear_memory();
        for (q, state) in group.iter().zip(states) {
            let letter = String::from_utf8_lossy(&state.2).trim().to_string();
            let chosen = q.options.iter().position(|(l, _)| *l == letter);
            let mut scores = vec![f64::NAN; q.options.len()];
            if let Some(k) = chosen {
                scores[k] = state.6;
            }
            answers.push(McqAnswer {
                id: q.id.clone(),
                gold: q.answer_letter().to_string(),
                correct: chosen == Some(q.answer),
                predicted: letter,
                scores,
            });
            progress(answers.len());
        }
    }
    Ok(answers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::mcq::{IndexBase, parse_questions};
    use crate::llama::ModelParams;
    use crate::test_support::tiny_model_path;

    fn questions() -> Vec<Question> {
        let text = r#"{"id":"1","question":"Which drug lowers glucose?","options":{"A":"metformin","B":"warfarin","C":"aspirin","D":"heparin"},"answer":"A"}
{"id":"2","question":"Is it benign?","options":["yes","no","maybe"],"answer":1}
{"id":"3","question":"Pick one","options":{"A":"a rather long option text that goes on","B":"b"},"answer":"B"}"#;
        parse_questions(text, IndexBase::Zero).questions
    }

    #[test]
    fn both_methods_answer_every_question_with_one_of_its_letters() {
        let model = Model::load(tiny_model_path(), &ModelParams::default()).unwrap();
        let qs = questions();
        for method in [McqMethod::Logprob, McqMethod::Choice] {
            for parallel in [1, 3] {
                let settings =
                    McqSettings { method, parallel, ctx_per_sequence: 256, threads: 1, prompt_format: None };
                let mut seen = Vec::new();
                let answers = answer_questions(&model, &[], &qs, &settings, &mut |n| seen.push(n)).unwrap();
                assert_eq!(answers.len(), qs.len());
                assert_eq!(seen.last(), Some(&qs.len()));
                for (a, q) in answers.iter().zip(&qs) {
                    assert_eq!(a.id, q.id);
                    assert!(q.options.iter().any(|(l, _)| *l == a.predicted), "{method:?}: {}", a.predicted);
                    assert_eq!(a.correct, a.predicted == q.answer_letter());
                }
            }
        }
    }

    #[test]
    fn logprob_scores_do_not_depend_on_batching() {
        let model = Model::load(tiny_model_path(), &ModelParams::default()).unwrap();
        let qs = questions();
        let run = |parallel| {
            let settings = McqSettings {
                method: McqMethod::Logprob,
                parallel,
                ctx_per_sequence: 256,
                threads: 1,
                prompt_format: None,
            };
            answer_questions(&model, &[], &qs, &settings, &mut |_| {}).unwrap()
        };
        let (one, many) = (run(1), run(4));
        for (a, b) in one.iter().zip(&many) {
            assert_eq!(a.predicted, b.predicted);
            for (x, y) in a.scores.iter().zip(&b.scores) {
                assert!((x - y).abs() < 1e-3, "{x} vs {y}");
                assert!(x.is_finite() && *x < 0.0);
            }
        }
    }

    #[test]
    fn the_letter_grammar_lists_every_letter() {
        assert_eq!(letters_grammar(&questions()[1]), r#"start: "A" | "B" | "C""#);
    }
}
