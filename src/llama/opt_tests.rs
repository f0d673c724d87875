//! medllm's llama.cpp training patches, checked on the tiny model: adapter tensors train
//! with the base frozen (0001), masked positions add neither loss nor gradient (0002), the
//! gradients of the rewritten matrix-product backward pass (0004) and of the activations of
//! the Gemma, Qwen and Phi-3 families (0007) match finite differences of the loss, and an op
//! without a backward pass is refused instead of aborting (0007).

use std::path::Path;

use super::*;
use crate::gguf::GgufFile;
use crate::test_support::tiny_model_path;

/// llama.cpp pads its context to a multiple of 256; the window must fill it (see Trainer::new).
const WINDOW: usize = 256;

/// Training models are loaded without repacked weights, as finetune loads them.
fn training_params() -> ModelParams {
    ModelParams { repack: false, ..ModelParams::default() }
}

fn tiny_model() -> Model {
    Model::load(tiny_model_path(), &training_params()).unwrap()
}

fn lora(seed: u64) -> LoraInit {
    LoraInit {
        rank: 4,
        alpha: 8.0,
        targets: ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]
            .map(String::from)
            .to_vec(),
        seed,
    }
}

fn params(optimizer: Optimizer, grad_accumulation: u32) -> TrainerParams {
    TrainerParams {
        window: WINDOW as u32,
        threads: 2,
        optimizer,
        grad_accumulation,
        trainable: Trainable::AdaptersOnly,
    }
}

/// A repeating token pattern the tiny model can learn, and its next-token labels.
fn window(offset: i32) -> (Vec<Token>, Vec<i32>) {
    let stream: Vec<i32> = (0..=WINDOW as i32).map(|i| 100 + (i * 7 + offset) % 23).collect();
    let tokens = stream[..WINDOW].iter().map(|&t| Token(t)).collect();
    (tokens, stream[1..].to_vec())
}

fn step(learning_rate: f32) -> OptimizerStep {
    OptimizerStep { learning_rate, ..OptimizerStep::default() }
}

/// Every value of every tensor of an adapter file, in file order.
fn adapter_values(path: &Path) -> Vec<(String, Vec<f32>)> {
    let file = GgufFile::open(path).unwrap();
    let names: Vec<String> = file.tensors.iter().map(|t| t.name.clone()).collect();
    names
        .into_iter()
        .map(|name| {
            let bytes = file.read_tensor_data(&name).unwrap().unwrap();
            let values = bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
            (name, values)
        })
        .collect()
}

