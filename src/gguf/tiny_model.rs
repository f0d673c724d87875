//! A tiny model with random weights and a small SentencePiece-style vocabulary, written as
//! GGUF, in the layout of one of several architectures (llama by default; the Gemma, Qwen and
//! Phi-3 families for training checks). llama.cpp loads and runs it, so tests need no download.

use std::io::{self, Write};
use std::path::Path;

use super::types::GgmlType;
use super::write::{TensorSpec, write_gguf};
use super::{GgufError, MetadataValue};

/// Shape and seed of a tiny model.
#[derive(Debug, Clone)]
pub struct TinyModelSpec {
    /// Hidden size.
    pub n_embd: u64,
    /// Feed-forward size.
    pub n_ff: u64,
    /// Transformer blocks.
    pub n_layer: u64,
    /// Attention heads.
    pub n_head: u64,
    /// Key/value heads (grouped-query attention when fewer than `n_head`).
    pub n_head_kv: u64,
    /// Training context length recorded in the file.
    pub n_ctx_train: u64,
    /// Seed of the random weights.
    pub seed: u64,
    /// `general.architecture`: one of [`TINY_ARCHITECTURES`], whose tensor layout and
    /// hyper-parameters the file then has; llama.cpp also loads other names it knows
    /// nothing special about only as long as they expect llama's layout.
    pub architecture: String,
    /// Whether the file carries a (ChatML) `tokenizer.chat_template`.
    pub chat_template: bool,
    /// Tokens a sliding-window layer attends to (gemma2, gemma3).
    pub sliding_window: u32,
}

/// Architectures whose own layout the tiny model can take: each differs from llama in what
/// training must differentiate (GEGLU, soft-capping tanh, sliding-window attention, Q/K norms,
/// a fused SwiGLU; stablelm's LayerNorm, which llama.cpp cannot differentiate).
pub const TINY_ARCHITECTURES: &[&str] =
    &["llama", "gemma", "gemma2", "gemma3", "qwen2", "qwen3", "phi3", "stablelm"];

impl Default for TinyModelSpec {
    fn default() -> Self {
        TinyModelSpec {
            n_embd: 64,
            n_ff: 128,
            n_layer: 2,
            n_head: 4,
            n_head_kv: 2,
            n_ctx_train: 1024,
            seed: 42,
            architecture: "llama".into(),
            chat_template: true,
            sliding_window: 16,
        }
    }
}

/// ChatML, the template family SmolLM2 uses, so chat templating is exercised for real.
const CHAT_TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// Pieces beyond the byte tokens: enough for English words and JSON to tokenise compactly.
const WORDS: &[&str] = &[
    "the", "and", "patient", "with", "mg", "daily", "of", "to", "in", "is", "was", "for", "male", "female",
    "year", "old", "history", "pain", "on", "no", "name", "dose", "age", "true", "false", "null",
];

/// SentencePiece token types, as llama.cpp numbers them.
const TYPE_NORMAL: i32 = 1;
const TYPE_UNKNOWN: i32 = 2;
const TYPE_CONTROL: i32 = 3;
const TYPE_BYTE: i32 = 6;

/// The vocabulary: (piece, score, type). Ids are positions.
fn vocabulary() -> Vec<(String, f32, i32)> {
    let mut vocab: Vec<(String, f32, i32)> = vec![
        ("<unk>".into(), 0.0, TYPE_UNKNOWN),
        ("<s>".into(), 0.0, TYPE_CONTROL),
        ("</s>".into(), 0.0, TYPE_CONTROL),
        ("<|im_start|>".into(), 0.0, TYPE_CONTROL),
        ("<|im_end|>".into(), 0.0, TYPE_CONTROL),
    ];
    for byte in 0..=255u8 {
        vocab.push((format!("<0x{byte:02X}>"), 0.0, TYPE_BYTE));
    }
    // Single printable characters score lowest, whole words highest, so the tokenizer
    // merges towards words.
    for c in (b'!'..=b'~').map(char::from) {
        vocab.push((c.to_string(), -10.0, TYPE_NORMAL));
    }
    vocab.push(("\u{2581}".into(), -9.0, TYPE_NORMAL));
    for c in ('a'..='z').chain('A'..='Z').chain('0'..='9') {
        vocab.push((format!("\u{2581}{c}"), -8.0, TYPE_NORMAL));
    }
    for piece in ["\":", "\",", "{\"", "\"}", "\u{2581}\"", "\u{2581}{", "\u{2581}}", "\n"] {
        vocab.push((piece.into(), -6.0, TYPE_NORMAL));
    }
    // SentencePiece merges pairs of adjacent pieces, so a word is reachable only through
    // its prefixes: add them all, longer ones scoring higher.
    let mut seen: std::collections::HashSet<String> = vocab.iter().map(|t| t.0.clone()).collect();
    for word in WORDS {
        for piece in [format!("\u{2581}{word}"), (*word).to_string()] {
            let chars: Vec<char> = piece.chars().collect();
            for len in 2..=chars.len() {
                let prefix: String = chars[..len].iter().collect();
                if seen.insert(prefix.clone()) {
                    vocab.push((prefix, -5.0 + len as f32 * 0.1, TYPE_NORMAL));
                }
            }
        }
    }
    vocab
}

