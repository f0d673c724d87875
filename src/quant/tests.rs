//! Quantization round trips on the tiny model, through llama.cpp's quantizer.

use std::path::{Path, PathBuf};

use super::*;
use crate::gguf::{GgmlType, GgufFile, TinyModelSpec, write_tiny_model};
use crate::llama::{dequantize_rows, quantize_rows};
use crate::test_support::tiny_model_path;

fn quantized(input: &Path, dir: &Path, file_type: &str) -> (PathBuf, QuantizeReport) {
    let output = dir.join(format!("{}-{file_type}.gguf", input.file_stem().unwrap().to_string_lossy()));
    let settings = QuantizeSettings {
        input: input.into(),
        output: Some(output.clone()),
        file_type: parse_file_type(file_type).unwrap(),
        threads: 2,
        ..Default::default()
    };
    let report = quantize(&settings, |_| {}).unwrap();
    (output, report)
}

fn tensor_f32(path: &Path, name: &str) -> Vec<f32> {
    let file = GgufFile::open(path).unwrap();
    let info = file.tensor(name).unwrap();
    let bytes = file.read_tensor_data(name).unwrap().unwrap();
    let mut values = vec![0.0; info.elements() as usize];
    dequantize_rows(info.ggml_type, &bytes, &mut values).unwrap();
    values
}

#[test]
fn q8_0_to_f32_and_back_gives_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (q8, report) = quantized(tiny_model_path(), dir.path(), "Q8_0");
    assert_eq!(report.file_type, "Q8_0");
    let (f32_copy, _) = quantized(&q8, dir.path(), "F32");
    let (again, _) = quantized(&f32_copy, dir.path(), "Q8_0");
    let (a, b) = (GgufFile::open(&q8).unwrap(), GgufFile::open(&again).unwrap());
    let dequantized = GgufFile::open(&f32_copy).unwrap();
    assert!(dequantized.tensors.iter().all(|t| t.ggml_type == GgmlType::F32), "f32 dequantizes every tensor");
    for tensor in &a.tensors {
        assert_eq!(
            a.read_tensor_data(&tensor.name).unwrap(),
            b.read_tensor_data(&tensor.name).unwrap(),
            "{} changed in the round trip",
            tensor.name
        );
    }
    // And the Q8_0 values are close to the F32 originals: half a step of the block scale,
    // plus the scale's own f16 rounding (2^-11 relative, times up to 127 steps).
    let original = tensor_f32(tiny_model_path(), "blk.0.ffn_up.weight");
    let rounded = tensor_f32(&q8, "blk.0.ffn_up.weight");
    for (block_o, block_r) in original.chunks(32).zip(rounded.chunks(32)) {
        let step = block_o.iter().fold(0.0f32, |m, v| m.max(v.abs())) / 127.0;
        for (o, r) in block_o.iter().zip(block_r) {
            assert!((o - r).abs() <= step * (0.5 + 127.0 / 2048.0) + 1e-7, "{o} vs {r} (step {step})");
        }
    }
}

#[test]
fn f16_round_trip_keeps_half_precision() {
    let dir = tempfile::tempdir().unwrap();
    let (f16, _) = quantized(tiny_model_path(), dir.path(), "F16");
    let header = GgufFile::open(&f16).unwrap();
    assert_eq!(header.tensor("blk.1.attn_v.weight").unwrap().ggml_type, GgmlType::F16);
    assert_eq!(header.tensor("blk.1.attn_norm.weight").unwrap().ggml_type, GgmlType::F32, "1-D stays F32");
    let original = tensor_f32(tiny_model_path(), "blk.1.attn_v.weight");
    let half = tensor_f32(&f16, "blk.1.attn_v.weight");
    for (o, h) in original.iter().zip(&half) {
        assert!((o - h).abs() <= o.abs() * 1e-3 + 1e-7, "{o} vs {h}");
    }
}

