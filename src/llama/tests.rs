//! The wrapper on a tiny generated model: loading, tokens, determinism, several sequences
//! in one context, adapters.

use std::path::Path;

use super::*;
use crate::gguf::{GgmlType, MetadataValue, TensorSpec, TinyModelSpec, write_gguf, write_tiny_model};
use crate::test_support::tiny_model_path;

fn tiny_model() -> Model {
    Model::load(tiny_model_path(), &ModelParams::default()).unwrap()
}

fn small_context(model: &Model, sequences: u32) -> Context<'_> {
    let params = ContextParams {
        n_ctx: 256,
        n_batch: 64,
        n_ubatch: 64,
        n_seq_max: sequences,
        ..ContextParams::default()
    };
    Context::new(model, &params).unwrap()
}

/// Greedy continuation of `prompt` for `n` tokens in sequence 0.
fn greedy(model: &Model, prompt: &str, n: usize) -> Vec<Token> {
    let mut ctx = small_context(model, 1);
    let mut sampler = Sampler::new(model, &SamplingParams::greedy());
    let tokens = model.tokenize(prompt, true, false).unwrap();
    let mut batch = Batch::new(64, 1);
    batch.add_sequence(&tokens, 0, 0, true).unwrap();
    ctx.decode(&batch).unwrap();
    let mut index = batch.len() - 1;
    let mut out = Vec::new();
    for pos in tokens.len()..tokens.len() + n {
        let token = sampler.sample(&ctx, index);
        out.push(token);
        batch.clear();
        index = batch.add(token, pos as i32, &[0], true).unwrap();
        ctx.decode(&batch).unwrap();
    }
    out
}

#[test]
fn loads_with_metadata_and_vocabulary() {
    let model = tiny_model();
    assert_eq!(model.architecture(), "llama");
    assert_eq!(model.n_embd(), 64);
    assert_eq!(model.n_ctx_train(), 1024);
    assert!(model.n_vocab() > 400);
    let header = crate::gguf::GgufFile::open(tiny_model_path()).unwrap();
    assert_eq!(model.n_params(), crate::gguf::ModelSummary::of(&header).parameters);
    assert_eq!(model.meta("general.name").as_deref(), Some("medllm tiny test model"));
    assert!(model.chat_template().unwrap().contains("<|im_start|>"));
    assert_eq!(model.meta("no.such.key"), None);
}

#[test]
fn tokenize_detokenize_round_trip() {
    let model = tiny_model();
    for text in ["the patient was male", "Dose: 5 mg {\"age\": 67}", "naïve café 😀", ""] {
        let tokens = model.tokenize(text, false, false).unwrap();
        assert_eq!(model.detokenize(&tokens, false).trim_start(), text, "{tokens:?}");
    }
    // Words of the vocabulary are single tokens (SentencePiece adds the leading space),
    // unknown text falls back to bytes.
    assert_eq!(model.tokenize("patient", false, false).unwrap().len(), 1);
    assert_eq!(model.tokenize("😀", false, false).unwrap().len(), 4 + 1);
}

#[test]
fn control_tokens_are_parsed_only_when_asked() {
    let model = tiny_model();
    let parsed = model.tokenize("<|im_start|>user", false, true).unwrap();
    assert_eq!(parsed[0], Token(3));
    let literal = model.tokenize("<|im_start|>user", false, false).unwrap();
    assert!(!literal.contains(&Token(3)));
    assert!(model.is_end_of_generation(Token(4)), "<|im_end|> ends a turn");
    assert!(!model.is_end_of_generation(Token(10)));
}

#[test]
fn greedy_decoding_is_deterministic() {
    let model = tiny_model();
    let a = greedy(&model, "the patient", 12);
    let b = greedy(&model, "the patient", 12);
    assert_eq!(a, b);
    assert_ne!(a, greedy(&model, "history of pain", 12), "different prompts, different text");
}

