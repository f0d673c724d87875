//! The engine on the tiny random model: speculative copying never changes a greedy output.

use super::*;
use crate::extract::{ConstraintFactory, ExtractionSchema, SchemaLimits, load_schema};
use crate::llama::{Model, ModelParams};
use crate::test_support::tiny_model_path;

/// Greedy output and drafted/accepted counts of one sequence under the medication-list
/// schema, drafting from `source` when given.
fn decode(
    model: &Model,
    factory: &ConstraintFactory,
    prompt: &str,
    source: Option<String>,
) -> (Vec<u8>, SpeculationCounts) {
    let schema_source = load_schema("medication_list").unwrap();
    let schema = ExtractionSchema::compile("m", &schema_source.schema, SchemaLimits::default()).unwrap();
    let mut ctx = open_context(model, &[], 1024, 1, 2, BATCH as u32).unwrap();
    let mut batch = Batch::new(BATCH, 1);
    let constraint = factory.json_matcher(&schema.constraint_schema()).unwrap();
    let settings = GenerationSettings {
        budget: 300,
        temperature: 0.0,
        seed: 0,
        repeat_control: true,
        speculate_from: source,
    };
    let tokens = model.tokenize(prompt, true, false).unwrap();
    let mut generation =
        Generation::new(model, Some(factory), 0, 0, tokens, Chooser::Guided(Box::new(constraint)), settings);
    while generation.finish.is_none() {
        decode_step(model, Some(factory), &mut ctx, &mut batch, &mut [&mut generation]).unwrap();
    }
    assert!(!matches!(generation.finish, Some(Finish::Failed(_))), "{:?}", generation.finish);
    (generation.output, generation.speculation)
}

#[test]
fn drafts_taken_or_refused_leave_the_greedy_output_as_it_is() {
    let model = Model::load(tiny_model_path(), &ModelParams::default()).unwrap();
    let factory = ConstraintFactory::new(&model).unwrap();
    let prompt = "Meds: ceftriaxone 1 g IV daily, metformin 500 mg twice daily. Allergies: penicillin.";
    let (plain, none) = decode(&model, &factory, prompt, None);
    assert_eq!(none, SpeculationCounts::default());
    // Drafts from the prompt: a random model rarely copies it, so most are refused.
    let (from_prompt, _) = decode(&model, &factory, prompt, Some(prompt.to_string()));
    assert_eq!(String::from_utf8_lossy(&from_prompt), String::from_utf8_lossy(&plain));
    // Drafts from the answer itself: most are taken, several tokens a step.
    let answer = String::from_utf8(plain.clone()).unwrap();
    let (from_answer, counts) = decode(&model, &factory, prompt, Some(answer));
    assert_eq!(String::from_utf8_lossy(&from_answer), String::from_utf8_lossy(&plain));
    assert!(counts.accepted > 0 && counts.drafted > counts.accepted / 2, "{counts:?}");
}
