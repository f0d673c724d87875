//! `medllm eval mcq|summary|perplexity|report|synth-mcq` as users run them, and the
//! metrics against the reference Python packages.

use std::path::{Path, PathBuf};
use std::process::Command as Process;

use serde::Deserialize;
use serde_json::Value;

use crate::{medllm, stderr_of, tiny_model};

/// A virtual environment with `rouge-score` and `sacrebleu` (pinned), made once per target
/// folder and reused.
fn reference_python() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("eval-reference-venv");
    let python = dir.join("bin/python");
    let ready = dir.join(".installed-rouge-score-0.1.2-sacrebleu-2.6.0");
    if !ready.exists() {
        let status = Process::new("python3").args(["-m", "venv"]).arg(&dir).status().expect("python3 runs");
        assert!(status.success(), "python3 -m venv failed");
        let status = Process::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "rouge-score==0.1.2",
                "sacrebleu==2.6.0",
            ])
            .status()
            .expect("pip runs");
        assert!(
            status.success(),
            "installing rouge-score and sacrebleu from the Python package index failed"
        );
        std::fs::write(&ready, b"").unwrap();
    }
    python
}

const REFERENCE_SCRIPT: &str = r#"
import json, sys
from rouge_score import rouge_scorer
from nltk.stem import porter
import sacrebleu
pairs = [json.loads(l) for l in open(sys.argv[1])]
words = [w.strip() for w in open(sys.argv[2]) if w.strip()]
out = {}
for stem in (False, True):
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=stem)
    sums = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for p in pairs:
        s = scorer.score(p["reference"], p["prediction"])
        for k in sums:
            sums[k] += s[k].fmeasure
    for k, v in sums.items():
        out[k + ("_stemmed" if stem else "")] = v / len(pairs)
bleu = sacrebleu.corpus_bleu([p["prediction"] for p in pairs], [[p["reference"] for p in pairs]])
out["bleu"] = bleu.score
stemmer = porter.PorterStemmer()
out["stems"] = [stemmer.stem(w) for w in words]
print(json.dumps(out))
"#;

#[derive(Debug, Deserialize)]
struct ReferenceScores {
    rouge1: f64,
    rouge2: f64,
    #[serde(rename = "rougeL")]
    rouge_l: f64,
    rouge1_stemmed: f64,
    rouge2_stemmed: f64,
    #[serde(rename = "rougeL_stemmed")]
    rouge_l_stemmed: f64,
    bleu: f64,
    stems: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct OurRouge {
    rouge1: f64,
    rouge2: f64,
    rouge_l: f64,
    rouge1_stemmed: f64,
    rouge2_stemmed: f64,
    rouge_l_stemmed: f64,
}

#[derive(Debug, Deserialize)]
struct OurBleu {
    score: f64,
}

#[derive(Debug, Deserialize)]
struct OurSummaryScores {
    pairs: usize,
    rouge: OurRouge,
    bleu: OurBleu,
}

/// A fixed sample: synthetic clinical text cut at odd places (so references and
/// predictions differ in length, punctuation, numbers and inflections), plus lines that
/// exercise the tokenizers' corners.
fn sample_pairs() -> Vec<(String, String)> {
    let docs: Vec<String> = medllm::data::synth::generate(medllm::data::synth::SynthOptions {
        count: 40,
        seed: 99,
        duplicate_rate: 0.0,
    })
    .map(|d| d.text)
    .collect();
    let cut = |text: &str, from: usize, len: usize| -> String { text.chars().skip(from).take(len).collect() };
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        let other = &docs[(i + 1) % docs.len()];
        match i % 4 {
            0 => pairs.push((cut(doc, 0, 400), cut(doc, 20, 300))),
            1 => pairs.push((cut(doc, 0, 250), cut(other, 0, 250))),
            2 => pairs.push((cut(doc, 50, 200), format!("{} {}", cut(doc, 60, 120), cut(other, 0, 90)))),
            _ => pairs.push((cut(doc, 0, 500), cut(doc, 0, 500).replace("ed ", "ing ").replace("s ", " "))),
        }
    }
    for (r, p) in [
        (
            "BP 120/80, HR 72; temp 37.5 C. Follow-up in 2-3 weeks.",
            "BP 120/80 HR 72, temp 37.5C; follow up 2 - 3 weeks",
        ),
        (
            "Patient's &quot;symptoms&quot; improved... discharged home.",
            "patient symptoms improving, discharged to home.",
        ),
        ("Café-au-lait spots; naïve T-cells (CD4+) <200.", "cafe au lait spots, naive T cells CD4 < 200"),
        ("The relational conditional hopefully generalizations", "relate condition hope generalize"),
        ("x", "completely different words here"),
    ] {
        pairs.push((r.to_string(), p.to_string()));
    }
    pairs
}