#[test]
fn seeded_sampling_repeats_with_the_seed() {
    let model = tiny_model();
    let run = |seed: u32| {
        let mut ctx = small_context(&model, 1);
        let params = SamplingParams {
            temperature: 1.5,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed,
            ..SamplingParams::default()
        };
        let mut sampler = Sampler::new(&model, &params);
        let prompt = model.tokenize("the", true, false).unwrap();
        let mut out = Vec::new();
        let mut batch = Batch::new(64, 1);
        batch.add_sequence(&prompt, 0, 0, true).unwrap();
        ctx.decode(&batch).unwrap();
        let mut index = batch.len() - 1;
        for pos in prompt.len()..prompt.len() + 16 {
            let t = sampler.sample(&ctx, index);
            out.push(t);
            batch.clear();
            index = batch.add(t, pos as i32, &[0], true).unwrap();
            ctx.decode(&batch).unwrap();
        }
        out
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
}

#[test]
fn two_sequences_in_one_context_match_separate_contexts() {
    let model = tiny_model();
    let prompts = ["the patient was male", "history of pain daily"];
    let alone: Vec<Vec<f32>> = prompts
        .iter()
        .map(|p| {
            let mut ctx = small_context(&model, 1);
            let tokens = model.tokenize(p, true, false).unwrap();
            let mut batch = Batch::new(64, 1);
            batch.add_sequence(&tokens, 0, 0, true).unwrap();
            ctx.decode(&batch).unwrap();
            ctx.logits(batch.len() - 1).unwrap().to_vec()
        })
        .collect();

    let mut ctx = small_context(&model, 2);
    let mut batch = Batch::new(64, 2);
    let mut last = Vec::new();
    for (seq, p) in prompts.iter().enumerate() {
        let tokens = model.tokenize(p, true, false).unwrap();
        batch.add_sequence(&tokens, 0, seq as i32, true).unwrap();
        last.push(batch.len() - 1);
    }
    ctx.decode(&batch).unwrap();
    for (seq, index) in last.into_iter().enumerate() {
        let together = ctx.logits(index).unwrap();
        let max_diff = together.iter().zip(&alone[seq]).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(max_diff < 1e-3, "sequence {seq} differs by {max_diff}");
    }
    assert_ne!(alone[0], alone[1]);
}

#[test]
fn copied_prefix_gives_the_same_continuation() {
    let model = tiny_model();
    let prefix = model.tokenize("the patient", true, false).unwrap();
    let mut ctx = small_context(&model, 2);
    let mut batch = Batch::new(64, 2);
    batch.add_sequence(&prefix, 0, 0, false).unwrap();
    ctx.decode(&batch).unwrap();
    ctx.copy_sequence(0, 1, None, None);
    assert_eq!(ctx.last_position(1), Some(prefix.len() as i32 - 1));

    let next = model.tokenize(" male", false, false).unwrap()[0];
    batch.clear();
    let a = batch.add(next, prefix.len() as i32, &[0], true).unwrap();
    let b = batch.add(next, prefix.len() as i32, &[1], true).unwrap();
    ctx.decode(&batch).unwrap();
    assert_eq!(ctx.logits(a).unwrap(), ctx.logits(b).unwrap());

    assert!(ctx.remove_positions(1, None, None));
    assert_eq!(ctx.last_position(1), None);
    assert_eq!(ctx.last_position(0), Some(prefix.len() as i32));
}

#[test]
fn logits_of_a_token_without_output_are_none() {
    let model = tiny_model();
    let mut ctx = small_context(&model, 1);
    let tokens = model.tokenize("the patient", true, false).unwrap();
    let mut batch = Batch::new(64, 1);
    batch.add_sequence(&tokens, 0, 0, true).unwrap();
    ctx.decode(&batch).unwrap();
    assert!(ctx.logits(0).is_none());
    assert!(ctx.logits(batch.len() - 1).is_some());
    assert!(ctx.logits(10_000).is_none());
}

#[test]
fn full_batch_is_an_error_not_an_overflow() {
    let mut batch = Batch::new(2, 1);
    batch.add(Token(5), 0, &[0], false).unwrap();
    batch.add(Token(5), 1, &[0], false).unwrap();
    assert!(matches!(batch.add(Token(5), 2, &[0], false), Err(LlamaError::BatchFull { capacity: 2 })));
}

#[test]
fn context_overflow_is_reported() {
    let model = tiny_model();
    let params = ContextParams { n_ctx: 32, n_batch: 16, n_ubatch: 16, ..ContextParams::default() };
    let mut ctx = Context::new(&model, &params).unwrap();
    let mut batch = Batch::new(64, 1);
    for pos in 0..24 {
        batch.add(Token(10), pos, &[0], false).unwrap();
    }
    let err = ctx.decode(&batch).unwrap_err();
    assert!(matches!(err, LlamaError::BatchTooLarge { n_tokens: 24, n_batch: 16 }), "{err}");
    // llama.cpp rounds the context up; fill what it really holds, then one batch more.
    let capacity = ctx.n_ctx() as i32;
    let mut filled = 0;
    let overflow = loop {
        batch.clear();
        for k in 0..16 {
            batch.add(Token(10), filled + k, &[0], false).unwrap();
        }
        match ctx.decode(&batch) {
            Ok(()) => filled += 16,
            Err(e) => break e,
        }
        assert!(filled <= capacity, "a {capacity}-token context accepted {filled} tokens");
    };
    assert_eq!(filled, capacity);
    assert!(matches!(overflow, LlamaError::ContextFull { .. } | LlamaError::Decode { .. }), "{overflow}");
}

#[test]
fn generation_streams_text_and_stops_at_the_limit() {
    let model = tiny_model();
    let mut ctx = small_context(&model, 1);
    let mut sampler = Sampler::new(&model, &SamplingParams::greedy());
    let prompt = model.tokenize("the patient", true, false).unwrap();
    let mut text = String::new();
    let stats = crate::generate::generate(
        &mut ctx,
        &mut sampler,
        &prompt,
        crate::generate::GenerationLimits::new(10),
        &mut |t: &str| {
            text.push_str(t);
            Ok::<_, std::io::Error>(true)
        },
    )
    .unwrap();
    assert_eq!(stats.prompt_tokens, prompt.len());
    assert!(stats.generated_tokens <= 10);
    if stats.stop == crate::generate::StopReason::MaxTokens {
        assert_eq!(stats.generated_tokens, 10);
    }
    let expected = model.detokenize(&greedy(&model, "the patient", stats.generated_tokens), false);
    assert_eq!(text, expected);
}

/// Writes a LoRA adapter for the tiny model touching `blk.0.attn_q` with rank 2.
fn write_adapter(path: &Path, architecture: &str, b_value: f32, n_out: u64) {
    let rank = 2u64;
    let metadata = vec![
        ("general.architecture".to_string(), MetadataValue::String(architecture.into())),
        ("general.type".to_string(), MetadataValue::String("adapter".into())),
        ("adapter.type".to_string(), MetadataValue::String("lora".into())),
        ("adapter.lora.alpha".to_string(), MetadataValue::F32(2.0)),
    ];
    let tensors = vec![
        TensorSpec {
            name: "blk.0.attn_q.weight.lora_a".into(),
            dims: vec![64, rank],
            ggml_type: GgmlType::F32,
        },
        TensorSpec {
            name: "blk.0.attn_q.weight.lora_b".into(),
            dims: vec![rank, n_out],
            ggml_type: GgmlType::F32,
        },
    ];
    let mut file = std::fs::File::create(path).unwrap();
    write_gguf(&mut file, &metadata, &tensors, |i, out| {
        let n: u64 = tensors[i].dims.iter().product();
        let value = if i == 0 { 0.5 } else { b_value };
        let bytes: Vec<u8> = (0..n).flat_map(|k| (value * ((k % 7) as f32 - 3.0)).to_le_bytes()).collect();
        std::io::Write::write_all(out, &bytes)
    })
    .unwrap();
}

fn last_logits(model: &Model, adapter: Option<&LoraAdapter<'_>>) -> Vec<f32> {
    let mut ctx = small_context(model, 1);
    if let Some(adapter) = adapter {
        ctx.set_adapters(&[(adapter, 1.0)]).unwrap();
    }
    let tokens = model.tokenize("the patient was", true, false).unwrap();
    let mut batch = Batch::new(64, 1);
    batch.add_sequence(&tokens, 0, 0, true).unwrap();
    ctx.decode(&batch).unwrap();
    ctx.logits(batch.len() - 1).unwrap().to_vec()
}

#[test]
fn adapter_changes_logits_and_zero_adapter_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model();
    let base = last_logits(&model, None);

    let zero = dir.path().join("zero.gguf");
    write_adapter(&zero, "llama", 0.0, 64);
    let adapter = LoraAdapter::load(&model, &zero).unwrap();
    assert_eq!(last_logits(&model, Some(&adapter)), base, "B = 0 leaves the model unchanged");

    let live = dir.path().join("live.gguf");
    write_adapter(&live, "llama", 0.3, 64);
    let adapter = LoraAdapter::load(&model, &live).unwrap();
    let tuned = last_logits(&model, Some(&adapter));
    let diff = tuned.iter().zip(&base).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(diff > 1e-3, "a non-zero adapter must change the logits (max diff {diff})");
}

