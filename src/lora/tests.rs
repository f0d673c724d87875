//! Conversion and merging checked against llama.cpp itself on the tiny model: a converted
//! adapter applied at run time must act like the update computed by hand from the PEFT
//! matrices, and a merged model must act like its base with the adapter applied at run time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::*;
use crate::gguf::{
    GgmlType, GgufFile, MetadataValue, TensorSpec, TinyModelSpec, write_gguf, write_tiny_model,
};
use crate::llama::{Batch, Context, ContextParams, LoraAdapter, Model, ModelParams};
use crate::quant::{QuantizeSettings, parse_file_type, quantize};
use crate::test_support::tiny_model_path;

const PROMPT: &str = "the patient was male and the pain";

/// Logits at every position of the prompt, with adapters applied at run time.
fn logits(model_path: &Path, adapters: &[(&Path, f32)]) -> Vec<f32> {
    let model = Model::load(model_path, &ModelParams::default()).unwrap();
    let loaded: Vec<LoraAdapter<'_>> =
        adapters.iter().map(|(p, _)| LoraAdapter::load(&model, p).unwrap()).collect();
    let params = ContextParams {
        n_ctx: 128,
        n_batch: 64,
        n_ubatch: 64,
        n_threads: 1,
        n_threads_batch: 1,
        ..Default::default()
    };
    let mut ctx = Context::new(&model, &params).unwrap();
    let attached: Vec<(&LoraAdapter<'_>, f32)> =
        loaded.iter().zip(adapters).map(|(a, (_, s))| (a, *s)).collect();
    ctx.set_adapters(&attached).unwrap();
    let tokens = model.tokenize(PROMPT, true, false).unwrap();
    let mut batch = Batch::new(64, 1);
    for (pos, token) in tokens.iter().enumerate() {
        batch.add(*token, pos as i32, &[0], true).unwrap();
    }
    ctx.decode(&batch).unwrap();
    (0..tokens.len()).flat_map(|i| ctx.logits(i).unwrap().to_vec()).collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn l2(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>().sqrt()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    dot / (a.iter().map(|x| x * x).sum::<f32>().sqrt() * b.iter().map(|x| x * x).sum::<f32>().sqrt())
}

fn minus(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x - y).collect()
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

/// A PEFT folder for the tiny model and its conversion.
fn converted(dir: &Path, spec: &PeftFixtureSpec) -> (PathBuf, PathBuf) {
    let peft = dir.join("peft");
    write_peft_adapter(&GgufFile::open(tiny_model_path()).unwrap(), &peft, spec).unwrap();
    let adapter = dir.join("adapter.gguf");
    convert_peft(&ConvertSettings {
        peft_dir: peft.clone(),
        base: tiny_model_path().into(),
        output: adapter.clone(),
    })
    .unwrap();
    (peft, adapter)
}

/// The Hugging Face → GGUF row order of Q and K, written from the reshape llama.cpp's
/// converter performs: rows viewed as (heads, 2, head/2) are read as (heads, head/2, 2).
fn gguf_row_of_hf_row(hf_row: usize, rows: usize, heads: usize) -> usize {
    let head = rows / heads;
    let (h, within) = (hf_row / head, hf_row % head);
    let (half, j) = (within / (head / 2), within % (head / 2));
    h * head + j * 2 + half
}

/// Writes the tiny model with W += (alpha/r)·B·A for every module of the PEFT folder,
/// computed directly from the safetensors file.
fn apply_by_hand(peft: &Path, alpha: f32, rank: usize, out: &Path) {
    let bytes = std::fs::read(peft.join(WEIGHTS_FILE)).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let base = GgufFile::open(tiny_model_path()).unwrap();
    let mut weights: BTreeMap<String, Vec<f32>> = base
        .tensors
        .iter()
        .map(|t| (t.name.clone(), f32s(&base.read_tensor_data(&t.name).unwrap().unwrap())))
        .collect();
    let stems = [
        ("self_attn.q_proj", "attn_q", Some(4)),
        ("self_attn.k_proj", "attn_k", Some(2)),
        ("self_attn.v_proj", "attn_v", None),
        ("self_attn.o_proj", "attn_output", None),
        ("mlp.gate_proj", "ffn_gate", None),
        ("mlp.up_proj", "ffn_up", None),
        ("mlp.down_proj", "ffn_down", None),
    ];
    for layer in 0..2 {
        for (module, stem, heads) in stems {
            let prefix = format!("base_model.model.model.layers.{layer}.{module}");
            let a = file.tensor(&format!("{prefix}.lora_A.weight")).unwrap();
            let b = file.tensor(&format!("{prefix}.lora_B.weight")).unwrap();
            let (n_in, n_out) = (a.shape()[1], b.shape()[0]);
            let (a, b) = (f32s(a.data()), f32s(b.data()));
            let w = weights.get_mut(&format!("blk.{layer}.{stem}.weight")).unwrap();
            for o in 0..n_out {
                let row = heads.map_or(o, |h| gguf_row_of_hf_row(o, n_out, h));
                for i in 0..n_in {
                    let delta: f32 = (0..rank).map(|k| b[o * rank + k] * a[k * n_in + i]).sum();
                    w[row * n_in + i] += alpha / rank as f32 * delta;
                }
            }
        }
    }
    let specs: Vec<TensorSpec> = base
        .tensors
        .iter()
        .map(|t| TensorSpec { name: t.name.clone(), dims: t.dims.clone(), ggml_type: GgmlType::F32 })
        .collect();
    let mut file = std::fs::File::create(out).unwrap();
    write_gguf(&mut file, &base.metadata, &specs, |i, w| {
        w.write_all(&weights[&specs[i].name].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>())
    })
    .unwrap();
}

#[test]
fn converted_adapter_acts_like_the_update_applied_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let spec = PeftFixtureSpec::default();
    let (peft, adapter) = converted(dir.path(), &spec);
    let by_hand = dir.path().join("by-hand.gguf");
    apply_by_hand(&peft, spec.alpha as f32, spec.rank, &by_hand);

    let base = logits(tiny_model_path(), &[]);
    let runtime = logits(tiny_model_path(), &[(&adapter, 1.0)]);
    let expected = logits(&by_hand, &[]);
    assert!(max_abs_diff(&base, &expected) > 0.1, "the adapter must matter for the test to mean anything");
    // Tolerance: f32 sums in a different order (B·(A·x) at run time, (B·A)·x by hand).
    let diff = max_abs_diff(&runtime, &expected);
    assert!(diff < 2e-3, "run-time adapter and hand-applied update differ by {diff}");
}

#[test]
fn rank_stabilised_and_half_precision_adapters_convert_to_the_same_update() {
    let dir = tempfile::tempdir().unwrap();
    // rsLoRA scales by alpha/√r; the converter stores alpha·√r so llama.cpp's alpha/r agrees.
    let spec =
        PeftFixtureSpec { rslora: true, dtype: PeftDtype::Bf16, rank: 4, alpha: 3.0, ..Default::default() };
    let (peft, adapter) = converted(dir.path(), &spec);
    let header = GgufFile::open(&adapter).unwrap();
    assert_eq!(header.get("adapter.lora.alpha"), Some(&MetadataValue::F32(6.0)), "3 · √4");
    // Re-encode the bf16 values as f32 so the hand computation reads them exactly.
    let read = PeftAdapter::read(&peft).unwrap();
    let views: Vec<(String, Vec<u8>, Vec<usize>)> = read
        .tensors
        .iter()
        .map(|(n, m)| (n.clone(), m.values.iter().flat_map(|v| v.to_le_bytes()).collect(), m.shape.to_vec()))
        .collect();
    let f32_dir = dir.path().join("as-f32");
    std::fs::create_dir_all(&f32_dir).unwrap();
    let tensors = views.iter().map(|(n, b, s)| {
        (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap())
    });
    std::fs::write(f32_dir.join(WEIGHTS_FILE), safetensors::serialize(tensors, None).unwrap()).unwrap();
    let by_hand = dir.path().join("by-hand.gguf");
    // alpha/√r = 3/2 = (alpha·√r)/r: apply_by_hand scales by its alpha / rank.
    apply_by_hand(&f32_dir, 6.0, 4, &by_hand);
    let diff = max_abs_diff(&logits(tiny_model_path(), &[(&adapter, 1.0)]), &logits(&by_hand, &[]));
    assert!(diff < 2e-3, "{diff}");
}

#[test]
fn per_module_alpha_is_folded_into_b() {
    let dir = tempfile::tempdir().unwrap();
    let spec = PeftFixtureSpec::default();
    let (peft, plain) = converted(dir.path(), &spec);
    let config_path = peft.join(CONFIG_FILE);
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["alpha_pattern"] = serde_json::json!({"layers.1.self_attn.v_proj": 2.0});
    std::fs::write(&config_path, config.to_string()).unwrap();
    let patterned = dir.path().join("patterned.gguf");
    convert_peft(&ConvertSettings {
        peft_dir: peft,
        base: tiny_model_path().into(),
        output: patterned.clone(),
    })
    .unwrap();
    let read_b = |path: &Path, name: &str| {
        f32s(&GgufFile::open(path).unwrap().read_tensor_data(name).unwrap().unwrap())
    };
    let name = "blk.1.attn_v.weight.lora_b";
    let ratio: Vec<f32> =
        read_b(&patterned, name).iter().zip(read_b(&plain, name)).map(|(p, q)| p / q).collect();
    assert!(ratio.iter().all(|r| (r - 0.25).abs() < 1e-6), "alpha 2 instead of 8: B × 1/4");
    let other = "blk.0.attn_v.weight.lora_b";
    assert_eq!(read_b(&patterned, other), read_b(&plain, other), "other modules keep the default alpha");
}

#[test]
fn merged_f32_model_acts_like_base_plus_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let (_, adapter) = converted(dir.path(), &PeftFixtureSpec::default());
    let merged = dir.path().join("merged.gguf");
    let report = merge_one(tiny_model_path(), &adapter, &merged).unwrap();
    assert_eq!((report.merged_tensors, report.copied_tensors), (14, 7));
    let runtime = logits(tiny_model_path(), &[(&adapter, 1.0)]);
    let diff = max_abs_diff(&logits(&merged, &[]), &runtime);
    assert!(diff < 2e-3, "merged and run-time adapter differ by {diff}");

    // Untouched tensors are the same bytes; metadata is kept and says what was merged.
    let (base, out) = (GgufFile::open(tiny_model_path()).unwrap(), GgufFile::open(&merged).unwrap());
    for name in ["token_embd.weight", "output.weight", "blk.0.attn_norm.weight", "output_norm.weight"] {
        assert_eq!(base.read_tensor_data(name).unwrap(), out.read_tensor_data(name).unwrap(), "{name}");
    }
    assert_ne!(
        base.read_tensor_data("blk.0.attn_q.weight").unwrap(),
        out.read_tensor_data("blk.0.attn_q.weight").unwrap()
    );
    for (key, value) in &base.metadata {
        assert_eq!(out.get(key), Some(value), "{key} kept");
    }
    let sha = sha256_hex(&std::fs::read(&adapter).unwrap());
    assert_eq!(
        out.get("medllm.merge.adapter_sha256"),
        Some(&MetadataValue::Array(vec![MetadataValue::String(sha)]))
    );
    assert_eq!(
        out.get("medllm.merge.adapter_scale"),
        Some(&MetadataValue::Array(vec![MetadataValue::F32(1.0)]))
    );
}

