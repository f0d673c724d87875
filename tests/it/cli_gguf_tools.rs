//! The GGUF tools as users run them: PEFT adapter → lora convert → lora merge → quantize
//! → quality on the tiny model, and their errors (exit 2, nothing under the output name).

use std::path::{Path, PathBuf};

use medllm::gguf::{GgufDiff, ModelSummary};
use medllm::lora::{ConvertReport, MergeReport};
use medllm::quant::{QualityReport, QuantizeReport};

use crate::{medllm, stderr_of, tiny_model};

fn run_ok(args: &[&str]) -> Vec<u8> {
    let output = medllm().args(args).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{args:?}: {}", stderr_of(&output));
    output.stdout
}

fn run_fails(args: &[&str], expected: &str) {
    let output = medllm().args(args).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{args:?}: {}", stderr_of(&output));
    assert!(stderr_of(&output).contains(expected), "{args:?}: {}", stderr_of(&output));
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Nothing under `output`, and no temporary file beside it.
fn assert_nothing_left(output: &Path) {
    assert!(!output.exists(), "{} exists", output.display());
    let dir = output.parent().unwrap();
    let partial: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".partial"))
        .collect();
    assert!(partial.is_empty(), "{partial:?}");
}

#[test]
fn peft_to_quantized_model_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let base = tiny_model();
    run_ok(&[
        "dev",
        "peft-adapter",
        "--base",
        s(base),
        "-o",
        s(&path("peft")),
        "--rank",
        "4",
        "--magnitude",
        "0.1",
    ]);

    let convert: ConvertReport = serde_json::from_slice(&run_ok(&[
        "lora",
        "convert",
        "--peft",
        s(&path("peft")),
        "--base",
        s(base),
        "-o",
        s(&path("adapter.gguf")),
        "--json",
    ]))
    .unwrap();
    assert_eq!((convert.adapted_tensors, convert.rank, convert.alpha), (14, 4, 32.0));
    assert!(convert.permuted_query_key);

    let merge: MergeReport = serde_json::from_slice(&run_ok(&[
        "lora",
        "merge",
        "--base",
        s(base),
        "--adapter",
        &format!("{}:0.5", s(&path("adapter.gguf"))),
        "-o",
        s(&path("merged.gguf")),
        "--json",
    ]))
    .unwrap();
    assert_eq!((merge.merged_tensors, merge.copied_tensors), (14, 7));
    assert_eq!(merge.adapters[0].scale, 0.5);

    let quantize: QuantizeReport = serde_json::from_slice(&run_ok(&[
        "quantize",
        s(&path("merged.gguf")),
        s(&path("merged-q8.gguf")),
        "--type",
        "q8_0",
        "--json",
    ]))
    .unwrap();
    assert!(quantize.output_file_bytes.unwrap() < quantize.input_file_bytes / 3);
    assert!(quantize.tensors.iter().filter(|t| t.to == "Q8_0").count() >= 16);

    let text = path("notes.txt");
    std::fs::write(&text, "the patient was male and the pain was daily. ".repeat(20)).unwrap();
    let quality = |reference: &Path, model: &Path| -> QualityReport {
        serde_json::from_slice(&run_ok(&[
            "quality",
            "--ref",
            s(reference),
            s(model),
            "--text",
            s(&text),
            "--ctx",
            "64",
            "--json",
        ]))
        .unwrap()
    };
    let same = quality(&path("merged.gguf"), &path("merged.gguf"));
    assert_eq!(same.kl_divergence.max, 0.0);
    assert_eq!(same.top1_agreement, 1.0);
    assert_eq!(same.reference_perplexity, same.model_perplexity);
    let quantized = quality(&path("merged.gguf"), &path("merged-q8.gguf"));
    let tuned = quality(base, &path("merged.gguf"));
    assert!(quantized.tokens_scored > 50, "{}", quantized.tokens_scored);
    assert!(quantized.kl_divergence.mean > 0.0);
    assert!(
        quantized.kl_divergence.mean < tuned.kl_divergence.mean,
        "Q8_0 rounding ({}) must move the model less than the adapter did ({})",
        quantized.kl_divergence.mean,
        tuned.kl_divergence.mean
    );
    assert!(quantized.kl_divergence.p99 >= quantized.kl_divergence.median);
    assert!(quantized.top1_agreement > 0.8, "{}", quantized.top1_agreement);

    // The table forms name the same figures.
    let table = String::from_utf8(run_ok(&[
        "quality",
        "--ref",
        s(&path("merged.gguf")),
        s(&path("merged-q8.gguf")),
        "--text",
        s(&text),
        "--ctx",
        "64",
    ]))
    .unwrap();
    assert!(table.contains("KL divergence p99") && table.contains("same top token"), "{table}");
}