#[test]
fn adapter_for_another_architecture_is_refused_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model();
    let path = dir.path().join("gemma.gguf");
    write_adapter(&path, "gemma3", 0.3, 64);
    let err = LoraAdapter::load(&model, &path).unwrap_err();
    assert!(matches!(err, LlamaError::AdapterMismatch { .. }), "{err}");
    assert!(err.to_string().contains("gemma3"), "{err}");
}

#[test]
fn adapter_with_wrong_shapes_is_refused_naming_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model();
    let path = dir.path().join("bad-shape.gguf");
    write_adapter(&path, "llama", 0.3, 48);
    let err = LoraAdapter::load(&model, &path).unwrap_err();
    assert!(matches!(err, LlamaError::AdapterMismatch { .. }), "{err}");
    assert!(
        err.to_string().contains("blk.0.attn_q.weight: lora_a [64, 2] and lora_b [2, 48] do not fit"),
        "{err}"
    );
}

/// A NaN in an adapter would make every logit NaN, and generation print nothing.
#[test]
fn adapter_with_non_finite_values_is_refused_naming_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model();
    for (name, value) in [("nan.gguf", f32::NAN), ("inf.gguf", f32::INFINITY)] {
        let path = dir.path().join(name);
        write_adapter(&path, "llama", value, 64);
        let err = LoraAdapter::load(&model, &path).unwrap_err();
        assert!(matches!(err, LlamaError::AdapterMismatch { .. }), "{err}");
        assert!(
            err.to_string().contains("tensor blk.0.attn_q.weight.lora_b holds NaN or infinite values"),
            "{err}"
        );
    }
}

#[test]
fn unknown_architecture_fails_to_load_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("odd.gguf");
    write_tiny_model(&path, &TinyModelSpec { architecture: "no-such-arch".into(), ..Default::default() })
        .unwrap();
    let err = Model::load(&path, &ModelParams::default()).unwrap_err();
    assert!(matches!(err, LlamaError::ModelLoad { .. }), "{err}");
}

#[test]
fn truncated_model_is_an_error_before_llama_cpp_sees_it() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(tiny_model_path()).unwrap();
    let path = dir.path().join("cut.gguf");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = Model::load(&path, &ModelParams::default()).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
    let missing = Model::load(&dir.path().join("none.gguf"), &ModelParams::default()).unwrap_err();
    assert!(matches!(missing, LlamaError::ModelUnreadable { .. }), "{missing}");
}