/// Writes the tiny model described by `spec` to `path` (atomically).
pub fn write_tiny_model(path: &Path, spec: &TinyModelSpec) -> Result<(), GgufError> {
    let vocab = vocabulary();
    let n_vocab = vocab.len() as u64;
    let arch = spec.architecture.as_str();
    let gemma = arch.starts_with("gemma");
    let head_dim = spec.n_embd / spec.n_head;
    let key = |k: &str| format!("{arch}.{k}");
    let metadata: Vec<(String, MetadataValue)> = vec![
        ("general.architecture".into(), MetadataValue::String(arch.into())),
        ("general.name".into(), MetadataValue::String("medllm tiny test model".into())),
        ("general.file_type".into(), MetadataValue::U32(0)),
        (key("context_length"), MetadataValue::U32(spec.n_ctx_train as u32)),
        (key("embedding_length"), MetadataValue::U32(spec.n_embd as u32)),
        (key("block_count"), MetadataValue::U32(spec.n_layer as u32)),
        (key("feed_forward_length"), MetadataValue::U32(spec.n_ff as u32)),
        (key("attention.head_count"), MetadataValue::U32(spec.n_head as u32)),
        (key("attention.head_count_kv"), MetadataValue::U32(spec.n_head_kv as u32)),
        (key("attention.layer_norm_rms_epsilon"), MetadataValue::F32(1e-5)),
        (key("rope.dimension_count"), MetadataValue::U32(head_dim as u32)),
        (key("rope.freq_base"), MetadataValue::F32(10000.0)),
        (key("vocab_size"), MetadataValue::U32(n_vocab as u32)),
        ("tokenizer.ggml.model".into(), MetadataValue::String("llama".into())),
        (
            "tokenizer.ggml.tokens".into(),
            MetadataValue::Array(vocab.iter().map(|t| MetadataValue::String(t.0.clone())).collect()),
        ),
        (
            "tokenizer.ggml.scores".into(),
            MetadataValue::Array(vocab.iter().map(|t| MetadataValue::F32(t.1)).collect()),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            MetadataValue::Array(vocab.iter().map(|t| MetadataValue::I32(t.2)).collect()),
        ),
        ("tokenizer.ggml.bos_token_id".into(), MetadataValue::U32(1)),
        ("tokenizer.ggml.eos_token_id".into(), MetadataValue::U32(2)),
        ("tokenizer.ggml.unknown_token_id".into(), MetadataValue::U32(0)),
        ("tokenizer.ggml.add_bos_token".into(), MetadataValue::Bool(false)),
    ];
    let mut metadata = metadata;
    if spec.chat_template {
        metadata.push(("tokenizer.chat_template".into(), MetadataValue::String(CHAT_TEMPLATE.into())));
    }
    // Sliding windows (by default) far shorter than a 256-token training window, so that
    // they matter.
    match arch {
        "gemma2" => metadata.extend([
            (key("attention.sliding_window"), MetadataValue::U32(spec.sliding_window)),
            (key("attn_logit_softcapping"), MetadataValue::F32(4.0)),
            (key("final_logit_softcapping"), MetadataValue::F32(8.0)),
        ]),
        // Every second layer attends to the whole context (Gemma 3 itself: every sixth).
        "gemma3" => metadata.extend([
            (key("attention.sliding_window"), MetadataValue::U32(spec.sliding_window)),
            (key("attention.sliding_window_pattern"), MetadataValue::U32(2)),
        ]),
        "stablelm" => metadata.push((key("attention.layer_norm_epsilon"), MetadataValue::F32(1e-5))),
        _ => {}
    }

    let (embd, ff, kv) = (spec.n_embd, spec.n_ff, head_dim * spec.n_head_kv);
    // (name, dims, scale of the random values; 0 means all ones, for norm weights)
    let mut layout: Vec<(String, Vec<u64>, f32)> = vec![
        ("token_embd.weight".into(), vec![embd, n_vocab], 1.0),
        ("output_norm.weight".into(), vec![embd], 0.0),
    ];
    if !gemma {
        // The Gemma family ties the output projection to the token embeddings.
        layout.push(("output.weight".into(), vec![embd, n_vocab], 0.5));
    }
    for layer in 0..spec.n_layer {
        let name = |t: &str| format!("blk.{layer}.{t}.weight");
        layout.extend([
            (name("attn_norm"), vec![embd], 0.0),
            (name("attn_q"), vec![embd, embd], 0.2),
            (name("attn_k"), vec![embd, kv], 0.2),
            (name("attn_v"), vec![embd, kv], 0.2),
            (name("attn_output"), vec![embd, embd], 0.2),
            (name("ffn_norm"), vec![embd], 0.0),
        ]);
        // In llama's order, so that the default model keeps its weights (its values are
        // drawn in tensor order).
        if arch == "phi3" {
            // Gate and up projections fused into one matrix, split by the fused SwiGLU.
            layout.push((name("ffn_up"), vec![embd, 2 * ff], 0.2));
        } else {
            layout.extend([(name("ffn_gate"), vec![embd, ff], 0.2), (name("ffn_up"), vec![embd, ff], 0.2)]);
        }
        layout.push((name("ffn_down"), vec![ff, embd], 0.2));
        if matches!(arch, "gemma3" | "qwen3") {
            layout.extend([
                (name("attn_q_norm"), vec![head_dim], 0.0),
                (name("attn_k_norm"), vec![head_dim], 0.0),
            ]);
        }
        if matches!(arch, "gemma2" | "gemma3") {
            layout.extend([
                (name("post_attention_norm"), vec![embd], 0.0),
                (name("post_ffw_norm"), vec![embd], 0.0),
            ]);
        }
        if arch == "stablelm" {
            let bias = |t: &str| format!("blk.{layer}.{t}.bias");
            layout.extend([(bias("attn_norm"), vec![embd], 0.01), (bias("ffn_norm"), vec![embd], 0.01)]);
        }
    }
    if arch == "stablelm" {
        layout.push(("output_norm.bias".into(), vec![embd], 0.01));
    }
    let tensors: Vec<TensorSpec> = layout
        .iter()
        .map(|(name, dims, _)| TensorSpec {
            name: name.clone(),
            dims: dims.clone(),
            ggml_type: GgmlType::F32,
        })
        .collect();

    let mut rng = SplitMix64(spec.seed);
    crate::atomic_file::write_atomically(path, |file| {
        write_gguf(file, &metadata, &tensors, |i, out: &mut dyn Write| {
            let (_, dims, scale) = &layout[i];
            let n: u64 = dims.iter().product();
            let mut bytes = Vec::with_capacity(n as usize * 4);
            for _ in 0..n {
                let value = if *scale == 0.0 { 1.0 } else { scale * rng.next_symmetric() };
                bytes.extend_from_slice(&value.to_le_bytes());
            }
            out.write_all(&bytes)
        })
        .map_err(io::Error::other)
    })
    .map_err(|source| GgufError::Write { source })
}

