//! Multiple-choice questions: readers for the formats medical benchmarks come in, and the
//! tally of answers (accuracy with a Wilson interval, per-letter confusion, letter bias).
//!
//! Formats (one question per line unless said otherwise):
//! - medllm's own: `{"id", "question", "options": {"A": .., "B": ..}, "answer": "B"}`;
//! - MedQA-style: `options` as an object or a list (a list is lettered A, B, …), the answer
//!   as `answer_idx` (a letter), as `answer` (a letter, an index, or the text of an option);
//! - MedMCQA-style: options `opa`, `opb`, `opc`, `opd` and the answer `cop` (an index);
//! - PubMedQA-style: one JSON object (not lines) of id → `{"QUESTION", "CONTEXTS",
//!   "final_decision"}`; the options are yes, no and maybe.
//!
//! Index answers count from 0 unless told to count from 1 (the original MedMCQA release
//! numbers `cop` 1–4; copies converted for other tools number it 0–3). A question with
//! fewer than two options, or whose answer is not one of them, is skipped and reported by
//! line (or id) and reason; the question text never appears in messages.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::EvalError;
use super::stats::{Estimate, wilson_interval};

/// A multiple-choice question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Question {
    /// Its id (the line number when the file gives none).
    pub id: String,
    /// The question.
    pub question: String,
    /// Background text shown before the question (PubMedQA's abstracts), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// Options in order, each with its letter.
    pub options: Vec<(String, String)>,
    /// Index of the right option.
    pub answer: usize,
}

impl Question {
    /// The letter of the right option.
    pub fn answer_letter(&self) -> &str {
        &self.options[self.answer].0
    }
}

/// A question left out, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkippedQuestion {
    /// Line number in the file (1-based; 0 for an entry of a PubMedQA-style object).
    pub line: usize,
    /// The id when one was readable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// What is wrong (never the question's text).
    pub reason: String,
}

/// Questions read from a file, and those skipped.
#[derive(Debug, Clone, Default)]
pub struct QuestionSet {
    /// Well-formed questions, in file order.
    pub questions: Vec<Question>,
    /// Malformed ones.
    pub skipped: Vec<SkippedQuestion>,
}

/// How index answers count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IndexBase {
    /// 0 is the first option.
    #[default]
    Zero,
    /// 1 is the first option.
    One,
}

/// The letters options get when a file lists them without letters.
pub const LETTERS: &[&str] = &[
    "A", "B", "C", "D", "E", "F", "G", "H", "I", "J", "K", "L", "M", "N", "O", "P", "Q", "R", "S", "T", "U",
    "V", "W", "X", "Y", "Z",
];

/// Reads questions from `path` (JSON lines in any of the styles above, or a
/// PubMedQA-style JSON object).
pub fn read_questions(path: &Path, base: IndexBase) -> Result<QuestionSet, EvalError> {
    let text = std::fs::read_to_string(path).map_err(|source| EvalError::Io { path: path.into(), source })?;
    Ok(parse_questions(&text, base))
}

/// Parses questions from the text of a file.
pub fn parse_questions(text: &str, base: IndexBase) -> QuestionSet {
    if let Some(set) = parse_pubmedqa(text) {
        return set;
    }
    let mut set = QuestionSet::default();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let line_no = i + 1;
        let value: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(_) => {
                set.skipped.push(SkippedQuestion {
                    line: line_no,
                    id: None,
                    reason: "not a JSON line".into(),
                });
                continue;
            }
        };
        let Value::Object(fields) = value else {
            set.skipped.push(SkippedQuestion { line: line_no, id: None, reason: "not a JSON object".into() });
            continue;
        };
        let id = fields.get("id").and_then(id_text);
        match question_from_fields(&fields, base) {
            Ok(mut q) => {
                q.id = id.unwrap_or_else(|| format!("line{line_no}"));
                set.questions.push(q);
            }
            Err(reason) => set.skipped.push(SkippedQuestion { line: line_no, id, reason }),
        }
    }
    set
}

fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// One question from the fields of a JSON line (the id is filled in by the caller).
fn question_from_fields(fields: &Map<String, Value>, base: IndexBase) -> Result<Question, String> {
    let question = fields
        .get("question")
        .and_then(Value::as_str)
        .filter(|q| !q.trim().is_empty())
        .ok_or("no \"question\" text")?
        .to_string();
    let options: Vec<(String, String)> = match (fields.get("options"), fields.get("opa")) {
        (Some(Value::Object(map)), _) => {
            let mut options = Vec::new();
            for (letter, text) in map {
                let text = text_of(text).ok_or_else(|| format!("option {letter} is not text"))?;
                options.push((letter.trim().to_string(), text));
            }
            options
        }
        (Some(Value::Array(list)), _) => {
            if list.len() > LETTERS.len() {
                return Err(format!("{} options; at most {} are supported", list.len(), LETTERS.len()));
            }
            let mut options = Vec::new();
            for (k, text) in list.iter().enumerate() {
                let text = text_of(text).ok_or_else(|| format!("option {} is not text", k + 1))?;
                options.push((LETTERS[k].to_string(), text));
            }
            options
        }
        (Some(_), _) => return Err("\"options\" is neither an object nor a list".into()),
        (None, Some(_)) => {
            let mut options = Vec::new();
            for (k, key) in ["opa", "opb", "opc", "opd", "ope"].iter().enumerate() {
                if let Some(v) = fields.get(*key) {
                    let text = text_of(v).ok_or_else(|| format!("option {key} is not text"))?;
                    options.push((LETTERS[k].to_string(), text));
                }
            }
            options
        }
        (None, None) => Vec::new(),
    };
    if options.len() < 2 {
        return Err(if options.is_empty() { "no options".into() } else { "only one option".into() });
    }
    let mut seen = std::collections::HashSet::new();
    if let Some((letter, _)) = options.iter().find(|(l, _)| !seen.insert(l.to_ascii_uppercase())) {
        return Err(format!("option letter {letter} appears twice"));
    }
    let by_letter = |l: &str| options.iter().position(|(k, _)| k.eq_ignore_ascii_case(l.trim()));
    let by_index = |n: i64| {
        let k = match base {
            IndexBase::Zero => n,
            IndexBase::One => n - 1,
        };
        usize::try_from(k).ok().filter(|&k| k < options.len())
    };
    let answer_value = ["answer_idx", "answer", "cop", "label"].iter().find_map(|k| fields.get(*k));
    let answer = match answer_value {
        None => return Err("no answer (answer, answer_idx or cop)".into()),
        Some(Value::Number(n)) => {
            n.as_i64().and_then(by_index).ok_or("the answer index is not one of the options")?
        }
        Some(Value::String(s)) => by_letter(s)
            .or_else(|| options.iter().position(|(_, text)| text.trim() == s.trim()))
            .or_else(|| s.trim().parse::<i64>().ok().and_then(by_index))
            .ok_or("the answer is not one of the options")?,
        Some(_) => return Err("the answer is neither a letter, an index nor an option's text".into()),
    };
    let context = match fields.get("context").or_else(|| fields.get("contexts")) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Array(parts)) => {
            Some(parts.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("\n"))
        }
        _ => None,
    };
    Ok(Question { id: String::new(), question, context, options, answer })
}

/// A PubMedQA-style file: one object of id → {QUESTION, CONTEXTS, final_decision}.
fn parse_pubmedqa(text: &str) -> Option<QuestionSet> {
    let value: Value = serde_json::from_str(text).ok()?;
    let Value::Object(entries) = value else { return None };
    // One line of JSON lines is an object too: PubMedQA's entries are all objects.
    if entries.is_empty() || !entries.values().all(Value::is_object) {
        return None;
    }
    let mut set = QuestionSet::default();
    for (id, entry) in &entries {
        let skip = |reason: &str| SkippedQuestion { line: 0, id: Some(id.clone()), reason: reason.into() };
        let Some(question) = entry.get("QUESTION").and_then(Value::as_str).filter(|q| !q.trim().is_empty())
        else {
            set.skipped.push(skip("no QUESTION text"));
            continue;
        };
        let options: Vec<(String, String)> = ["yes", "no", "maybe"]
            .iter()
            .enumerate()
            .map(|(k, o)| (LETTERS[k].to_string(), o.to_string()))
            .collect();
        let decision = entry.get("final_decision").and_then(Value::as_str).map(str::trim);
        let Some(answer) = decision.and_then(|d| options.iter().position(|(_, o)| o.eq_ignore_ascii_case(d)))
        else {
            set.skipped.push(skip("final_decision is not yes, no or maybe"));
            continue;
        };
        let context = entry
            .get("CONTEXTS")
            .and_then(Value::as_array)
            .map(|parts| parts.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("\n"));
        set.questions.push(Question {
            id: id.clone(),
            question: question.to_string(),
            context,
            options,
            answer,
        });
    }
    Some(set)
}

/// The model's answer to one question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McqAnswer {
    /// The question's id.
    pub id: String,
    /// The right letter.
    pub gold: String,
    /// The letter chosen.
    pub predicted: String,
    /// Whether they agree.
    pub correct: bool,
    /// Per option, the score it was chosen by (length-normalised log-likelihood for
    /// `logprob`, the letter's log-probability for `choice`).
    pub scores: Vec<f64>,
}

/// The tally of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct McqScores {
    /// How the answers were chosen (`logprob` or `choice`).
    pub method: String,
    /// Questions answered.
    pub questions: usize,
    /// Answered right.
    pub correct: usize,
    /// correct / questions, with its 95% Wilson interval.
    pub accuracy: Estimate,
    /// Malformed questions left out.
    pub skipped: usize,
    /// gold letter → predicted letter → count.
    pub confusion: BTreeMap<String, BTreeMap<String, usize>>,
    /// Letter chosen most often.
    pub most_chosen_letter: String,
    /// Share of answers that are that letter (the letter-bias rate).
    pub letter_bias_rate: f64,
    /// Share of questions whose right answer is that letter (what the rate would be
    /// without bias).
    pub most_chosen_letter_gold_rate: f64,
}