#[test]
fn several_adapters_with_scales_merge_like_they_run() {
    let dir = tempfile::tempdir().unwrap();
    let (_, first) = converted(&dir.path().join("one"), &PeftFixtureSpec { seed: 1, ..Default::default() });
    let only_attention = vec![Projection::Query, Projection::Value];
    let (_, second) = converted(
        &dir.path().join("two"),
        &PeftFixtureSpec { seed: 2, rank: 2, projections: only_attention, ..Default::default() },
    );
    let merged = dir.path().join("merged.gguf");
    merge_adapters(
        &MergeSettings {
            base: tiny_model_path().into(),
            adapters: vec![
                AdapterInput { path: first.clone(), scale: 0.5 },
                AdapterInput { path: second.clone(), scale: -1.5 },
            ],
            output: merged.clone(),
            merged_type: None,
            threads: 3,
        },
        |_| {},
    )
    .unwrap();
    let runtime = logits(tiny_model_path(), &[(&first, 0.5), (&second, -1.5)]);
    let diff = max_abs_diff(&logits(&merged, &[]), &runtime);
    assert!(diff < 2e-3, "{diff}");
}

fn quantized_tiny(dir: &Path, file_type: &str) -> PathBuf {
    let out = dir.join(format!("tiny-{file_type}.gguf"));
    let settings = QuantizeSettings {
        input: tiny_model_path().into(),
        output: Some(out.clone()),
        file_type: parse_file_type(file_type).unwrap(),
        threads: 1,
        ..Default::default()
    };
    quantize(&settings, |_| {}).unwrap();
    out
}