fn max_difference(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> f32 {
    assert_eq!(a.len(), b.len());
    let mut worst = 0.0f32;
    for ((name_a, va), (name_b, vb)) in a.iter().zip(b) {
        assert_eq!(name_a, name_b);
        for (x, y) in va.iter().zip(vb) {
            worst = worst.max((x - y).abs());
        }
    }
    worst
}

/// Trains a fresh adapter (seed 1) on `windows` with SGD and returns its saved values.
fn train_sgd(
    model: &Model,
    windows: &[(Vec<Token>, Vec<i32>)],
    grad_accumulation: u32,
) -> Vec<(String, Vec<f32>)> {
    let adapter = LoraAdapter::new_trainable(model, &lora(1)).unwrap();
    let mut trainer = Trainer::new(model, &[&adapter], &params(Optimizer::Sgd, grad_accumulation)).unwrap();
    trainer.set_step(step(0.5));
    for (tokens, labels) in windows {
        trainer.window(tokens, labels, true).unwrap();
    }
    drop(trainer);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.gguf");
    adapter.save(&path).unwrap();
    adapter_values(&path)
}

#[test]
fn lora_training_lowers_the_loss_and_leaves_the_base_unchanged() {
    let model = tiny_model();
    let watched = ["blk.0.attn_q.weight", "blk.1.ffn_down.weight", "output_norm.weight", "token_embd.weight"];
    let before: Vec<Vec<u8>> = watched.iter().map(|n| model.tensor_bytes(n).unwrap()).collect();

    let adapter = LoraAdapter::new_trainable(&model, &lora(7)).unwrap();
    assert_eq!(adapter.n_tensors(), 2 * 7 * 2, "seven kinds in two blocks, A and B each");
    let mut trainer = Trainer::new(&model, &[&adapter], &params(Optimizer::AdamW, 1)).unwrap();
    trainer.set_step(step(1e-2));
    let (tokens, labels) = window(0);
    let first = trainer.window(&tokens, &labels, true).unwrap();
    let mut last = first;
    for _ in 0..30 {
        last = trainer.window(&tokens, &labels, true).unwrap();
    }
    assert!(first > 2.0, "a random model starts near log(vocab): {first}");
    assert!(last < first * 0.5, "loss fell from {first} to {last}");
    drop(trainer);

    for (name, old) in watched.iter().zip(&before) {
        assert!(&model.tensor_bytes(name).unwrap() == old, "{name} changed during LoRA training");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("adapter.gguf");
    adapter.save(&path).unwrap();
    let header = GgufFile::open(&path).unwrap();
    assert_eq!(header.get_str("general.type"), Some("adapter"));
    assert_eq!(header.get_str("adapter.type"), Some("lora"));
    assert_eq!(header.architecture(), Some("llama"));
    let values = adapter_values(&path);
    let b_moved =
        values.iter().filter(|(n, _)| n.ends_with(".lora_b")).any(|(_, v)| v.iter().any(|x| *x != 0.0));
    assert!(b_moved, "training moved B away from zero");
    // Stock llama.cpp loads it, and the trained adapter changes the model's predictions.
    let loaded = LoraAdapter::load(&model, &path).unwrap();
    assert_eq!(loaded.n_tensors(), adapter.n_tensors());
}

#[test]
fn a_fresh_adapter_starts_as_the_base_and_one_seed_gives_one_adapter() {
    let model = tiny_model();
    let dir = tempfile::tempdir().unwrap();
    let save = |seed: u64, name: &str| {
        let adapter = LoraAdapter::new_trainable(&model, &lora(seed)).unwrap();
        let path = dir.path().join(name);
        adapter.save(&path).unwrap();
        adapter_values(&path)
    };
    let a = save(3, "a.gguf");
    assert_eq!(max_difference(&a, &save(3, "b.gguf")), 0.0);
    assert!(max_difference(&a, &save(4, "c.gguf")) > 0.0);
    for (name, values) in &a {
        if name.ends_with(".lora_b") {
            assert!(values.iter().all(|v| *v == 0.0), "{name} starts at zero");
        } else {
            assert!(values.iter().any(|v| *v != 0.0), "{name} starts random");
        }
    }
    let no_target = LoraInit { targets: vec!["not_a_tensor".into()], ..lora(1) };
    assert!(LoraAdapter::new_trainable(&model, &no_target).is_err());
}

#[test]
fn masked_positions_leave_the_gradient_unchanged() {
    let model = tiny_model();
    let (tokens, labels) = window(0);
    // Same first half, different second half: causal attention means the first half's logits
    // are the same in both windows, so with the second half masked the gradients must match.
    let (other_tokens, other_labels) = window(5);
    let half = WINDOW / 2;
    let mixed_tokens: Vec<Token> = tokens[..half].iter().chain(&other_tokens[half..]).copied().collect();
    let mixed_labels: Vec<i32> = labels[..half].iter().chain(&other_labels[half..]).copied().collect();
    let mask = |labels: &[i32]| -> Vec<i32> {
        labels.iter().enumerate().map(|(i, &l)| if i < half { l } else { IGNORED_LABEL }).collect()
    };

    let masked_a = train_sgd(&model, &[(tokens.clone(), mask(&labels))], 1);
    let masked_b = train_sgd(&model, &[(mixed_tokens.clone(), mask(&mixed_labels))], 1);
    let masked_gap = max_difference(&masked_a, &masked_b);
    assert!(masked_gap < 1e-6, "masked positions changed the update by {masked_gap}");

    // The same comparison without the mask must differ, or the test above proves nothing.
    let full_a = train_sgd(&model, &[(tokens, labels)], 1);
    let full_b = train_sgd(&model, &[(mixed_tokens, mixed_labels)], 1);
    let full_gap = max_difference(&full_a, &full_b);
    assert!(full_gap > 1e-4, "unmasked windows should train differently: {full_gap}");
    assert!(max_difference(&masked_a, &full_a) > 1e-4, "masking changes the update");
}

#[test]
fn masked_loss_is_the_mean_over_the_kept_positions() {
    let model = tiny_model();
    let (tokens, labels) = window(0);
    // The loss computed here from the model's logits, over the positions kept.
    let kept: Vec<usize> = (0..WINDOW).filter(|i| i % 3 == 0).collect();
    let mut context = Context::new(
        &model,
        &ContextParams {
            n_ctx: WINDOW as u32,
            n_batch: WINDOW as u32,
            n_ubatch: WINDOW as u32,
            ..ContextParams::default()
        },
    )
    .unwrap();
    let mut batch = Batch::new(WINDOW, 1);
    for (i, token) in tokens.iter().enumerate() {
        batch.add(*token, i as i32, &[0], true).unwrap();
    }
    context.decode(&batch).unwrap();
    let nll = |i: usize| -> f64 {
        let logits = context.logits(i).unwrap();
        let max = logits.iter().cloned().fold(f32::MIN, f32::max) as f64;
        let sum: f64 = logits.iter().map(|&l| ((l as f64) - max).exp()).sum();
        -((logits[labels[i] as usize] as f64 - max) - sum.ln())
    };
    let expected: f64 = kept.iter().map(|&i| nll(i)).sum::<f64>() / kept.len() as f64;
    let everywhere: f64 = (0..WINDOW).map(nll).sum::<f64>() / WINDOW as f64;
    drop(context);

    let adapter = LoraAdapter::new_trainable(&model, &lora(1)).unwrap();
    let mut trainer = Trainer::new(&model, &[&adapter], &params(Optimizer::AdamW, 1)).unwrap();
    let masked: Vec<i32> =
        labels.iter().enumerate().map(|(i, &l)| if i % 3 == 0 { l } else { IGNORED_LABEL }).collect();
    let masked_loss = trainer.window(&tokens, &masked, false).unwrap();
    let full_loss = trainer.window(&tokens, &labels, false).unwrap();
    assert!(
        (masked_loss - expected).abs() < 1e-3 * expected,
        "masked loss {masked_loss}, expected {expected}"
    );
    assert!(
        (full_loss - everywhere).abs() < 1e-3 * everywhere,
        "full loss {full_loss}, expected {everywhere}"
    );
    assert!((masked_loss - full_loss).abs() > 1e-4, "masking must change the loss");
}

#[test]
fn gradient_accumulation_averages_windows_and_restarts_every_step() {
    let model = tiny_model();
    let w = window(0);
    // Two identical windows accumulated into one step give the same update as one window.
    let one = train_sgd(&model, std::slice::from_ref(&w), 1);
    let accumulated = train_sgd(&model, &[w.clone(), w.clone()], 2);
    assert!(max_difference(&one, &accumulated) < 1e-5, "{}", max_difference(&one, &accumulated));
    // Two periods: the sums of the first step must not leak into the second.
    let two = train_sgd(&model, &[w.clone(), w.clone()], 1);
    let accumulated_twice = train_sgd(&model, &[w.clone(), w.clone(), w.clone(), w], 2);
    assert!(max_difference(&two, &accumulated_twice) < 1e-5, "{}", max_difference(&two, &accumulated_twice));
}

/// AdamW training of `adapter` on `windows`, after loading optimizer `state` if given.
fn train_adamw<'m>(
    model: &'m Model,
    adapter: &'m LoraAdapter<'m>,
    state: Option<&Path>,
    windows: &[(Vec<Token>, Vec<i32>)],
) -> Trainer<'m> {
    let mut trainer = Trainer::new(model, &[adapter], &params(Optimizer::AdamW, 1)).unwrap();
    trainer.set_step(step(1e-2));
    if let Some(state) = state {
        trainer.load_state(state).unwrap();
    }
    for (tokens, labels) in windows {
        trainer.window(tokens, labels, true).unwrap();
    }
    trainer
}

