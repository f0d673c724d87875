//! Damaged model metadata never kills medllm: the tiny model's metadata values are mutated
//! one at a time (every number to 0, 1, -1, 2³¹, u32::MAX, NaN, ±inf as its type allows;
//! strings emptied or unknown; arrays emptied, halved or given a bad item; every key
//! removed; keys llama.cpp asserts on added) and `generate`, `quantize` and `extract` run
//! on each copy. Each run must exit 0, or 2 with an error message (`extract` also 1, some
//! document invalid): never by a signal (llama.cpp's asserts abort, exit 134). The list is
//! deterministic, 135 files.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use medllm::gguf::{GgufFile, MetadataValue, TensorSpec, write_gguf};

use crate::{medllm, stderr_of, tiny_model};

/// One damaged copy of the tiny model.
struct Mutation {
    name: String,
    metadata: Vec<(String, MetadataValue)>,
}

/// Values for a number of this type: the edges llama.cpp's loader trips on.
fn numeric_edges(value: &MetadataValue) -> Vec<(&'static str, MetadataValue)> {
    use MetadataValue::*;
    match value {
        U32(_) => vec![
            ("0", U32(0)),
            ("1", U32(1)),
            ("2^31", U32(1 << 31)),
            ("u32::MAX", U32(u32::MAX)),
            ("-1", I32(-1)),
        ],
        F32(_) => vec![
            ("0", F32(0.0)),
            ("-1", F32(-1.0)),
            ("NaN", F32(f32::NAN)),
            ("inf", F32(f32::INFINITY)),
            ("-inf", F32(f32::NEG_INFINITY)),
            ("1e30", F32(1e30)),
        ],
        Bool(_) => vec![("u8 2", U8(2))],
        String(_) => vec![("empty", String("".into())), ("unknown", String("no such thing".into()))],
        _ => vec![],
    }
}

/// Damaged versions of an array: emptied, halved, or one item made bad for its kind.
fn array_edges(items: &[MetadataValue]) -> Vec<(std::string::String, Vec<MetadataValue>)> {
    use MetadataValue::*;
    let mut edges =
        vec![("emptied".to_string(), vec![]), ("halved".to_string(), items[..items.len() / 2].to_vec())];
    let mut with_item = |what: &str, at: usize, item: MetadataValue| {
        let mut changed = items.to_vec();
        changed[at] = item;
        edges.push((what.to_string(), changed));
    };
    match items.first() {
        Some(String(_)) => {
            with_item("a duplicate token", 300, items[299].clone());
            with_item("a byte token renamed", 5 + 0x41, String("A?".into()));
            edges.push(("all empty".into(), vec![String("".into()); items.len()]));
        }
        Some(F32(_)) => {
            with_item("a NaN item", 300, F32(f32::NAN));
            with_item("an infinite item", 3, F32(f32::INFINITY));
        }
        Some(I32(_)) => {
            with_item("type 99", 7, I32(99));
            with_item("type -5", 7, I32(-5));
            with_item("a byte token made normal", 5 + 0x41, I32(1));
        }
        _ => {}
    }
    edges
}

/// Keys the tiny model lacks that llama.cpp asserts on or reads as numbers.
fn added_keys() -> Vec<(&'static str, MetadataValue)> {
    use MetadataValue::*;
    vec![
        ("llama.expert_count", U32(4)),
        ("llama.expert_count", U32(u32::MAX)),
        ("llama.expert_used_count", U32(2)),
        ("llama.expert_group_count", U32(2)),
        ("llama.nextn_predict_layers", U32(5)),
        ("llama.rope.scaling.type", String("no such scaling".into())),
        ("llama.rope.scaling.type", String("yarn".into())),
        ("llama.rope.scaling.factor", F32(f32::NAN)),
        ("llama.rope.scaling.attn_factor", F32(f32::INFINITY)),
        ("llama.attention.key_length", U32(0)),
        ("llama.attention.key_length", U32(7)),
        ("llama.attention.sliding_window", U32(4)),
        ("llama.attention.head_count", Array(vec![U32(4)])),
        ("llama.attention.head_count_kv", Array(vec![U32(2), U32(3)])),
        ("llama.final_logit_softcapping", F32(f32::NAN)),
    ]
}