/// Re-quantised merges cannot match the run-time adapter exactly: the merged weights are
/// rounded again. Stated tolerance: the relative L2 error of the merged model's logits
/// against base + run-time adapter is at most 1.5 × the error that quantizing the F32 model
/// into the base's type caused in the first place (on this random model, about 2% for Q8_0);
/// and the adapter's own effect survives the rounding (cosine of the logit changes ≥ 0.99
/// for Q8_0, ≥ 0.75 for Q4_1, whose rounding moves this model's logits by about 25%).
#[test]
fn requantized_merge_keeps_types_and_stays_close_to_the_run_time_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let (_, adapter) = converted(dir.path(), &PeftFixtureSpec::default());
    let f32_logits = logits(tiny_model_path(), &[]);
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    for (file_type, min_cosine) in [("Q8_0", 0.99), ("Q4_1", 0.75)] {
        let base = quantized_tiny(dir.path(), file_type);
        let merged = dir.path().join(format!("merged-{file_type}.gguf"));
        merge_one(&base, &adapter, &merged).unwrap();
        let (base_header, merged_header) = (GgufFile::open(&base).unwrap(), GgufFile::open(&merged).unwrap());
        for (b, m) in base_header.tensors.iter().zip(&merged_header.tensors) {
            assert_eq!((&b.name, b.ggml_type), (&m.name, m.ggml_type), "types kept");
        }
        let plain = logits(&base, &[]);
        let runtime = logits(&base, &[(&adapter, 1.0)]);
        let merged_logits = logits(&merged, &[]);
        let relative = l2(&merged_logits, &runtime) / norm(&runtime);
        let quantization = l2(&plain, &f32_logits) / norm(&f32_logits);
        let effect = cosine(&minus(&merged_logits, &plain), &minus(&runtime, &plain));
        eprintln!(
            "{file_type}: merged vs run time {relative}, quantization {quantization}, effect cosine {effect}"
        );
        assert!(
            relative <= 1.5 * quantization,
            "{file_type}: {relative} against quantization's {quantization}"
        );
        assert!(effect >= min_cosine, "{file_type}: the adapter's effect survives with cosine {effect}");
    }
}

