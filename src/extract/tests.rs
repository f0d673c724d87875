//! Extraction on the tiny random model: whatever the model prefers, the output is valid.

use serde_json::Value;

use super::*;
use crate::data::{Document, InputItem};
use crate::llama::{Model, ModelParams};
use crate::test_support::tiny_model_path;

fn documents(n: usize) -> Vec<InputItem> {
    let texts = [
        "Discharge summary. 67-year-old male admitted with pneumonia. Meds: ceftriaxone 1 g IV daily. Allergies: penicillin.",
        "Clinic note: 45 yo F, BP 132/84, HR 76. Hypothyroidism. Levothyroxine 88 mcg daily. NKDA. Never smoker.",
        "CT chest: 1.2 cm nodule right upper lobe. Impression: nodule, follow-up CT in 6 months.",
        "Labs 03/14/2024: Na 131 mmol/L (135-145) L; K 4.1 mmol/L (3.5-5.1); Cr 1.9 mg/dL (0.6-1.2) H.",
    ];
    (0..n)
        .map(|i| {
            InputItem::Document(Document {
                id: format!("doc{i}"),
                text: texts[i % texts.len()].into(),
                ..Default::default()
            })
        })
        .collect()
}

/// The text of the test document `docN`.
fn text_of(id: &str) -> String {
    let index: usize = id.trim_start_matches("doc").parse().unwrap();
    match &documents(index + 1)[index] {
        InputItem::Document(d) => d.text.clone(),
        InputItem::Failed { .. } => unreachable!("test documents are documents"),
    }
}

/// Sampling at temperature 1 with room for the longest answer the schema allows.
fn sampled(schema: &ExtractionSchema, seed: u64) -> ExtractOptions {
    ExtractOptions {
        parallel: 2,
        temperature: 1.0,
        seed,
        max_tokens: usize::MAX,
        ctx_per_sequence: 2048 + schema.max_output_bytes as u32,
        threads: 2,
        ..ExtractOptions::default()
    }
}

fn run(
    model: &Model,
    schema: &ExtractionSchema,
    options: ExtractOptions,
    docs: Vec<InputItem>,
) -> Vec<ExtractionRecord> {
    let mut extractor =
        Extractor::new(model, &[], OutputConstraint::Schema(schema.clone()), options).unwrap();
    let mut records = Vec::new();
    extractor
        .run(docs.into_iter(), &mut |r| {
            records.push(r);
            Ok::<_, std::convert::Infallible>(())
        })
        .unwrap();
    records
}

/// The point of constrained decoding: a random model, sampled at a high temperature,
/// still writes valid JSON for every schema, every seed, every document.
#[test]
fn every_built_in_schema_gives_valid_json_for_many_seeds() {
    let model = Model::load(tiny_model_path(), &ModelParams::default()).unwrap();
    for (name, _, _) in BUILT_IN_SCHEMAS {
        let source = load_schema(name).unwrap();
        let schema = ExtractionSchema::compile(name, &source.schema, SchemaLimits::default()).unwrap();
        let validator = jsonschema::validator_for(&source.schema).unwrap();
        for seed in 0..3 {
            let options =
                ExtractOptions { parallel: 3, examples: source.examples.clone(), ..sampled(&schema, seed) };
            let records = run(&model, &schema, options, documents(4));
            assert_eq!(records.len(), 4);
            for record in records {
                assert!(record.valid, "{name} seed {seed} {}: {:?}", record.id, record.error);
                let data = record.data.expect("valid records carry data");
                assert!(validator.is_valid(&data), "{name}: not valid under the original schema");
                assert!(record.tokens.generated > 0 && record.tokens.prompt > 0);
            }
        }
    }
}

#[test]
fn records_are_deterministic_when_greedy() {
    let model = Model::load(tiny_model_path(), &ModelParams::default()).unwrap();
    let source = load_schema("medication_list").unwrap();
    let schema = ExtractionSchema::compile("m", &source.schema, SchemaLimits::default()).unwrap();
    let options = || ExtractOptions {
        parallel: 1,
        threads: 2,
        max_tokens: 4096,
        ctx_per_sequence: 8192,
        ..ExtractOptions::default()
    };
    let first = run(&model, &schema, options(), documents(2));
    let second = run(&model, &schema, options(), documents(2));
    let data =
        |records: &[ExtractionRecord]| records.iter().map(|r| r.data.clone()).collect::<Vec<Option<Value>>>();
    assert_eq!(data(&first), data(&second));
}

#[test]
fn grounding_spans_point_into_the_source() {
    let model = Model::load(tiny_model_path(), &ModelParams::default()).unwrap();
    let source = load_schema("discharge_summary").unwrap();
    let schema = ExtractionSchema::compile("d", &source.schema, SchemaLimits::default()).unwrap();
    let options = sampled(&schema, 3);
    let docs = documents(4);
    for record in run(&model, &schema, options, docs) {
        let text = text_of(&record.id);
        for span in &record.grounding {
            let passage: String = text.chars().skip(span.start).take(span.end - span.start).collect();
            assert_eq!(passage, span.text);
            let value = record.data.as_ref().unwrap().pointer(&span.path).and_then(Value::as_str).unwrap();
            if span.kind == MatchKind::Exact {
                assert_eq!(value, span.text);
            }
        }
    }
}