/// Tallies `answers`.
pub fn score_mcq(method: &str, answers: &[McqAnswer], skipped: usize) -> McqScores {
    let mut confusion: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let mut chosen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut gold: BTreeMap<&str, usize> = BTreeMap::new();
    for a in answers {
        *confusion.entry(a.gold.clone()).or_default().entry(a.predicted.clone()).or_default() += 1;
        *chosen.entry(&a.predicted).or_default() += 1;
        *gold.entry(&a.gold).or_default() += 1;
    }
    let correct = answers.iter().filter(|a| a.correct).count();
    // The most chosen letter; ties go to the earlier letter.
    let (most, most_count) =
        chosen.iter().fold(("", 0usize), |best, (&letter, &n)| if n > best.1 { (letter, n) } else { best });
    let n = answers.len().max(1) as f64;
    McqScores {
        method: method.to_string(),
        questions: answers.len(),
        correct,
        accuracy: wilson_interval(correct, answers.len()),
        skipped,
        confusion,
        most_chosen_letter: most.to_string(),
        letter_bias_rate: most_count as f64 / n,
        most_chosen_letter_gold_rate: gold.get(most).copied().unwrap_or(0) as f64 / n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_medqa_and_medmcqa_styles() {
        let text = r#"{"id":"q1","question":"Which?","options":{"A":"x","B":"y"},"answer":"B"}
{"question":"MedQA?","options":{"A":"aa","B":"bb","C":"cc","D":"dd","E":"ee"},"answer":"cc","answer_idx":"C"}
{"id":7,"question":"List?","options":["p","q","r"],"answer":2}
{"id":"m1","question":"MedMCQA?","opa":"one","opb":"two","opc":"three","opd":"four","cop":3}
{"id":"t","question":"By text?","options":{"A":"alpha","B":"beta"},"answer":"beta"}

{"id":"bad1","question":"No options","answer":"A"}
{"id":"bad2","question":"Wrong answer","options":{"A":"x","B":"y"},"answer":"C"}
not json
{"id":"bad3","options":{"A":"x","B":"y"},"answer":"A"}
{"id":"bad4","question":"Index out","options":["x","y"],"answer":2}
"#;
        let set = parse_questions(text, IndexBase::Zero);
        let got: Vec<(&str, &str, usize)> =
            set.questions.iter().map(|q| (q.id.as_str(), q.answer_letter(), q.options.len())).collect();
        assert_eq!(got, [("q1", "B", 2), ("line2", "C", 5), ("7", "C", 3), ("m1", "D", 4), ("t", "B", 2)]);
        assert_eq!(set.questions[3].options[3], ("D".to_string(), "four".to_string()));
        let skipped: Vec<(usize, Option<&str>)> =
            set.skipped.iter().map(|s| (s.line, s.id.as_deref())).collect();
        assert_eq!(
            skipped,
            [(7, Some("bad1")), (8, Some("bad2")), (9, None), (10, Some("bad3")), (11, Some("bad4"))]
        );
        assert_eq!(set.skipped[0].reason, "no options");
        assert_eq!(set.skipped[1].reason, "the answer is not one of the options");
    }

    #[test]
    fn one_based_indexes_for_the_original_medmcqa_release() {
        let text =
            r#"{"id":"m1","question":"Q?","opa":"one","opb":"two","opc":"three","opd":"four","cop":1}"#;
        assert_eq!(parse_questions(text, IndexBase::One).questions[0].answer_letter(), "A");
        assert_eq!(parse_questions(text, IndexBase::Zero).questions[0].answer_letter(), "B");
    }

    #[test]
    fn reads_pubmedqa_style_objects() {
        let text = r#"{"12345": {"QUESTION": "Does X help?", "CONTEXTS": ["First.", "Second."], "final_decision": "maybe"},
 "678": {"QUESTION": "Does Y?", "CONTEXTS": [], "final_decision": "perhaps"}}"#;
        let set = parse_questions(text, IndexBase::Zero);
        assert_eq!(set.questions.len(), 1);
        let q = &set.questions[0];
        assert_eq!((q.id.as_str(), q.answer_letter(), q.options[2].1.as_str()), ("12345", "C", "maybe"));
        assert_eq!(q.context.as_deref(), Some("First.\nSecond."));
        assert_eq!(set.skipped[0].id.as_deref(), Some("678"));
    }

    #[test]
    fn tally_confusion_and_letter_bias() {
        let answer = |gold: &str, predicted: &str| McqAnswer {
            id: String::new(),
            gold: gold.into(),
            predicted: predicted.into(),
            correct: gold == predicted,
            scores: Vec::new(),
        };
        let answers = [answer("A", "A"), answer("B", "A"), answer("C", "A"), answer("B", "B")];
        let s = score_mcq("logprob", &answers, 1);
        assert_eq!((s.questions, s.correct, s.skipped), (4, 2, 1));
        assert_eq!(s.accuracy.value, 0.5);
        assert_eq!(s.confusion["B"]["A"], 1);
        assert_eq!(s.confusion["B"]["B"], 1);
        assert_eq!(s.most_chosen_letter, "A");
        assert_eq!(s.letter_bias_rate, 0.75);
        assert_eq!(s.most_chosen_letter_gold_rate, 0.25);
    }
}