/// Words for the stemmer: every word of the lexicon files and of the sample, with
/// common endings added.
fn stemmer_words() -> Vec<String> {
    let mut words = std::collections::BTreeSet::new();
    let lexicon = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/data/lexicon");
    let mut text = String::new();
    for entry in std::fs::read_dir(lexicon).unwrap() {
        text.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default());
    }
    for (r, p) in sample_pairs() {
        text.push_str(&r);
        text.push_str(&p);
    }
    for token in medllm::eval::rouge_tokens(&text, false) {
        if token.len() > 3 && token.chars().all(|c| c.is_ascii_lowercase()) {
            for ending in [
                "", "s", "es", "ed", "ing", "ly", "ness", "ational", "ization", "fulness", "ies", "ied",
                "alli", "logy",
            ] {
                words.insert(format!("{token}{ending}"));
            }
        }
    }
    words.into_iter().collect()
}

#[test]
fn rouge_bleu_and_stems_agree_with_rouge_score_and_sacrebleu() {
    let python = reference_python();
    let dir = tempfile::tempdir().unwrap();
    let pairs = sample_pairs();
    let sample = dir.path().join("pairs.jsonl");
    let refs = dir.path().join("refs.jsonl");
    let preds = dir.path().join("preds.jsonl");
    let words_path = dir.path().join("words.txt");
    let line = |k: &str, v: &str, i: usize| serde_json::json!({"id": format!("p{i:03}"), k: v}).to_string();
    let joined = |k: &str, pick: fn(&(String, String)) -> &String| {
        pairs.iter().enumerate().map(|(i, p)| line(k, pick(p), i)).collect::<Vec<_>>().join("\n")
    };
    std::fs::write(&refs, joined("summary", |p| &p.0)).unwrap();
    std::fs::write(&preds, joined("summary", |p| &p.1)).unwrap();
    let sample_lines: Vec<String> =
        pairs.iter().map(|(r, p)| serde_json::json!({"reference": r, "prediction": p}).to_string()).collect();
    std::fs::write(&sample, sample_lines.join("\n")).unwrap();
    let words = stemmer_words();
    assert!(words.len() > 5000, "{} words", words.len());
    std::fs::write(&words_path, words.join("\n")).unwrap();

    let output =
        Process::new(&python).args(["-c", REFERENCE_SCRIPT]).arg(&sample).arg(&words_path).output().unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let expected: ReferenceScores = serde_json::from_slice(&output.stdout).unwrap();

    let output = medllm()
        .args(["eval", "summary", "--json", "--refs"])
        .arg(&refs)
        .arg("--pred")
        .arg(&preds)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let ours: OurSummaryScores = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(ours.pairs, pairs.len());
    for (name, a, b) in [
        ("rouge1", ours.rouge.rouge1, expected.rouge1),
        ("rouge2", ours.rouge.rouge2, expected.rouge2),
        ("rougeL", ours.rouge.rouge_l, expected.rouge_l),
        ("rouge1 stemmed", ours.rouge.rouge1_stemmed, expected.rouge1_stemmed),
        ("rouge2 stemmed", ours.rouge.rouge2_stemmed, expected.rouge2_stemmed),
        ("rougeL stemmed", ours.rouge.rouge_l_stemmed, expected.rouge_l_stemmed),
        ("bleu", ours.bleu.score, expected.bleu),
    ] {
        assert!((a - b).abs() < 1e-4, "{name}: ours {a}, reference {b}");
    }
    // Stemming changes the figures on this sample, so the stemmed comparison means something.
    assert!((expected.rouge1_stemmed - expected.rouge1).abs() > 1e-3);
    let differing: Vec<(&String, String, &String)> = words
        .iter()
        .zip(&expected.stems)
        .map(|(w, s)| (w, medllm::eval::porter_stem(w), s))
        .filter(|(_, ours, theirs)| ours != *theirs)
        .collect();
    assert!(
        differing.is_empty(),
        "{} of {} stems differ, e.g. {:?}",
        differing.len(),
        words.len(),
        &differing[..differing.len().min(10)]
    );
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

const QUESTIONS: &str = r#"{"id":"q1","question":"Which drug lowers glucose?","options":{"A":"metformin","B":"warfarin","C":"aspirin","D":"heparin"},"answer":"A"}
{"id":"q2","question":"Is the lesion benign?","options":["yes","no","maybe"],"answer":1}
{"id":"q3","question":"MedMCQA style","opa":"one","opb":"two","opc":"three","opd":"four","cop":2}
{"id":"q4","question":"Which is a beta blocker?","options":{"A":"metoprolol","B":"lisinopril"},"answer_idx":"A"}
"#;

#[derive(Debug, Deserialize)]
struct McqJson {
    questions: usize,
    correct: usize,
    skipped: usize,
    accuracy: Value,
    confusion: std::collections::BTreeMap<String, std::collections::BTreeMap<String, usize>>,
    letter_bias_rate: f64,
}

#[test]
fn mcq_on_the_tiny_model_gives_a_valid_letter_for_every_question_both_methods() {
    let dir = tempfile::tempdir().unwrap();
    let questions = dir.path().join("q.jsonl");
    write(&questions, QUESTIONS);
    for method in ["logprob", "choice"] {
        let answers = dir.path().join(format!("{method}.jsonl"));
        let output = medllm()
            .args(["eval", "mcq", "--json", "-t", "1", "-P", "2", "-m"])
            .arg(tiny_model())
            .arg("--questions")
            .arg(&questions)
            .args(["--method", method, "--answers"])
            .arg(&answers)
            .output()
            .unwrap();
        assert!(output.status.success(), "{method}: {}", stderr_of(&output));
        let scores: McqJson = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!((scores.questions, scores.skipped), (4, 0));
        assert_eq!(scores.confusion.values().flat_map(|m| m.values()).sum::<usize>(), 4);
        assert!(scores.letter_bias_rate >= 0.25 && scores.letter_bias_rate <= 1.0);
        let low = scores.accuracy["low"].as_f64().unwrap();
        assert!(low <= scores.correct as f64 / 4.0);
        let lines: Vec<Value> = std::fs::read_to_string(&answers)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let valid: [&[&str]; 4] =
            [&["A", "B", "C", "D"], &["A", "B", "C"], &["A", "B", "C", "D"], &["A", "B"]];
        for (line, letters) in lines.iter().zip(valid) {
            let predicted = line["predicted"].as_str().unwrap();
            assert!(letters.contains(&predicted), "{method}: {predicted} for {}", line["id"]);
        }
        assert_eq!(lines[2]["gold"], "C");
    }
}

#[test]
fn malformed_questions_are_reported_by_line_skipped_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let questions = dir.path().join("q.jsonl");
    write(
        &questions,
        &format!(
            "{QUESTIONS}{}\n{}\n",
            r#"{"id":"bad1","question":"Secret question text","answer":"A"}"#,
            r#"{"id":"bad2","question":"Another secret","options":{"A":"x","B":"y"},"answer":"E"}"#
        ),
    );
    let output = medllm()
        .args(["eval", "mcq", "--json", "-t", "1", "-m"])
        .arg(tiny_model())
        .arg("--questions")
        .arg(&questions)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    let stderr = stderr_of(&output);
    assert!(stderr.contains("q.jsonl:5 (id bad1): no options"), "{stderr}");
    assert!(stderr.contains("q.jsonl:6 (id bad2): the answer is not one of the options"), "{stderr}");
    assert!(!stderr.contains("secret"), "question text leaked: {stderr}");
    let scores: McqJson = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!((scores.questions, scores.skipped), (4, 2));
}