#[test]
fn failed_inputs_become_error_records_and_the_rest_run() {
    let model = Model::load(tiny_model_path(), &ModelParams::default()).unwrap();
    let source = load_schema("lab_report").unwrap();
    let schema = ExtractionSchema::compile("l", &source.schema, SchemaLimits::default()).unwrap();
    let mut docs = documents(2);
    docs.insert(1, InputItem::Failed { id: "broken".into(), error: "bad CSV row".into() });
    let options = ExtractOptions { parallel: 2, threads: 2, max_tokens: 64, ..ExtractOptions::default() };
    let records = run(&model, &schema, options, docs);
    assert_eq!(records.len(), 3);
    let broken = records.iter().find(|r| r.id == "broken").unwrap();
    assert!(!broken.valid && broken.error.as_deref() == Some("bad CSV row"));
    // A budget of 64 tokens cannot hold a random model's lab report: cut, reported, invalid.
    let cut = records.iter().filter(|r| r.id != "broken").filter(|r| !r.valid).count();
    for r in records.iter().filter(|r| r.id != "broken" && !r.valid) {
        assert!(r.error.as_deref().unwrap().contains("budget"), "{:?}", r.error);
        assert!(r.tokens.generated <= 64);
    }
    assert!(cut >= 1, "a random model's lab report should not fit 64 tokens");
}

#[test]
fn extractive_values_are_passages_of_the_document() {
    let model = Model::load(tiny_model_path(), &ModelParams::default()).unwrap();
    let source = load_schema("discharge_summary").unwrap();
    let schema = ExtractionSchema::compile("d", &source.schema, SchemaLimits::default()).unwrap();
    let categories = schema::enum_pointers(&schema.bounded);
    let mut checked = 0;
    for seed in 0..3 {
        let options = ExtractOptions { extractive: true, ..sampled(&schema, seed) };
        let docs = documents(4);
        for record in run(&model, &schema, options, docs) {
            assert!(record.valid, "seed {seed}: {:?}", record.error);
            let text = text_of(&record.id);
            walk_strings(record.data.as_ref().unwrap(), &mut String::new(), &mut |path, value| {
                if categories.iter().any(|p| schema::matches_pattern(p, path)) {
                    return;
                }
                assert!(text.contains(value), "seed {seed} {path}: {value:?} is not in the document");
                checked += 1;
            });
        }
    }
    assert!(checked > 20, "only {checked} strings checked");
}

/// Records and totals of a run.
fn run_with_summary(
    model: &Model,
    schema: &ExtractionSchema,
    options: ExtractOptions,
    docs: Vec<InputItem>,
) -> (Vec<ExtractionRecord>, RunSummary) {
    let mut extractor =
        Extractor::new(model, &[], OutputConstraint::Schema(schema.clone()), options).unwrap();
    let mut records = Vec::new();
    let summary = extractor
        .run(docs.into_iter(), &mut |r| {
            records.push(r);
            Ok::<_, std::convert::Infallible>(())
        })
        .unwrap();
    records.sort_by(|a, b| a.id.cmp(&b.id));
    (records, summary)
}

/// Speculative copying is exact: under greedy decoding every record (data, validity,
/// token counts) is what one-token-a-step decoding writes, with passages forced by
/// `--extractive` or free (drafts that are taken: `engine::tests`).
#[test]
fn speculative_copying_changes_no_greedy_record() {
    let model = Model::load(tiny_model_path(), &ModelParams::default()).unwrap();
    let source = load_schema("discharge_summary").unwrap();
    let schema = ExtractionSchema::compile("d", &source.schema, SchemaLimits::default()).unwrap();
    for extractive in [false, true] {
        let options = |speculate| ExtractOptions {
            parallel: 3,
            threads: 2,
            max_tokens: 400,
            ctx_per_sequence: 2048,
            extractive,
            speculate,
            ..ExtractOptions::default()
        };
        let (plain, plain_summary) = run_with_summary(&model, &schema, options(false), documents(4));
        let (fast, fast_summary) = run_with_summary(&model, &schema, options(true), documents(4));
        assert_eq!(plain_summary.speculation.drafted, 0);
        let strip = |records: &[ExtractionRecord]| {
            records
                .iter()
                .map(|r| (r.id.clone(), r.data.clone(), r.valid, r.error.clone(), r.tokens))
                .collect::<Vec<_>>()
        };
        assert_eq!(strip(&plain), strip(&fast), "extractive: {extractive}");
        assert!(fast_summary.speculation.drafted > 0, "extractive: {extractive}: nothing was drafted");
    }
}