#[test]
fn merged_type_can_be_chosen() {
    let dir = tempfile::tempdir().unwrap();
    let (_, adapter) = converted(dir.path(), &PeftFixtureSpec::default());
    let merged = dir.path().join("merged.gguf");
    merge_adapters(
        &MergeSettings {
            base: tiny_model_path().into(),
            adapters: vec![AdapterInput { path: adapter, scale: 1.0 }],
            output: merged.clone(),
            merged_type: Some(GgmlType::Q8_0),
            threads: 1,
        },
        |_| {},
    )
    .unwrap();
    let header = GgufFile::open(&merged).unwrap();
    assert_eq!(header.tensor("blk.1.ffn_down.weight").unwrap().ggml_type, GgmlType::Q8_0);
    assert_eq!(header.tensor("token_embd.weight").unwrap().ggml_type, GgmlType::F32, "untouched: copied");
}

fn assert_nothing_written(dir: &Path, output: &Path) {
    assert!(!output.exists(), "{} must not exist", output.display());
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

/// Writes an adapter GGUF with the given architecture and tensors (all F32 zeros).
fn raw_adapter(path: &Path, architecture: &str, tensors: &[(&str, Vec<u64>)]) {
    let metadata = vec![
        ("general.architecture".to_string(), MetadataValue::String(architecture.into())),
        ("general.type".to_string(), MetadataValue::String("adapter".into())),
        ("adapter.type".to_string(), MetadataValue::String("lora".into())),
        ("adapter.lora.alpha".to_string(), MetadataValue::F32(4.0)),
    ];
    let specs: Vec<TensorSpec> = tensors
        .iter()
        .map(|(n, d)| TensorSpec { name: n.to_string(), dims: d.clone(), ggml_type: GgmlType::F32 })
        .collect();
    let mut file = std::fs::File::create(path).unwrap();
    write_gguf(&mut file, &metadata, &specs, |i, out| {
        out.write_all(&vec![0u8; specs[i].n_bytes().unwrap() as usize])
    })
    .unwrap();
}

/// Merges one adapter at scale 1 into `base`, keeping the base's tensor types.
fn merge_one(base: impl AsRef<Path>, adapter: &Path, output: &Path) -> Result<MergeReport, LoraError> {
    merge_adapters(
        &MergeSettings {
            base: base.as_ref().to_path_buf(),
            adapters: vec![AdapterInput { path: adapter.to_path_buf(), scale: 1.0 }],
            output: output.to_path_buf(),
            merged_type: None,
            threads: 2,
        },
        |_| {},
    )
}

#[test]
fn merge_refuses_mismatched_adapters_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.gguf");
    let merge = |adapter: &Path| merge_one(tiny_model_path(), adapter, &output).unwrap_err();
    let q = |suffix: &str| format!("blk.0.attn_q.weight.{suffix}");
    type Tensors = Vec<(String, Vec<u64>)>;
    let cases: Vec<(&str, &str, Tensors, &str)> = vec![
        (
            "arch.gguf",
            "qwen2",
            vec![(q("lora_a"), vec![64, 2]), (q("lora_b"), vec![2, 64])],
            "architecture qwen2",
        ),
        ("shape.gguf", "llama", vec![(q("lora_a"), vec![48, 2]), (q("lora_b"), vec![2, 64])], "do not fit"),
        ("rank.gguf", "llama", vec![(q("lora_a"), vec![64, 2]), (q("lora_b"), vec![3, 64])], "do not fit"),
        ("half.gguf", "llama", vec![(q("lora_a"), vec![64, 2])], "only one of"),
        ("name.gguf", "llama", vec![("blk.0.attn_q.weight.lora_c".into(), vec![64, 2])], "not a LoRA matrix"),
        (
            "missing.gguf",
            "llama",
            vec![
                ("blk.9.attn_q.weight.lora_a".into(), vec![64, 2]),
                ("blk.9.attn_q.weight.lora_b".into(), vec![2, 64]),
            ],
            "does not have",
        ),
    ];
    for (file, arch, tensors, expected) in cases {
        let path = dir.path().join(file);
        let tensors: Vec<(&str, Vec<u64>)> = tensors.iter().map(|(n, d)| (n.as_str(), d.clone())).collect();
        raw_adapter(&path, arch, &tensors);
        let err = merge(&path).to_string();
        assert!(err.contains(expected), "{file}: {err}");
        assert_nothing_written(dir.path(), &output);
    }
    let err = merge(tiny_model_path()).to_string();
    assert!(err.contains("not a LoRA adapter"), "{err}");
    let same = merge_adapters(
        &MergeSettings {
            base: tiny_model_path().into(),
            adapters: vec![],
            output: tiny_model_path().into(),
            merged_type: None,
            threads: 1,
        },
        |_| {},
    );
    assert!(matches!(same, Err(LoraError::OutputIsInput { .. })));
}