fn mutations() -> Vec<Mutation> {
    let base = GgufFile::open(tiny_model()).unwrap();
    let mut all = Vec::new();
    let replaced = |key: &str, value: Option<MetadataValue>| -> Vec<(String, MetadataValue)> {
        let mut metadata: Vec<(String, MetadataValue)> =
            base.metadata.iter().filter(|(k, _)| k != key).cloned().collect();
        if let Some(value) = value {
            let at = base.metadata.iter().position(|(k, _)| k == key).unwrap_or(metadata.len());
            metadata.insert(at.min(metadata.len()), (key.to_string(), value));
        }
        metadata
    };
    for (key, value) in &base.metadata {
        if key == "general.name" {
            continue; // free text nothing reads
        }
        for (what, edge) in numeric_edges(value) {
            all.push(Mutation { name: format!("{key} = {what}"), metadata: replaced(key, Some(edge)) });
        }
        if let MetadataValue::Array(items) = value {
            for (what, edge) in array_edges(items) {
                let edge = MetadataValue::Array(edge);
                all.push(Mutation { name: format!("{key} {what}"), metadata: replaced(key, Some(edge)) });
            }
        }
        all.push(Mutation { name: format!("{key} removed"), metadata: replaced(key, None) });
    }
    for (model, what) in [("none", "none"), ("bert", "bert"), ("t5", "t5"), ("gpt2", "gpt2")] {
        all.push(Mutation {
            name: format!("tokenizer.ggml.model = {what}"),
            metadata: replaced("tokenizer.ggml.model", Some(MetadataValue::String(model.into()))),
        });
    }
    all.push(Mutation {
        name: "tokenizer.chat_template broken".into(),
        metadata: replaced("tokenizer.chat_template", Some(MetadataValue::String("{% for %}".into()))),
    });
    // A Unigram (t5) vocabulary whose character map fails on every letter but a newline:
    // llama.cpp throws from inside llama_tokenize (vendor patch 0006 turns that into an error).
    let mut metadata = replaced("tokenizer.ggml.model", Some(MetadataValue::String("t5".into())));
    metadata.push(("tokenizer.ggml.precompiled_charsmap".into(), damaged_charsmap()));
    all.push(Mutation { name: "t5 tokenizer with a damaged character map".into(), metadata });
    for (key, value) in added_keys() {
        all.push(Mutation {
            name: format!("{key} = {} added", value.summary()),
            metadata: replaced(key, Some(value)),
        });
    }
    all
}

/// A precompiled character map (the XCDA double array of a Unigram normalizer) of 11 empty
/// nodes: a newline matches nothing and is kept, any byte above 10 indexes past the array.
fn damaged_charsmap() -> MetadataValue {
    let nodes = 11u32;
    let mut blob = (nodes * 4).to_le_bytes().to_vec();
    blob.extend(std::iter::repeat_n(0u8, nodes as usize * 4));
    blob.push(0); // the replacement strings: one empty one
    MetadataValue::Array(blob.into_iter().map(MetadataValue::U8).collect())
}

/// The damaged copies, written once per test process: (name, file).
fn damaged_models() -> &'static [(String, PathBuf)] {
    static FILES: OnceLock<(tempfile::TempDir, Vec<(String, PathBuf)>)> = OnceLock::new();
    let (_, files) = FILES.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let base = GgufFile::open(tiny_model()).unwrap();
        let files = mutations()
            .into_iter()
            .enumerate()
            .map(|(i, mutation)| {
                let path = dir.path().join(format!("m{i:03}.gguf"));
                rewrite(&base, &mutation.metadata, &path);
                (mutation.name, path)
            })
            .collect();
        (dir, files)
    });
    files
}

/// `base`'s tensors under other metadata.
fn rewrite(base: &GgufFile, metadata: &[(String, MetadataValue)], path: &Path) {
    let specs: Vec<TensorSpec> = base
        .tensors
        .iter()
        .map(|t| TensorSpec { name: t.name.clone(), dims: t.dims.clone(), ggml_type: t.ggml_type })
        .collect();
    let source = base.reopen().unwrap();
    let mut buf = Vec::new();
    let mut file = std::fs::File::create(path).unwrap();
    write_gguf(&mut file, metadata, &specs, |i, out| {
        base.read_tensor_data_into(&source, &base.tensors[i], &mut buf).map_err(std::io::Error::other)?;
        out.write_all(&buf)
    })
    .unwrap();
}