#[test]
fn pubmedqa_style_json_is_read_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let questions = dir.path().join("pqa.json");
    write(
        &questions,
        r#"{"101": {"QUESTION": "Does aspirin reduce risk?", "CONTEXTS": ["Trial text."], "LABELS": ["RESULTS"], "final_decision": "yes"},
            "102": {"QUESTION": "Is surgery better?", "CONTEXTS": ["Other text."], "final_decision": "no"}}"#,
    );
    let output = medllm()
        .args(["eval", "mcq", "--json", "-t", "1", "--method", "choice", "-m"])
        .arg(tiny_model())
        .arg("--questions")
        .arg(&questions)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let scores: McqJson = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(scores.questions, 2);
    assert!(scores.confusion.contains_key("A") && scores.confusion.contains_key("B"));
}

#[derive(Debug, Deserialize)]
struct PerplexityJson {
    tokens_scored: usize,
    perplexity: f64,
    perplexity_stderr: f64,
}

#[derive(Debug, Deserialize)]
struct QualityJson {
    tokens_scored: usize,
    model_perplexity: f64,
}

#[test]
fn perplexity_matches_quality_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("t.txt");
    write(&text, &"Chest pain resolved after nitroglycerin; troponin negative twice. ".repeat(30));
    let output = medllm()
        .args(["eval", "perplexity", "--json", "-t", "1", "--ctx", "64", "-m"])
        .arg(tiny_model())
        .arg("--text")
        .arg(&text)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let ours: PerplexityJson = serde_json::from_slice(&output.stdout).unwrap();
    let output = medllm()
        .args(["quality", "--json", "-t", "1", "--ctx", "64", "--ref"])
        .arg(tiny_model())
        .arg(tiny_model())
        .arg("--text")
        .arg(&text)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let quality: QualityJson = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(ours.tokens_scored, quality.tokens_scored);
    assert!((ours.perplexity - quality.model_perplexity).abs() < 1e-6 * quality.model_perplexity);
    assert!(ours.perplexity_stderr > 0.0);
}