#[test]
fn convert_refuses_what_gguf_adapters_cannot_hold() {
    let dir = tempfile::tempdir().unwrap();
    let peft = dir.path().join("peft");
    let output = dir.path().join("adapter.gguf");
    let base_header = GgufFile::open(tiny_model_path()).unwrap();
    let convert = |base: &Path| {
        convert_peft(&ConvertSettings { peft_dir: peft.clone(), base: base.into(), output: output.clone() })
    };
    let rewrite = |extra: &[(&str, Vec<usize>)]| {
        write_peft_adapter(&base_header, &peft, &PeftFixtureSpec::default()).unwrap();
        let bytes = std::fs::read(peft.join(WEIGHTS_FILE)).unwrap();
        let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = safetensors::SafeTensors::deserialize(&bytes)
            .unwrap()
            .tensors()
            .into_iter()
            .map(|(n, v)| (n, v.shape().to_vec(), v.data().to_vec()))
            .collect();
        for (name, shape) in extra {
            tensors.retain(|(n, _, _)| n != name);
            tensors.push((name.to_string(), shape.clone(), vec![0u8; shape.iter().product::<usize>() * 4]));
        }
        let views = tensors.iter().map(|(n, s, d)| {
            (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d).unwrap())
        });
        std::fs::write(peft.join(WEIGHTS_FILE), safetensors::serialize(views, None).unwrap()).unwrap();
    };
    for (extra, expected) in [
        (vec![("base_model.model.lm_head.lora_A.weight", vec![4, 64])], "output head"),
        (vec![("base_model.model.model.embed_tokens.lora_embedding_A", vec![4, 560])], "token embeddings"),
        (
            vec![("base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector", vec![1, 64])],
            "DoRA",
        ),
        (
            vec![("base_model.model.model.layers.0.self_attn.qkv.lora_A.weight", vec![4, 64])],
            "not a LoRA matrix",
        ),
        (
            vec![
                ("base_model.model.model.layers.7.mlp.up_proj.lora_A.weight", vec![4, 64]),
                ("base_model.model.model.layers.7.mlp.up_proj.lora_B.weight", vec![128, 4]),
            ],
            "no tensor blk.7.ffn_up.weight",
        ),
        (
            vec![("base_model.model.model.layers.1.mlp.up_proj.lora_B.weight", vec![100, 4])],
            "trained on another model",
        ),
    ] {
        rewrite(&extra);
        let err = convert(tiny_model_path()).unwrap_err().to_string();
        assert!(err.contains(expected), "{extra:?}: {err}");
        assert_nothing_written(dir.path(), &output);
    }

    // A base of another family of sizes: every shape is checked.
    rewrite(&[]);
    let wider = dir.path().join("wider.gguf");
    write_tiny_model(&wider, &TinyModelSpec { n_ff: 96, ..Default::default() }).unwrap();
    let err = convert(&wider).unwrap_err().to_string();
    assert!(err.contains("trained on another model"), "{err}");
    let other_arch = dir.path().join("phi.gguf");
    write_tiny_model(&other_arch, &TinyModelSpec { architecture: "phi3".into(), ..Default::default() })
        .unwrap();
    assert!(matches!(convert(&other_arch), Err(LoraError::UnsupportedArchitecture { .. })));
    std::fs::write(peft.join(WEIGHTS_FILE), b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":").unwrap();
    let err = convert(tiny_model_path()).unwrap_err().to_string();
    assert!(err.contains("safetensors"), "{err}");
    assert_nothing_written(dir.path(), &output);
}