#[test]
fn optimizer_state_resumes_exactly() {
    let model = tiny_model();
    let dir = tempfile::tempdir().unwrap();
    let windows = [window(0), window(3), window(9)];
    // Straight through.
    let straight = LoraAdapter::new_trainable(&model, &lora(2)).unwrap();
    drop(train_adamw(&model, &straight, None, &windows));
    let straight_path = dir.path().join("straight.gguf");
    straight.save(&straight_path).unwrap();

    // Stopped after two windows, saved, then resumed from the files.
    let first = LoraAdapter::new_trainable(&model, &lora(2)).unwrap();
    let trainer = train_adamw(&model, &first, None, &windows[..2]);
    let state = dir.path().join("optimizer.gguf");
    trainer.save_state(&state).unwrap();
    drop(trainer);
    let checkpoint = dir.path().join("checkpoint.gguf");
    first.save(&checkpoint).unwrap();
    let resumed = LoraAdapter::load(&model, &checkpoint).unwrap();
    drop(train_adamw(&model, &resumed, Some(&state), &windows[2..]));
    let resumed_path = dir.path().join("resumed.gguf");
    resumed.save(&resumed_path).unwrap();
    let gap = max_difference(&adapter_values(&straight_path), &adapter_values(&resumed_path));
    assert!(gap < 1e-6, "resumed training drifted by {gap}");

    // Without the optimizer state the third step differs (AdamW's moments matter).
    let fresh = LoraAdapter::load(&model, &checkpoint).unwrap();
    drop(train_adamw(&model, &fresh, None, &windows[2..]));
    let fresh_path = dir.path().join("fresh.gguf");
    fresh.save(&fresh_path).unwrap();
    assert!(max_difference(&adapter_values(&straight_path), &adapter_values(&fresh_path)) > 1e-6);
}

