use super::*;
use crate::data::phi::{PhiCategory, to_byte_offsets};
use crate::extract::load_schema;

fn corpus(count: usize, seed: u64) -> Vec<SynthDocument> {
    generate(SynthOptions { count, seed, duplicate_rate: 0.02 }).collect()
}

#[test]
fn the_same_seed_gives_the_same_corpus_and_another_seed_another() {
    let a = corpus(40, 11);
    let b = corpus(40, 11);
    assert_eq!(a.len(), 40);
    assert_eq!(serde_json::to_string(&a).unwrap(), serde_json::to_string(&b).unwrap());
    let c = corpus(40, 12);
    assert_ne!(a[0].text, c[0].text);
}

#[test]
fn every_kind_and_style_appears_and_spans_point_at_text() {
    let docs = corpus(300, 5);
    for kind in ["discharge_summary", "radiology_report", "clinic_note", "lab_report", "ed_note"] {
        assert!(docs.iter().any(|d| d.kind == kind), "no {kind}");
    }
    for style in ["narrative", "sectioned", "terse"] {
        assert!(docs.iter().any(|d| d.style == style), "no {style}");
    }
    let mut categories = std::collections::BTreeSet::new();
    for doc in &docs {
        for span in &doc.phi {
            let (start, end) =
                to_byte_offsets(&doc.text, span.start, span.end).expect("span inside the text");
            let value = &doc.text[start..end];
            assert!(!value.trim().is_empty() && value.trim() == value, "{}: bad span {span:?}", doc.id);
            categories.insert(span.category);
        }
    }
    for category in [
        PhiCategory::Name,
        PhiCategory::Date,
        PhiCategory::Age,
        PhiCategory::Mrn,
        PhiCategory::Phone,
        PhiCategory::Address,
        PhiCategory::City,
        PhiCategory::Zip,
        PhiCategory::Hospital,
        PhiCategory::HealthPlan,
        PhiCategory::Account,
        PhiCategory::Email,
    ] {
        assert!(categories.contains(&category), "no {category} span in 300 documents");
    }
}

/// Every gold string can be grounded: it is in the text verbatim.
fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

const ENUM_FIELDS: [&str; 6] =
    ["sex", "discharge_disposition", "smoking_status", "modality", "flag", "status"];

#[test]
fn gold_is_valid_for_its_schema_and_every_free_text_value_is_in_the_document() {
    let docs = corpus(200, 9);
    for doc in &docs {
        for (schema_name, data) in &doc.gold {
            let source = load_schema(schema_name).expect("built-in schema");
            let validator = jsonschema::validator_for(&source.schema).expect("valid schema");
            assert!(validator.is_valid(data), "{}: gold invalid for {schema_name}: {data}", doc.id);
            let mut free_text = Vec::new();
            if let Value::Object(map) = data {
                for (key, value) in map {
                    if !ENUM_FIELDS.contains(&key.as_str()) {
                        strings(value, &mut free_text);
                    }
                }
            }
            for value in free_text {
                if ["active", "new", "normal", "high", "low"].contains(&value.as_str()) {
                    continue;
                }
                assert!(doc.text.contains(&value), "{}: gold {value:?} not in the text", doc.id);
            }
        }
    }
}