/// An adapter on `blk.0.attn_q.weight` (rank 2) with every value of A and of B given.
fn valued_adapter(path: &Path, alpha: f32, a_value: f32, b_value: f32) {
    let metadata = vec![
        ("general.architecture".to_string(), MetadataValue::String("llama".into())),
        ("general.type".to_string(), MetadataValue::String("adapter".into())),
        ("adapter.type".to_string(), MetadataValue::String("lora".into())),
        ("adapter.lora.alpha".to_string(), MetadataValue::F32(alpha)),
    ];
    let specs = [("lora_a", vec![64, 2]), ("lora_b", vec![2, 64])].map(|(half, dims)| TensorSpec {
        name: format!("blk.0.attn_q.weight.{half}"),
        dims,
        ggml_type: GgmlType::F32,
    });
    let mut file = std::fs::File::create(path).unwrap();
    write_gguf(&mut file, &metadata, &specs, |i, out| {
        let value = if i == 0 { a_value } else { b_value };
        let bytes: Vec<u8> =
            (0..specs[i].dims.iter().product::<u64>()).flat_map(|_| value.to_le_bytes()).collect();
        out.write_all(&bytes)
    })
    .unwrap();
}

/// A NaN adapter once merged into an all-NaN model with exit 0. Non-finite alphas and
/// values are refused naming the tensor, and so is a finite update whose result overflows.
#[test]
fn merge_refuses_non_finite_adapters_and_results_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.gguf");
    let merge = |adapter: &Path| merge_one(tiny_model_path(), adapter, &output);
    let cases: [(&str, f32, f32, f32, &str); 5] = [
        ("nan-alpha.gguf", f32::NAN, 0.1, 0.1, "adapter.lora.alpha is NaN, not a finite number"),
        ("inf-alpha.gguf", f32::INFINITY, 0.1, 0.1, "adapter.lora.alpha is inf"),
        ("nan-a.gguf", 4.0, f32::NAN, 0.1, "tensor blk.0.attn_q.weight.lora_a holds NaN or infinite values"),
        (
            "inf-b.gguf",
            4.0,
            0.1,
            f32::NEG_INFINITY,
            "tensor blk.0.attn_q.weight.lora_b holds NaN or infinite values",
        ),
        (
            "overflow.gguf",
            4.0,
            1e20,
            1e20,
            "merging gives blk.0.attn_q.weight a value that is not a finite number",
        ),
    ];
    for (name, alpha, a, b, expected) in cases {
        let path = dir.path().join(name);
        valued_adapter(&path, alpha, a, b);
        let err = merge(&path).unwrap_err().to_string();
        assert!(err.contains(expected), "{name}: {err}");
        assert_nothing_written(dir.path(), &output);
    }
    // The same adapter with finite, moderate values merges.
    let fine = dir.path().join("fine.gguf");
    valued_adapter(&fine, 4.0, 0.1, 0.1);
    let report = merge(&fine).unwrap();
    assert_eq!(report.merged_tensors, 1);
}