#[test]
fn dry_run_plans_the_types_a_real_run_writes() {
    let dir = tempfile::tempdir().unwrap();
    // k-quants need rows of 256: a wider tiny model takes Q4_K_M's real mixture.
    let wide = dir.path().join("wide.gguf");
    write_tiny_model(&wide, &TinyModelSpec { n_embd: 256, n_ff: 512, ..Default::default() }).unwrap();
    let settings = QuantizeSettings {
        input: wide.clone(),
        output: None,
        file_type: parse_file_type("Q4_K_M").unwrap(),
        dry_run: true,
        ..Default::default()
    };
    let heard = std::rc::Rc::new(std::cell::RefCell::new(0));
    let counter = std::rc::Rc::clone(&heard);
    let plan = quantize(&settings, move |_| *counter.borrow_mut() += 1).unwrap();
    assert_eq!(*heard.borrow(), 21, "progress for every tensor");
    assert!(plan.output.is_none() && plan.output_file_bytes.is_none());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "a dry run writes nothing");
    let (_, real) = quantized(&wide, dir.path(), "Q4_K_M");
    let types =
        |r: &QuantizeReport| r.tensors.iter().map(|t| (t.name.clone(), t.to.clone())).collect::<Vec<_>>();
    let mut planned = types(&plan);
    let mut written = types(&real);
    planned.sort();
    written.sort();
    assert_eq!(planned, written);
    assert!(
        written.iter().any(|(_, t)| t == "Q4_K") && written.iter().any(|(_, t)| t == "Q6_K"),
        "{written:?}"
    );
    assert_eq!(plan.tensor_bytes_after, real.tensor_bytes_after);
}

#[test]
fn quantizer_failures_leave_nothing_and_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.gguf");
    let settings = |file_type: &str| QuantizeSettings {
        input: tiny_model_path().into(),
        output: Some(output.clone()),
        file_type: parse_file_type(file_type).unwrap(),
        ..Default::default()
    };
    // IQ2_XXS needs an importance matrix; llama.cpp refuses and we pass its reason on.
    let wide = dir.path().join("wide.gguf");
    write_tiny_model(&wide, &TinyModelSpec { n_embd: 256, n_ff: 512, ..Default::default() }).unwrap();
    let err = quantize(&QuantizeSettings { input: wide, ..settings("IQ2_XXS") }, |_| {}).unwrap_err();
    assert!(err.to_string().contains("imatrix"), "{err}");
    assert!(!output.exists());
    let same =
        quantize(&QuantizeSettings { output: Some(tiny_model_path().into()), ..settings("Q8_0") }, |_| {});
    assert!(matches!(same, Err(QuantError::OutputIsInput { .. })));
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("wide.gguf")], "no temporary file left");
}

#[test]
fn row_conversions_are_close_for_every_writable_type() {
    let n_per_row = 256;
    let values: Vec<f32> =
        (0..4 * n_per_row).map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 0.3).collect();
    let norm = values.iter().map(|v| v * v).sum::<f32>().sqrt();
    // (type, largest relative L2 error accepted)
    for (name, tolerance) in [
        ("F16", 1e-3),
        ("BF16", 1e-2),
        ("Q8_0", 0.01),
        ("Q6_K", 0.02),
        ("Q5_K", 0.04),
        ("Q5_0", 0.05),
        ("Q4_K", 0.08),
        ("Q4_1", 0.1),
        ("Q4_0", 0.12),
        ("IQ4_NL", 0.1),
        ("Q3_K", 0.2),
        ("Q2_K", 0.4),
    ] {
        let ty = GgmlType::from_name(name).unwrap();
        let mut bytes = vec![0u8; ty.bytes_for(values.len() as u64).unwrap() as usize];
        quantize_rows(ty, &values, n_per_row, &mut bytes, None).unwrap();
        let mut back = vec![0.0f32; values.len()];
        dequantize_rows(ty, &bytes, &mut back).unwrap();
        let error = values.iter().zip(&back).map(|(a, b)| (a - b) * (a - b)).sum::<f32>().sqrt() / norm;
        assert!(error <= tolerance, "{name}: relative error {error}");
        assert!(error > 0.0 || name == "F32", "{name} must round something");
    }
    // Sizes that do not fill whole blocks are errors, not ggml assertions.
    let q4_k = GgmlType::from_name("Q4_K").unwrap();
    let mut small = vec![0u8; 144];
    assert!(quantize_rows(q4_k, &values[..64], 64, &mut small, None).is_err());
    assert!(dequantize_rows(q4_k, &small[..100], &mut vec![0.0; 256]).is_err());
    let iq2 = GgmlType::from_name("IQ2_XXS").unwrap();
    let mut out = vec![0u8; iq2.bytes_for(256).unwrap() as usize];
    assert!(quantize_rows(iq2, &values[..256], 256, &mut out, None).is_err(), "needs an importance matrix");
}