/// A random LoRA adapter for the tiny model, through the PEFT fixture and `lora convert`.
fn tiny_adapter(dir: &Path) -> PathBuf {
    let peft = dir.join("peft");
    let output = medllm()
        .args(["dev", "peft-adapter", "--base"])
        .arg(tiny_model())
        .arg("-o")
        .arg(&peft)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let adapter = dir.join("adapter.gguf");
    let output = medllm()
        .args(["lora", "convert", "-q", "--peft"])
        .arg(&peft)
        .arg("--base")
        .arg(tiny_model())
        .arg("-o")
        .arg(&adapter)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    adapter
}

#[test]
fn report_renders_both_models_on_synthetic_held_out_data() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus");
    let output =
        medllm().args(["synth", "-q", "--n", "12", "--seed", "31", "-o"]).arg(&corpus).output().unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let mcq = dir.path().join("mcq.jsonl");
    let output = medllm()
        .args(["eval", "synth-mcq", "-q", "--seed", "2"])
        .arg(corpus.join("documents.jsonl"))
        .arg("-o")
        .arg(&mcq)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    write(
        &dir.path().join("heldout.txt"),
        &"The patient was seen in clinic for follow-up of hypertension. ".repeat(20),
    );
    write(
        &dir.path().join("summ.jsonl"),
        "{\"id\":\"s1\",\"text\":\"Chest pain, troponin negative. Impression: no infarction.\"}\n",
    );
    write(&dir.path().join("refs.jsonl"), "{\"id\":\"s1\",\"summary\":\"no infarction\"}\n");
    let suite = dir.path().join("suite.toml");
    write(
        &suite,
        r#"[mcq]
questions = "mcq.jsonl"
limit = 4
parallel = 2
[summary]
docs = "summ.jsonl"
refs = "refs.jsonl"
max_tokens = 8
[perplexity]
text = "heldout.txt"
ctx = 64
chunks = 2
[deid]
gold = "corpus/documents.jsonl"
"#,
    );
    let adapter = tiny_adapter(dir.path());
    let out = dir.path().join("report");
    let output = medllm()
        .args(["eval", "report", "-t", "1", "--base"])
        .arg(tiny_model())
        .arg("--lora")
        .arg(&adapter)
        .arg("--suite")
        .arg(&suite)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let report: Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let tasks = report["tasks"].as_array().unwrap();
    let names: Vec<&str> = tasks.iter().map(|t| t["task"].as_str().unwrap()).collect();
    assert_eq!(names, ["mcq", "summary", "perplexity", "deid"]);
    for t in tasks {
        for side in ["base", "tuned"] {
            let e = &t[side]["estimate"];
            let (low, value, high) =
                (e["low"].as_f64().unwrap(), e["value"].as_f64().unwrap(), e["high"].as_f64().unwrap());
            assert!(low <= value && value <= high, "{}: {side} {e}", t["task"]);
        }
    }
    // The adapter changes the model: perplexity differs between the two sides.
    let ppl = &tasks[2];
    assert_ne!(ppl["base"]["estimate"]["value"], ppl["tuned"]["estimate"]["value"]);
    // De-identification involves no model: both sides agree.
    assert_eq!(tasks[3]["base"]["estimate"], tasks[3]["tuned"]["estimate"]);
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("| mcq | accuracy |") && md.contains("chart-perplexity.png"), "{md}");
    for name in names {
        let png = std::fs::read(out.join(format!("chart-{name}.png"))).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert!(png.len() > 2000);
    }
}