/// A small deterministic generator, so the same seed gives the same model everywhere.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    fn next_symmetric(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::GgufFile;

    #[test]
    fn tiny_model_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.gguf");
        write_tiny_model(&path, &TinyModelSpec::default()).unwrap();
        let file = GgufFile::open(&path).unwrap();
        assert_eq!(file.architecture(), Some("llama"));
        assert_eq!(file.tensors.len(), 3 + 2 * 9);
        let q = file.tensor("blk.1.attn_q.weight").unwrap();
        assert_eq!(q.dims, vec![64, 64]);
        assert_eq!(q.n_bytes, 64 * 64 * 4);
        assert_eq!(file.tensor("blk.0.attn_k.weight").unwrap().dims, vec![64, 32]);
        let tokens = file.get("tokenizer.ggml.tokens").unwrap().as_array().unwrap();
        assert_eq!(tokens[4].as_str(), Some("<|im_end|>"));
        let last = file.tensors.last().unwrap();
        assert_eq!(last.offset + last.n_bytes, file.file_size);
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, seed: u64| {
            let path = dir.path().join(name);
            write_tiny_model(&path, &TinyModelSpec { seed, ..Default::default() }).unwrap();
            std::fs::read(path).unwrap()
        };
        assert_eq!(write("a.gguf", 1), write("b.gguf", 1));
        assert_ne!(write("c.gguf", 1), write("d.gguf", 2));
    }
}