#[test]
fn importance_matrix_reaches_llama_cpp() {
    use crate::gguf::{MetadataValue, TensorSpec, write_gguf};
    let dir = tempfile::tempdir().unwrap();
    let wide = dir.path().join("wide.gguf");
    write_tiny_model(&wide, &TinyModelSpec { n_embd: 256, n_ff: 512, ..Default::default() }).unwrap();
    // One importance per input column of every 2-D weight, in llama-imatrix's GGUF form.
    let header = GgufFile::open(&wide).unwrap();
    let mut specs = Vec::new();
    let mut data: Vec<Vec<f32>> = Vec::new();
    for t in header.tensors.iter().filter(|t| t.dims.len() == 2) {
        let n_in = t.dims[0];
        specs.push(TensorSpec {
            name: format!("{}.in_sum2", t.name),
            dims: vec![n_in, 1],
            ggml_type: GgmlType::F32,
        });
        data.push((0..n_in).map(|i| 1.0 + (i % 7) as f32).collect());
        specs.push(TensorSpec {
            name: format!("{}.counts", t.name),
            dims: vec![1, 1],
            ggml_type: GgmlType::F32,
        });
        data.push(vec![2.0]);
    }
    let imatrix = dir.path().join("imatrix.gguf");
    let metadata = vec![("general.type".to_string(), MetadataValue::String("imatrix".into()))];
    let mut file = std::fs::File::create(&imatrix).unwrap();
    write_gguf(&mut file, &metadata, &specs, |i, out| {
        out.write_all(&data[i].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>())
    })
    .unwrap();
    let output = dir.path().join("iq2.gguf");
    let settings = QuantizeSettings {
        input: wide,
        output: Some(output.clone()),
        file_type: parse_file_type("IQ2_XXS").unwrap(),
        imatrix: Some(imatrix),
        threads: 2,
        ..Default::default()
    };
    // Without the matrix llama.cpp refuses this type (see above); with it, it quantizes.
    let report = quantize(&settings, |_| {}).unwrap();
    assert!(report.tensors.iter().any(|t| t.to == "IQ2_XXS"), "{:?}", report.tensors);
    assert!(output.exists());
}

/// The tiny model with one weight of `output_norm.weight` made NaN: every logit is NaN.
fn nan_model(dir: &Path) -> PathBuf {
    use crate::gguf::{TensorSpec, write_gguf};
    let base = GgufFile::open(tiny_model_path()).unwrap();
    let specs: Vec<TensorSpec> = base
        .tensors
        .iter()
        .map(|t| TensorSpec { name: t.name.clone(), dims: t.dims.clone(), ggml_type: t.ggml_type })
        .collect();
    let path = dir.join("nan.gguf");
    let mut file = std::fs::File::create(&path).unwrap();
    let source = base.reopen().unwrap();
    let mut bytes = Vec::new();
    write_gguf(&mut file, &base.metadata, &specs, |i, out| {
        base.read_tensor_data_into(&source, &base.tensors[i], &mut bytes).unwrap();
        if base.tensors[i].name == "output_norm.weight" {
            bytes[..4].copy_from_slice(&f32::NAN.to_le_bytes());
        }
        out.write_all(&bytes)
    })
    .unwrap();
    path
}

/// NaN logits once made every KL divergence NaN, which the clamp at 0 reported as 0:
/// "identical". They are an error naming the model.
#[test]
fn quality_of_a_model_with_nan_logits_is_an_error_not_zero() {
    let dir = tempfile::tempdir().unwrap();
    let broken = nan_model(dir.path());
    let text = "the patient was male and the pain was daily with no history of pain ".repeat(8);
    let settings = |reference: &Path, model: &Path| QualitySettings {
        reference: reference.into(),
        model: model.into(),
        ctx: 32,
        max_chunks: Some(2),
        threads: 2,
    };
    for (reference, model) in [(tiny_model_path(), broken.as_path()), (broken.as_path(), tiny_model_path())] {
        let err = compare_quality(&settings(reference, model), &text).unwrap_err();
        assert!(matches!(&err, QuantError::NonFiniteLogits { model, .. } if model == &broken), "{err}");
        assert!(err.to_string().contains("not finite numbers"), "{err}");
    }
    // The reference against itself is still exactly identical.
    let same = compare_quality(&settings(tiny_model_path(), tiny_model_path()), &text).unwrap();
    assert_eq!(same.kl_divergence.max, 0.0);
}