#[test]
fn summary_from_a_model_writes_predictions_and_scores_them() {
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("docs.jsonl");
    write(
        &docs,
        "{\"id\":\"a\",\"text\":\"Cough for two weeks. Impression: bronchitis.\"}\n{\"id\":\"b\",\"text\":\"Knee pain.\"}\n",
    );
    let refs = dir.path().join("refs.jsonl");
    write(&refs, "{\"id\":\"a\",\"summary\":\"bronchitis\"}\n{\"id\":\"b\",\"summary\":\"knee pain\"}\n");
    let preds = dir.path().join("preds.jsonl");
    let output = medllm()
        .args(["eval", "summary", "--json", "-t", "1", "--max-tokens", "6", "-m"])
        .arg(tiny_model())
        .arg("--docs")
        .arg(&docs)
        .arg("--refs")
        .arg(&refs)
        .arg("-o")
        .arg(&preds)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let scores: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(scores["pairs"], 2);
    let written: Vec<Value> =
        std::fs::read_to_string(&preds).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(written.len(), 2);
    assert!(written.iter().all(|l| l["summary"].is_string()));
    // Scoring the written predictions again gives the same figures.
    let again = medllm()
        .args(["eval", "summary", "--json", "--refs"])
        .arg(&refs)
        .arg("--pred")
        .arg(&preds)
        .output()
        .unwrap();
    let again: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(again["rouge"], scores["rouge"]);
}