#[test]
fn convert_refuses_non_finite_values_naming_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let peft = dir.path().join("peft");
    let output = dir.path().join("adapter.gguf");
    let base_header = GgufFile::open(tiny_model_path()).unwrap();
    write_peft_adapter(&base_header, &peft, &PeftFixtureSpec::default()).unwrap();
    let bytes = std::fs::read(peft.join(WEIGHTS_FILE)).unwrap();
    let poisoned = "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight";
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = safetensors::SafeTensors::deserialize(&bytes)
        .unwrap()
        .tensors()
        .into_iter()
        .map(|(n, v)| {
            let mut data = v.data().to_vec();
            if n == poisoned {
                data[4..8].copy_from_slice(&f32::NAN.to_le_bytes());
            }
            (n, v.shape().to_vec(), data)
        })
        .collect();
    let views = tensors.iter().map(|(n, s, d)| {
        (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d).unwrap())
    });
    std::fs::write(peft.join(WEIGHTS_FILE), safetensors::serialize(views, None).unwrap()).unwrap();
    let err = convert_peft(&ConvertSettings {
        peft_dir: peft,
        base: tiny_model_path().into(),
        output: output.clone(),
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains(&format!("tensor {poisoned} holds NaN or infinite values")), "{err}");
    assert_nothing_written(dir.path(), &output);
}