#[test]
fn info_lists_tensors_and_diff_shows_retyping() {
    let dir = tempfile::tempdir().unwrap();
    let q8 = dir.path().join("q8.gguf");
    run_ok(&["quantize", s(tiny_model()), s(&q8), "--type", "Q8_0", "-q"]);
    let summary: ModelSummary =
        serde_json::from_slice(&run_ok(&["info", "--tensors", "--json", s(&q8)])).unwrap();
    let tensors = summary.tensors.unwrap();
    assert_eq!(tensors.len(), 21);
    let q = tensors.iter().find(|t| t.name == "blk.0.attn_q.weight").unwrap();
    assert_eq!(
        (q.ggml_type.as_str(), q.dims.as_slice(), q.bytes),
        ("Q8_0", &[64u64, 64][..], 64 * 64 / 32 * 34)
    );
    let plain: ModelSummary = serde_json::from_slice(&run_ok(&["info", "--json", s(&q8)])).unwrap();
    assert!(plain.tensors.is_none(), "only with --tensors");

    let diff: GgufDiff =
        serde_json::from_slice(&run_ok(&["diff", s(tiny_model()), s(&q8), "--json"])).unwrap();
    assert_eq!(diff.tensors_changed.len(), 16);
    assert_eq!(diff.tensors_same, 5, "norms stay F32");
    assert!(diff.metadata_changed.iter().any(|c| c.key == "general.file_type" && c.a == "0" && c.b == "7"));
    let text = String::from_utf8(run_ok(&["diff", s(tiny_model()), s(&q8)])).unwrap();
    assert!(text.contains("~ tensor blk.0.attn_q.weight F32 → Q8_0"), "{text}");
    let same = String::from_utf8(run_ok(&["diff", s(&q8), s(&q8)])).unwrap();
    assert!(same.starts_with("same metadata"), "{same}");
}

#[test]
fn quantize_dry_run_reports_sizes_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("never.gguf");
    let plan =
        String::from_utf8(run_ok(&["quantize", s(tiny_model()), s(&out), "--type", "Q4_0", "--dry-run"]))
            .unwrap();
    assert!(
        plan.contains("blk.0.ffn_up.weight") && plan.lines().last().unwrap().starts_with("total: 21 tensors"),
        "{plan}"
    );
    assert_nothing_left(&out);
    let pure: QuantizeReport = serde_json::from_slice(&run_ok(&[
        "quantize",
        s(tiny_model()),
        "--type",
        "Q4_0",
        "--dry-run",
        "--pure",
        "--json",
        "--output-tensor-type",
        "f16",
        "--token-embedding-type",
        "q8_0",
    ]))
    .unwrap();
    let type_of = |name: &str| pure.tensors.iter().find(|t| t.name == name).unwrap().to.clone();
    assert_eq!(type_of("output.weight"), "F16");
    assert_eq!(type_of("token_embd.weight"), "Q8_0");
    assert_eq!(type_of("blk.1.ffn_down.weight"), "Q4_0");
}

