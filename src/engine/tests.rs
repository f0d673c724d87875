//! The engine on the tiny random model: speculative copying never changes a greedy output.

use super::*;
use crate::extract::{ConstraintFactory, ExtractionSchema, SchemaLimits, load_schema};
use crate::llama::{Model, ModelParams, Token};
use crate::test_support::tiny_model_path;

/// Greedy output and drafted/accepted counts of one sequence under the medication-list
/// schema, drafting from `source` when given.
fn decode(
    model: &Model,
    factory: &ConstraintFactory,
    prompt: &str,
    source: Option<Vec<Token>>,
    batch_capacity: usize,
) -> (Vec<Token>, Vec<u8>, SpeculationCounts) {
    let schema_source = load_schema("medication_list").unwrap();
    let schema = ExtractionSchema::compile("m", &schema_source.schema, SchemaLimits::default()).unwrap();
    let mut ctx = open_context(model, &[], 1024, 1, 2, BATCH as u32).unwrap();
    let mut batch = Batch::new(batch_capacity, 1);
    let constraint = factory.json_matcher(&schema.constraint_schema()).unwrap();
    let settings_budget = 300;
    let settings = GenerationSettings {
        budget: settings_budget,
        temperature: 0.0,
        seed: 0,
        repeat_control: true,
        speculate_from: source,
    };
    let tokens = model.tokenize(prompt, true, false).unwrap();
    let mut generation =
        Generation::new(model, Some(factory), 0, 0, tokens, Chooser::Guided(Box::new(constraint)), settings);
    // Every step after the prompt's (one here) chooses at least one token, whatever
    // happens to the drafts: more steps than the budget is a decoder going round in place.
    let mut steps = 0;
    while generation.finish.is_none() {
        steps += 1;
        assert!(steps <= settings_budget + 1, "no progress at {} tokens", generation.tokens.len());
        decode_step(model, Some(factory), &mut ctx, &mut batch, &mut [&mut generation]).unwrap();
    }
    assert!(!matches!(generation.finish, Some(Finish::Failed(_))), "{:?}", generation.finish);
    (generation.tokens, generation.output, generation.speculation)
}

#[test]
fn drafts_taken_or_refused_leave_the_greedy_output_as_it_is() {
    let model = Model::load(tiny_model_path(), &ModelParams::default()).unwrap();
    let factory = ConstraintFactory::new(&model).unwrap();
    let prompt = "Meds: ceftriaxone 1 g IV daily, metformin 500 mg twice daily. Allergies: penicillin.";
    let (plain_tokens, plain, none) = decode(&model, &factory, prompt, None, BATCH);
    assert_eq!(none, SpeculationCounts::default());
    // Drafts from the prompt: a random model rarely copies it, so most are refused.
    let prompt_tokens = model.tokenize(prompt, false, false).unwrap();
    let (_, from_prompt, counts) = decode(&model, &factory, prompt, Some(prompt_tokens), BATCH);
    assert_eq!(String::from_utf8_lossy(&from_prompt), String::from_utf8_lossy(&plain));
    assert!(counts.drafted > 0, "{counts:?}");
    // Drafts from the answer itself, as the model spelt it: taken, several tokens a step.
    let (_, from_answer, counts) = decode(&model, &factory, prompt, Some(plain_tokens), BATCH);
    assert_eq!(String::from_utf8_lossy(&from_answer), String::from_utf8_lossy(&plain));
    assert!(counts.accepted > 0 && counts.accepted * 2 > counts.drafted, "{counts:?}");
}

#[test]
fn a_prompt_longer_than_the_batch_is_decoded_over_several_steps() {
    let model = Model::load(tiny_model_path(), &ModelParams::default()).unwrap();
    let factory = ConstraintFactory::new(&model).unwrap();
    let prompt = "Meds: ceftriaxone 1 g IV daily, metformin 500 mg twice daily. Allergies: penicillin.";
    // Eight tokens a batch: the prompt takes several steps before the first choice, with
    // and without drafts.
    for source in [None, Some(model.tokenize(prompt, false, false).unwrap())] {
        let (tokens, output, _) = decode(&model, &factory, prompt, source, 8);
        assert!(!tokens.is_empty());
        serde_json::from_slice::<serde_json::Value>(&output).expect("a complete JSON document");
    }
}