#[test]
fn full_fine_tuning_changes_the_model_tensors() {
    // Trained weights are written in place: the file must not be memory-mapped read-only.
    let model =
        Model::load(tiny_model_path(), &ModelParams { use_mmap: false, ..training_params() }).unwrap();
    let before = model.tensor_bytes("blk.0.attn_q.weight").unwrap();
    let full = TrainerParams { trainable: Trainable::AllModelTensors, ..params(Optimizer::AdamW, 1) };
    let mut trainer = Trainer::new(&model, &[], &full).unwrap();
    trainer.set_step(step(1e-3));
    let (tokens, labels) = window(0);
    let first = trainer.window(&tokens, &labels, true).unwrap();
    let mut last = first;
    for _ in 0..10 {
        last = trainer.window(&tokens, &labels, true).unwrap();
    }
    assert!(last < first, "loss fell from {first} to {last}");
    drop(trainer);
    assert!(model.tensor_bytes("blk.0.attn_q.weight").unwrap() != before);
}

fn f32_values(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

/// Full fine-tuning of the model at `path` for one SGD step with learning rate η moves every
/// weight by -η·∂L/∂w: the gradient the backward pass computed. Checks it against the central
/// difference of the loss (evaluated without training, step 0.03) for the three weights of
/// each of `names` with the largest gradients, within 5%.
fn assert_gradients_match_finite_differences(path: &Path, names: &[&str]) {
    let model = Model::load(path, &ModelParams { use_mmap: false, ..training_params() }).unwrap();
    let arch = model.architecture().to_string();
    let sgd = TrainerParams { trainable: Trainable::AllModelTensors, ..params(Optimizer::Sgd, 1) };
    let mut trainer = Trainer::new(&model, &[], &sgd).unwrap();
    let (tokens, labels) = window(3);
    let eta = 1e-3f32;
    let before: Vec<Vec<f32>> = names.iter().map(|n| f32_values(&model.tensor_bytes(n).unwrap())).collect();
    trainer.set_step(step(eta));
    trainer.window(&tokens, &labels, true).unwrap();
    let gradients: Vec<Vec<f32>> = names
        .iter()
        .zip(&before)
        .map(|(n, w0)| {
            let w1 = f32_values(&model.tensor_bytes(n).unwrap());
            w0.iter().zip(&w1).map(|(a, b)| (a - b) / eta).collect()
        })
        .collect();
    for (name, w0) in names.iter().zip(&before) {
        model.set_tensor_f32(name, w0);
    }

    let mut checked = 0;
    for ((name, w0), gradient) in names.iter().zip(&before).zip(&gradients) {
        let mut by_size: Vec<usize> = (0..gradient.len()).collect();
        by_size.sort_by(|&a, &b| gradient[b].abs().total_cmp(&gradient[a].abs()));
        for &i in by_size.iter().take(3) {
            // ggml's CPU GELU is a lookup table over F16 inputs, so the loss moves in steps of
            // about 1e-3 relative: smaller differences measure the steps, not the slope.
            let eps = 3e-2f32;
            let mut loss_at = |delta: f32| {
                let mut w = w0.clone();
                w[i] += delta;
                model.set_tensor_f32(name, &w);
                trainer.window(&tokens, &labels, false).unwrap()
            };
            let numeric = (loss_at(eps) - loss_at(-eps)) / (2.0 * eps as f64);
            model.set_tensor_f32(name, w0);
            let analytic = gradient[i] as f64;
            assert!(analytic.abs() > 1e-3, "{arch} {name}[{i}]: gradient {analytic} too small to check");
            let gap = (numeric - analytic).abs() / analytic.abs();
            assert!(gap < 0.05, "{arch} {name}[{i}]: backward {analytic}, finite difference {numeric}");
            checked += 1;
        }
    }
    assert_eq!(checked, 3 * names.len());
}

#[test]
fn gradients_match_finite_differences_of_the_loss() {
    // The weight matrices cover both gradients of a matrix product: a weight's own, and
    // (through the layers above) the input's; attention adds products of two activations.
    assert_gradients_match_finite_differences(
        tiny_model_path(),
        &["blk.0.attn_q.weight", "blk.0.attn_v.weight", "blk.0.ffn_down.weight", "blk.1.attn_k.weight"],
    );
}

/// A tiny model of `architecture` in a fresh folder.
fn tiny_model_of(architecture: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{architecture}.gguf"));
    let spec = crate::gguf::TinyModelSpec { architecture: architecture.into(), ..Default::default() };
    crate::gguf::write_tiny_model(&path, &spec).unwrap();
    (dir, path)
}

/// The tensors whose gradients pass through what an architecture adds to llama's graph: the
/// gate and up projections feed the gated activation (GEGLU, fused SwiGLU), the layer-0
/// K and V projections the first layer's attention and everything above it.
const GATED_AND_ATTENTION: [&str; 5] = [
    "blk.0.ffn_gate.weight",
    "blk.0.ffn_up.weight",
    "blk.0.attn_k.weight",
    "blk.0.attn_v.weight",
    "blk.1.attn_q.weight",
];

#[test]
fn gemma_trains_through_geglu() {
    let (_dir, path) = tiny_model_of("gemma");
    assert_gradients_match_finite_differences(&path, &GATED_AND_ATTENTION);
}

#[test]
fn gemma2_trains_through_geglu_and_soft_capping() {
    // Soft-capping runs attention scores and logits through tanh (caps 4 and 8: tight enough
    // that tanh bends), and layer 0 attends over a 16-token sliding window.
    let (_dir, path) = tiny_model_of("gemma2");
    assert_gradients_match_finite_differences(&path, &GATED_AND_ATTENTION);
}

#[test]
fn gemma3_trains_through_sliding_window_and_global_layers() {
    // Layer 0 attends over a 16-token window (the iSWA cache's sliding half), layer 1 over
    // the whole 256-token window; Q and K pass through their RMS norms.
    let (_dir, path) = tiny_model_of("gemma3");
    assert_gradients_match_finite_differences(
        &path,
        &[
            "blk.0.ffn_gate.weight",
            "blk.0.ffn_up.weight",
            "blk.0.attn_k.weight",
            "blk.0.attn_v.weight",
            "blk.0.attn_q_norm.weight",
            "blk.1.attn_k.weight",
            "blk.1.attn_v.weight",
        ],
    );
}

#[test]
fn qwen_families_train() {
    for arch in ["qwen2", "qwen3"] {
        let (_dir, path) = tiny_model_of(arch);
        assert_gradients_match_finite_differences(&path, &GATED_AND_ATTENTION);
    }
}

#[test]
fn phi3_trains_through_its_fused_swiglu() {
    // One up projection holds gate and up: both halves of its gradient come from one op.
    let (_dir, path) = tiny_model_of("phi3");
    assert_gradients_match_finite_differences(
        &path,
        &["blk.0.ffn_up.weight", "blk.1.ffn_up.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight"],
    );
}

#[test]
fn an_op_without_a_backward_pass_is_refused_before_any_change() {
    // stablelm normalises with LayerNorm (GGML_OP_NORM), which ggml cannot differentiate:
    // the first window names it (evaluation too: the trainer's optimizer builds the backward
    // graph for every window) and leaves the adapter untouched.
    let (dir, path) = tiny_model_of("stablelm");
    let model = Model::load(&path, &training_params()).unwrap();
    let adapter = LoraAdapter::new_trainable(&model, &lora(1)).unwrap();
    let mut trainer = Trainer::new(&model, &[&adapter], &params(Optimizer::AdamW, 1)).unwrap();
    trainer.set_step(step(1e-2));
    let (tokens, labels) = window(0);
    for train in [true, false] {
        let err = trainer.window(&tokens, &labels, train).unwrap_err();
        match &err {
            LlamaError::Untrainable { architecture, op } => {
                assert_eq!(architecture, "stablelm");
                assert!(op.starts_with("NORM at "), "{op}");
            }
            other => panic!("expected Untrainable, got {other}"),
        }
        assert!(err.to_string().contains("stablelm"), "{err}");
    }
    drop(trainer);
    let fresh = dir.path().join("fresh.gguf");
    adapter.save(&fresh).unwrap();
    let values = adapter_values(&fresh);
    let b_max = values
        .iter()
        .filter(|(name, _)| name.ends_with("lora_b"))
        .flat_map(|(_, v)| v.iter())
        .fold(0.0f32, |m, x| m.max(x.abs()));
    assert_eq!(b_max, 0.0, "B starts at zero and no step ran");
}

#[test]
fn a_model_with_repacked_weights_is_refused_for_training() {
    // llama.cpp's repacked layouts (Q4_K on AVX2 machines, as Gemma 3's Q4_K_M file has)
    // serve forward products only: training them aborted the process in the scheduler.
    let model = Model::load(tiny_model_path(), &ModelParams::default()).unwrap();
    let adapter = LoraAdapter::new_trainable(&model, &lora(1)).unwrap();
    let err = Trainer::new(&model, &[&adapter], &params(Optimizer::AdamW, 1)).unwrap_err();
    assert!(matches!(err, LlamaError::TrainSetup { .. }), "{err}");
    assert!(err.to_string().contains("repack"), "{err}");
}

/// Mean next-token loss of `tokens` against `labels` from the model's inference logits.
fn inference_loss(model: &Model, tokens: &[Token], labels: &[i32]) -> f64 {
    let mut context = Context::new(
        model,
        &ContextParams {
            n_ctx: WINDOW as u32,
            n_batch: WINDOW as u32,
            n_ubatch: WINDOW as u32,
            ..ContextParams::default()
        },
    )
    .unwrap();
    let mut batch = Batch::new(WINDOW, 1);
    for (i, token) in tokens.iter().enumerate() {
        batch.add(*token, i as i32, &[0], true).unwrap();
    }
    context.decode(&batch).unwrap();
    let nll = |i: usize| -> f64 {
        let logits = context.logits(i).unwrap();
        let max = logits.iter().cloned().fold(f32::MIN, f32::max) as f64;
        let sum: f64 = logits.iter().map(|&l| ((l as f64) - max).exp()).sum();
        -((logits[labels[i] as usize] as f64 - max) - sum.ln())
    };
    (0..tokens.len()).map(nll).sum::<f64>() / tokens.len() as f64
}

#[test]
fn gemma3_trains_on_the_sliding_window_that_inference_uses() {
    // The training loss of a window equals the loss inference computes (iSWA cache, layer 0
    // attending to 16 tokens), and the window matters: the same weights with a window as
    // long as the context give another loss, in training and in inference alike.
    let dir = tempfile::tempdir().unwrap();
    let losses = |sliding_window: u32| -> (f64, f64) {
        let path = dir.path().join(format!("gemma3-{sliding_window}.gguf"));
        let spec = crate::gguf::TinyModelSpec {
            architecture: "gemma3".into(),
            sliding_window,
            ..Default::default()
        };
        crate::gguf::write_tiny_model(&path, &spec).unwrap();
        let model = Model::load(&path, &training_params()).unwrap();
        let (tokens, labels) = window(1);
        let inference = inference_loss(&model, &tokens, &labels);
        let adapter = LoraAdapter::new_trainable(&model, &lora(1)).unwrap();
        let mut trainer = Trainer::new(&model, &[&adapter], &params(Optimizer::AdamW, 1)).unwrap();
        (trainer.window(&tokens, &labels, false).unwrap(), inference)
    };
    let (trained_16, inferred_16) = losses(16);
    let (trained_all, inferred_all) = losses(4096);
    assert!((trained_16 - inferred_16).abs() < 1e-3 * inferred_16, "{trained_16} vs {inferred_16}");
    assert!((trained_all - inferred_all).abs() < 1e-3 * inferred_all, "{trained_all} vs {inferred_all}");
    assert!(
        (trained_16 - trained_all).abs() > 1e-3,
        "the window changes the loss: {trained_16} vs {trained_all}"
    );
}