/// Runs `command` on every damaged model and lists the runs that did not end well.
/// `extract` may also exit 1: the model ran, and some document gave no valid record.
fn run_on_every_model(command: &str, args: impl Fn(&Path, &Path) -> Vec<String>, stdin: Option<&str>) {
    let scratch = tempfile::tempdir().unwrap();
    let models = damaged_models();
    assert!(models.len() >= 100, "{} mutations", models.len());
    let mut failures = Vec::new();
    let mut refused = 0;
    for (i, (name, model)) in models.iter().enumerate() {
        let out = scratch.path().join(format!("out{i}"));
        let mut cmd = medllm();
        cmd.arg(command).args(args(model, &out)).timeout(Duration::from_secs(120));
        if let Some(text) = stdin {
            cmd.write_stdin(text);
        }
        let output = cmd.output().unwrap();
        let stderr = stderr_of(&output);
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").to_string();
        match output.status.code() {
            Some(0) => {}
            Some(1) if command == "extract" && stderr.contains("invalid") => {}
            Some(2) if stderr.contains("error") => refused += 1,
            code => failures.push(format!("{name}: exit {code:?} ({:?}): {last}", output.status)),
        }
        let _ = std::fs::remove_file(&out);
    }
    assert!(
        failures.is_empty(),
        "{command}: {} of {} runs ended badly:\n{}",
        failures.len(),
        models.len(),
        failures.join("\n")
    );
    // The list must reach the checks, not only pass through llama.cpp untouched.
    assert!(refused >= 40, "{command}: only {refused} of {} damaged models were refused", models.len());
}

fn s(path: &Path) -> String {
    path.to_str().unwrap().to_string()
}

#[test]
fn generate_survives_every_damaged_model() {
    run_on_every_model(
        "generate",
        |m, _| vec!["-m".into(), s(m), "-p".into(), "hi there".into(), "-n".into(), "2".into()],
        None,
    );
}

#[test]
fn quantize_survives_every_damaged_model() {
    run_on_every_model("quantize", |m, out| vec![s(m), s(out), "--type".into(), "Q8_0".into()], None);
}

#[test]
fn extract_survives_every_damaged_model() {
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("s.json");
    std::fs::write(
        &schema,
        r#"{"type":"object","properties":{"a":{"type":"string","maxLength":4}},"required":["a"]}"#,
    )
    .unwrap();
    let schema = s(&schema);
    run_on_every_model(
        "extract",
        |m, _| vec!["-m".into(), s(m), "--schema".into(), schema.clone(), "--max-tokens".into(), "8".into()],
        Some("Aspirin 81 mg daily."),
    );
}

/// The issue's reproduction: the tiny model with `llama.block_count` zeroed in place.
#[test]
fn a_zeroed_block_count_is_an_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(tiny_model()).unwrap();
    let key = b"llama.block_count";
    let at = bytes.windows(key.len()).position(|w| w == key).unwrap() + key.len();
    // After the key: its type (u32 = 4), then the 4 bytes of the value.
    assert_eq!(bytes[at..at + 4], 4u32.to_le_bytes());
    bytes[at + 4..at + 8].copy_from_slice(&0u32.to_le_bytes());
    let model = dir.path().join("l0.gguf");
    std::fs::write(&model, &bytes).unwrap();
    for args in [
        vec!["generate", "-m", model.to_str().unwrap(), "-p", "hi"],
        vec![
            "quantize",
            model.to_str().unwrap(),
            dir.path().join("q.gguf").to_str().unwrap(),
            "--type",
            "Q8_0",
        ],
    ] {
        let output = medllm().args(&args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", stderr_of(&output));
        assert!(stderr_of(&output).contains("llama.block_count is 0"), "{}", stderr_of(&output));
    }
    assert!(!dir.path().join("q.gguf").exists());
}

/// What llama.cpp throws while tokenizing is an error (vendor patch 0006), not std::terminate.
#[test]
fn a_vocabulary_that_throws_while_tokenizing_is_an_error() {
    let (_, model) =
        damaged_models().iter().find(|(name, _)| name.contains("damaged character map")).unwrap();
    let output =
        medllm().args(["generate", "-m", model.to_str().unwrap(), "-p", "hi", "-n", "2"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr_of(&output));
    assert!(stderr_of(&output).contains("error: tokenization failed"), "{}", stderr_of(&output));
}