#[test]
fn errors_exit_2_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let out = path("out.gguf");
    // Corrupt inputs.
    std::fs::write(path("broken.gguf"), &std::fs::read(tiny_model()).unwrap()[..5000]).unwrap();
    run_fails(&["quantize", s(&path("broken.gguf")), s(&out), "--type", "q8_0"], "truncated");
    run_fails(
        &["lora", "merge", "--base", s(&path("broken.gguf")), "--adapter", s(tiny_model()), "-o", s(&out)],
        "truncated",
    );
    assert_nothing_left(&out);
    std::fs::create_dir(path("peft")).unwrap();
    std::fs::write(path("peft/adapter_config.json"), r#"{"r": 4, "lora_alpha": 8}"#).unwrap();
    std::fs::write(path("peft/adapter_model.safetensors"), b"\xff\xff\xff\xff\xff\xff\xff\x7f{").unwrap();
    run_fails(
        &["lora", "convert", "--peft", s(&path("peft")), "--base", s(tiny_model()), "-o", s(&out)],
        "safetensors",
    );
    assert_nothing_left(&out);
    // Architecture and shape mismatches.
    run_ok(&["dev", "peft-adapter", "--base", s(tiny_model()), "-o", s(&path("peft")), "--rank", "2"]);
    run_ok(&["dev", "tiny-model", "-o", s(&path("phi.gguf")), "--architecture", "phi3"]);
    run_fails(
        &["lora", "convert", "--peft", s(&path("peft")), "--base", s(&path("phi.gguf")), "-o", s(&out)],
        "phi3",
    );
    run_ok(&[
        "lora",
        "convert",
        "--peft",
        s(&path("peft")),
        "--base",
        s(tiny_model()),
        "-o",
        s(&path("a.gguf")),
    ]);
    run_fails(
        &["lora", "merge", "--base", s(&path("phi.gguf")), "--adapter", s(&path("a.gguf")), "-o", s(&out)],
        "architecture llama",
    );
    assert_nothing_left(&out);
    // Outputs never replace inputs.
    run_fails(&["quantize", s(&path("a.gguf")), s(&path("a.gguf")), "--type", "f16"], "is the input");
    run_fails(
        &[
            "lora",
            "merge",
            "--base",
            s(tiny_model()),
            "--adapter",
            s(&path("a.gguf")),
            "-o",
            s(&path("a.gguf")),
        ],
        "is the input",
    );
    // Usage errors.
    run_fails(&["quantize", s(tiny_model()), s(&out), "--type", "Q9_Z"], "unknown type");
    run_fails(&["quantize", s(tiny_model()), "--type", "q8_0"], "OUT.gguf");
}

/// A full disk, simulated with a file-size limit: the write fails part-way (EFBIG once
/// SIGXFSZ is ignored), the command exits 2 and nothing is left under the output name.
#[test]
fn full_disk_exits_2_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.gguf");
    let medllm_path = assert_cmd::cargo::cargo_bin("medllm");
    let adapter_dir = dir.path().join("peft");
    run_ok(&["dev", "peft-adapter", "--base", s(tiny_model()), "-o", s(&adapter_dir), "--rank", "2"]);
    let adapter = dir.path().join("a.gguf");
    run_ok(&["lora", "convert", "--peft", s(&adapter_dir), "--base", s(tiny_model()), "-o", s(&adapter)]);
    for command in [
        format!("'{}' quantize '{}' '{}' --type f16", medllm_path.display(), s(tiny_model()), s(&out)),
        format!(
            "'{}' lora merge --base '{}' --adapter '{}' -o '{}'",
            medllm_path.display(),
            s(tiny_model()),
            s(&adapter),
            s(&out)
        ),
    ] {
        // 100 blocks of 512 bytes: far less than either output.
        let output = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!("trap '' XFSZ; ulimit -f 100; exec {command}"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{command}: {stderr}");
        assert!(stderr.contains("error:"), "{stderr}");
        assert_nothing_left(&out);
    }
}
