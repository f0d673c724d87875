//! What llama.cpp's loader asserts on instead of refusing, checked in Rust before a file is
//! handed to it. llama.cpp throws (a clean load error) on most bad metadata, but aborts the
//! whole process (`GGML_ASSERT`, exit 134) on some hyperparameters, and some vocabularies
//! load and then abort or throw through the C API at the first tokenization. Those cases are
//! refused here with the key that is wrong, so a damaged or hand-edited model is an error.
//!
//! The rules follow the pinned llama.cpp: `llama_model_base::load_hparams` (layer and
//! expert counts, rope scaling type), ggml's operators (norm epsilons, head ratios),
//! `llama_vocab::impl::load` and the tokenizers (duplicate tokens, byte tokens, byte
//! fallback). docs/gguf-toolchain.md lists them with the reason for each.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashSet};

use super::{GgufError, GgufFile, MetadataValue};

/// Which parts of a model file llama.cpp will read, and so which must be checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadScope {
    /// Hyperparameters and tensors only: what the quantizer reads.
    Hyperparameters,
    /// The vocabulary only: a `vocab_only` load, for tokenizing.
    Vocabulary,
    /// Everything: a model loaded to run.
    Everything,
}

/// llama.cpp's `LLAMA_MAX_LAYERS`: more blocks abort its loader.
pub const MAX_BLOCKS: u64 = 512;
/// llama.cpp's `LLAMA_MAX_EXPERTS`.
pub const MAX_EXPERTS: u64 = 1024;
/// The values of `<arch>.rope.scaling.type` llama.cpp knows; any other aborts its loader.
const ROPE_SCALING_TYPES: &[&str] = &["none", "linear", "yarn", "longrope"];

/// How a tokenizer family handles bytes, which decides what its vocabulary must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenizerFamily {
    /// SentencePiece BPE: falls back to `<0xXX>` tokens (or one-character tokens) for any
    /// byte it cannot merge, and throws through the C API when one is missing.
    SentencePiece,
    /// WordPiece: byte tokens make llama.cpp abort when it renders them.
    WordPiece,
    /// Byte-level BPE, Unigram, RWKV, PLaMo-2: render byte tokens from `<0xXX>` text.
    ByteAware,
}

/// `tokenizer.ggml.model` values llama.cpp loads, and their families.
const TOKENIZERS: &[(&str, TokenizerFamily)] = &[
    ("llama", TokenizerFamily::SentencePiece),
    ("bert", TokenizerFamily::WordPiece),
    ("gpt2", TokenizerFamily::ByteAware),
    ("gemma4", TokenizerFamily::ByteAware),
    ("hybriddna", TokenizerFamily::ByteAware),
    ("whitespace", TokenizerFamily::ByteAware),
    ("t5", TokenizerFamily::ByteAware),
    ("rwkv", TokenizerFamily::ByteAware),
    ("plamo2", TokenizerFamily::ByteAware),
];

/// llama.cpp's token types run from 0 (undefined) to 6 (byte).
const TOKEN_TYPE_BYTE: i64 = 6;

/// Decoder-only transformers whose layout is known exactly: every block has attention with
/// at least one head and one key/value head, blocks are numbered `blk.0` to
/// `blk.<block_count - 1>`, and the token embeddings are `embedding_length` wide. For other
/// architectures only the rules that hold for all of llama.cpp's loaders apply.
const DENSE_TRANSFORMERS: &[(&str, &str)] = &[
    ("llama", "attention.layer_norm_rms_epsilon"),
    ("mistral3", "attention.layer_norm_rms_epsilon"),
    ("qwen2", "attention.layer_norm_rms_epsilon"),
    ("qwen3", "attention.layer_norm_rms_epsilon"),
    ("gemma", "attention.layer_norm_rms_epsilon"),
    ("gemma2", "attention.layer_norm_rms_epsilon"),
    ("gemma3", "attention.layer_norm_rms_epsilon"),
    ("phi3", "attention.layer_norm_rms_epsilon"),
    ("smollm3", "attention.layer_norm_rms_epsilon"),
    ("granite", "attention.layer_norm_rms_epsilon"),
    ("olmo2", "attention.layer_norm_rms_epsilon"),
    ("starcoder2", "attention.layer_norm_epsilon"),
    ("phi2", "attention.layer_norm_epsilon"),
    ("gpt2", "attention.layer_norm_epsilon"),
];

/// A metadata key and what is wrong with it.
#[derive(Debug)]
struct Problem {
    key: String,
    problem: String,
}

fn problem(key: &str, problem: impl Into<String>) -> Problem {
    Problem { key: key.to_string(), problem: problem.into() }
}

type Checked<T = ()> = Result<T, Problem>;

impl GgufFile {
    /// Checks that llama.cpp can load the parts of this model that `scope` names without
    /// aborting, and without a vocabulary that aborts at the first tokenization.
    pub fn check_loadable(&self, scope: LoadScope) -> Result<(), GgufError> {
        let checked = match scope {
            LoadScope::Hyperparameters => check_hyperparameters(self),
            LoadScope::Vocabulary => check_vocabulary(self).map(|_| ()),
            LoadScope::Everything => check_hyperparameters(self).and_then(|()| {
                let n_tokens = check_vocabulary(self)?;
                check_embedding_rows(self, n_tokens)
            }),
        };
        checked.map_err(|p| GgufError::Unloadable { path: self.path.clone(), key: p.key, problem: p.problem })
    }
}

fn check_hyperparameters(file: &GgufFile) -> Checked {
    let arch = file.architecture().filter(|a| !a.is_empty()).ok_or_else(|| {
        problem("general.architecture", "is missing: the file does not say what model it is")
    })?;
    let key = |name: &str| format!("{arch}.{name}");
    let n_blocks =
        count(file, &key("block_count"))?.ok_or_else(|| problem(&key("block_count"), "is missing"))?;
    if !(1..=MAX_BLOCKS).contains(&n_blocks) {
        return Err(problem(
            &key("block_count"),
            format!("is {n_blocks}; llama.cpp loads models of 1 to {MAX_BLOCKS} blocks"),
        ));
    }
    for name in ["context_length", "embedding_length"] {
        match count(file, &key(name))? {
            None => return Err(problem(&key(name), "is missing")),
            Some(0) => return Err(problem(&key(name), "is 0")),
            Some(n) if n > u64::from(u32::MAX) => {
                return Err(problem(&key(name), format!("is {n}, beyond what llama.cpp reads (32 bits)")));
            }
            Some(_) => {}
        }
    }
    if let Some(nextn) = count(file, &key("nextn_predict_layers"))?
        && nextn > n_blocks
    {
        return Err(problem(
            &key("nextn_predict_layers"),
            format!("is {nextn}, more than the {n_blocks} blocks (block_count)"),
        ));
    }
    check_experts(file, arch, n_blocks)?;
    if let Some(value) = file.get(&key("rope.scaling.type")) {
        let name = value.as_str().ok_or_else(|| problem(&key("rope.scaling.type"), "is not a string"))?;
        if !ROPE_SCALING_TYPES.contains(&name) {
            return Err(problem(
                &key("rope.scaling.type"),
                format!("is {name:?}; llama.cpp knows {}", ROPE_SCALING_TYPES.join(", ")),
            ));
        }
    }
    check_floats(file, arch)?;
    check_heads(file, arch, n_blocks)?;
    if let Some((_, epsilon)) = DENSE_TRANSFORMERS.iter().find(|(name, _)| *name == arch) {
        check_dense_transformer(file, arch, n_blocks, epsilon)?;
    }
    Ok(())
}

/// The expert counts `load_hparams` asserts on (a mixture-of-experts model routes each token
/// to `expert_used_count` of its `expert_count` experts, optionally within groups).
fn check_experts(file: &GgufFile, arch: &str, n_blocks: u64) -> Checked {
    let key = |name: &str| format!("{arch}.{name}");
    let n_expert = count(file, &key("expert_count"))?.unwrap_or(0);
    // These two treat a single expert as a dense model and ignore the expert counts.
    if matches!(arch, "hunyuan_vl" | "hunyuan-dense") && n_expert <= 1 {
        return Ok(());
    }
    if n_expert > MAX_EXPERTS {
        return Err(problem(
            &key("expert_count"),
            format!("is {n_expert}; llama.cpp allows at most {MAX_EXPERTS}"),
        ));
    }
    let used = per_block(file, &key("expert_used_count"), n_blocks)?;
    let used_max = used.as_ref().and_then(|u| u.iter().max().copied()).unwrap_or(0);
    let groups = count(file, &key("expert_group_count"))?.unwrap_or(0);
    let group_used = count(file, &key("expert_group_used_count"))?.unwrap_or(0);
    if n_expert == 0 {
        if used_max > 0 {
            return Err(problem(
                &key("expert_used_count"),
                format!("is {used_max}, but the model has no experts (expert_count is 0 or missing)"),
            ));
        }
        if groups > 0 {
            return Err(problem(&key("expert_group_count"), "is set, but the model has no experts"));
        }
        return Ok(());
    }
    if used_max == 0 {
        return Err(problem(
            &key("expert_used_count"),
            format!("is missing or 0, but the model has {n_expert} experts (expert_count)"),
        ));
    }
    if used_max > n_expert {
        return Err(problem(
            &key("expert_used_count"),
            format!("is {used_max}, more than the {n_expert} experts (expert_count)"),
        ));
    }
    if groups >= n_expert {
        return Err(problem(
            &key("expert_group_count"),
            format!("is {groups}; it must be smaller than the {n_expert} experts"),
        ));
    }
    if groups > 1 {
        if !n_expert.is_multiple_of(groups) {
            return Err(problem(
                &key("expert_group_count"),
                format!("is {groups}, which does not divide the {n_expert} experts"),
            ));
        }
        if group_used == 0 || group_used >= groups {
            return Err(problem(
                &key("expert_group_used_count"),
                format!("is {group_used}; it must be between 1 and {} ({groups} groups)", groups - 1),
            ));
        }
    }
    Ok(())
}

/// Every float hyperparameter must be a number: a NaN or infinite epsilon aborts ggml's norm
/// operators, and a NaN anywhere else makes every output NaN. Epsilons and rope bases must
/// also be positive.
fn check_floats(file: &GgufFile, arch: &str) -> Checked {
    let prefix = format!("{arch}.");
    for (key, value) in &file.metadata {
        let Some(name) = key.strip_prefix(&prefix) else { continue };
        let values: Vec<f64> = match value {
            MetadataValue::Array(items) => items.iter().filter_map(as_float).collect(),
            other => as_float(other).into_iter().collect(),
        };
        if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
            return Err(problem(key, format!("is {bad}, not a finite number")));
        }
        let must_be_positive = name.ends_with("epsilon") || name.starts_with("rope.freq_base");
        if must_be_positive && let Some(bad) = values.iter().find(|v| **v <= 0.0) {
            return Err(problem(key, format!("is {bad}; it must be greater than 0")));
        }
    }
    Ok(())
}

/// Attention heads, per block: key/value heads are shared by groups of query heads, so
/// their number must divide the query heads' (ggml's attention aborts otherwise).
fn check_heads(file: &GgufFile, arch: &str, n_blocks: u64) -> Checked {
    let head_key = format!("{arch}.attention.head_count");
    let kv_key = format!("{arch}.attention.head_count_kv");
    let heads = per_block(file, &head_key, n_blocks)?.unwrap_or_else(|| vec![0; n_blocks as usize]);
    let kv_heads = per_block(file, &kv_key, n_blocks)?.unwrap_or_else(|| heads.clone());
    for (block, (&n_head, &n_kv)) in heads.iter().zip(&kv_heads).enumerate() {
        let at =
            if heads.iter().all(|h| *h == n_head) { String::new() } else { format!(" in block {block}") };
        // Blocks without attention (recurrent layers of hybrid models) have no heads to share.
        if n_head == 0 {
            continue;
        }
        if n_kv > n_head {
            return Err(problem(&kv_key, format!("is {n_kv}{at}, more than the {n_head} attention heads")));
        }
        if n_kv > 0 && !n_head.is_multiple_of(n_kv) {
            return Err(problem(
                &kv_key,
                format!("is {n_kv}{at}, which does not divide the {n_head} attention heads"),
            ));
        }
    }
    Ok(())
}

/// What holds for the architectures of `DENSE_TRANSFORMERS`.
fn check_dense_transformer(file: &GgufFile, arch: &str, n_blocks: u64, epsilon: &str) -> Checked {
    let key = |name: &str| format!("{arch}.{name}");
    if file.get(&key(epsilon)).is_none() {
        return Err(problem(&key(epsilon), "is missing"));
    }
    let heads = per_block(file, &key("attention.head_count"), n_blocks)?
        .ok_or_else(|| problem(&key("attention.head_count"), "is missing"))?;
    let kv_heads =
        per_block(file, &key("attention.head_count_kv"), n_blocks)?.unwrap_or_else(|| heads.clone());
    if heads.contains(&0) {
        return Err(problem(
            &key("attention.head_count"),
            "is 0; every block of this architecture has attention",
        ));
    }
    if kv_heads.contains(&0) {
        return Err(problem(
            &key("attention.head_count_kv"),
            "is 0; every block of this architecture has attention",
        ));
    }
    let n_embd = count(file, &key("embedding_length"))?.unwrap_or(0);
    if file.get(&key("attention.key_length")).is_none() && !n_embd.is_multiple_of(heads[0]) {
        return Err(problem(
            &key("embedding_length"),
            format!("is {n_embd}, which does not split into {} attention heads of whole size", heads[0]),
        ));
    }
    // Blocks are numbered from 0 without gaps; a count that disagrees with the tensors makes
    // llama.cpp look for tensors that are not there, or leave some unused.
    let blocks: BTreeSet<u64> = file
        .tensors
        .iter()
        .filter_map(|t| t.name.strip_prefix("blk.")?.split('.').next()?.parse().ok())
        .collect();
    let expected: BTreeSet<u64> = (0..n_blocks).collect();
    if blocks != expected {
        let found = match (blocks.first(), blocks.last()) {
            (Some(first), Some(last)) if blocks.len() as u64 == last - first + 1 => {
                format!("blocks {first} to {last}")
            }
            (Some(_), Some(_)) => format!("{} blocks with gaps in their numbering", blocks.len()),
            _ => "no block tensors".to_string(),
        };
        return Err(problem(
            &key("block_count"),
            format!("is {n_blocks}, but the file's tensors hold {found}"),
        ));
    }
    if let Some(embd) = file.tensor("token_embd.weight")
        && embd.dims.first() != Some(&n_embd)
    {
        return Err(problem(
            &key("embedding_length"),
            format!("is {n_embd}, but token_embd.weight has rows of {}", embd.dims[0]),
        ));
    }
    Ok(())
}

/// The vocabulary as `llama_vocab::impl::load` and the tokenizers use it; returns the
/// number of tokens.
fn check_vocabulary(file: &GgufFile) -> Checked<usize> {
    const MODEL: &str = "tokenizer.ggml.model";
    const TOKENS: &str = "tokenizer.ggml.tokens";
    let model = file.get_str(MODEL).ok_or_else(|| problem(MODEL, "is missing or not a string"))?;
    if model == "none" || model == "no_vocab" {
        return Err(problem(
            MODEL,
            format!(
                "is {model:?}: the model has no tokenizer, and medllm needs one to turn text into tokens"
            ),
        ));
    }
    let family =
        TOKENIZERS.iter().find(|(name, _)| *name == model).map(|(_, family)| *family).ok_or_else(|| {
            let known: Vec<&str> = TOKENIZERS.iter().map(|(name, _)| *name).collect();
            problem(MODEL, format!("is {model:?}; llama.cpp knows {}", known.join(", ")))
        })?;

    let items =
        file.get(TOKENS).and_then(MetadataValue::as_array).ok_or_else(|| problem(TOKENS, "is missing"))?;
    let tokens: Vec<&str> = items
        .iter()
        .map(|item| item.as_str().ok_or_else(|| problem(TOKENS, "holds something other than strings")))
        .collect::<Result<_, _>>()?;
    if tokens.is_empty() {
        return Err(problem(TOKENS, "is empty"));
    }
    if tokens.iter().all(|t| t.is_empty()) {
        return Err(problem(TOKENS, format!("holds {} tokens, all of them empty strings", tokens.len())));
    }
    if i32::try_from(tokens.len()).is_err() {
        return Err(problem(TOKENS, format!("holds {} tokens; token ids are 32-bit", tokens.len())));
    }
    // llama.cpp renames an empty token `[EMPTY_<id>]` and asserts that no text is repeated.
    let mut seen: HashSet<Cow<'_, str>> = HashSet::with_capacity(tokens.len());
    for (id, token) in tokens.iter().enumerate() {
        let text = if token.is_empty() { Cow::Owned(format!("[EMPTY_{id}]")) } else { Cow::Borrowed(*token) };
        if !seen.insert(text) {
            return Err(problem(
                TOKENS,
                format!("holds token {id}'s text twice (each token's text must be unique)"),
            ));
        }
    }

    if let Some(value) = file.get("tokenizer.ggml.scores") {
        let scores = value.as_array().ok_or_else(|| problem("tokenizer.ggml.scores", "is not an array"))?;
        if scores.len() < tokens.len() {
            return Err(problem(
                "tokenizer.ggml.scores",
                format!("has {} entries for {} tokens", scores.len(), tokens.len()),
            ));
        }
        // The tokenizers sort candidates by score; NaN breaks the ordering they rely on.
        if let Some(id) =
            scores.iter().take(tokens.len()).position(|s| as_float(s).is_some_and(|s| !s.is_finite()))
        {
            return Err(problem(
                "tokenizer.ggml.scores",
                format!("holds a score for token {id} that is not finite"),
            ));
        }
    }
    let mut byte_tokens = Vec::new();
    if let Some(value) = file.get("tokenizer.ggml.token_type") {
        let types =
            value.as_array().ok_or_else(|| problem("tokenizer.ggml.token_type", "is not an array"))?;
        if types.len() < tokens.len() {
            return Err(problem(
                "tokenizer.ggml.token_type",
                format!("has {} entries for {} tokens", types.len(), tokens.len()),
            ));
        }
        for (id, kind) in types.iter().take(tokens.len()).enumerate() {
            let kind = as_integer(kind).filter(|k| (0..=TOKEN_TYPE_BYTE).contains(k)).ok_or_else(|| {
                problem("tokenizer.ggml.token_type", format!("gives token {id} a type outside 0 to 6"))
            })?;
            if kind == TOKEN_TYPE_BYTE {
                byte_tokens.push(id);
            }
        }
    }
    check_byte_tokens(&tokens, &byte_tokens, family, &seen)?;
    Ok(tokens.len())
}

/// Byte tokens are rendered from their `<0xXX>` text; a SentencePiece vocabulary must have a
/// token for every byte that valid UTF-8 text can hold, because its tokenizer spells out
/// unknown characters byte by byte.
fn check_byte_tokens(
    tokens: &[&str],
    byte_tokens: &[usize],
    family: TokenizerFamily,
    texts: &HashSet<Cow<'_, str>>,
) -> Checked {
    const TYPES: &str = "tokenizer.ggml.token_type";
    for &id in byte_tokens {
        if family == TokenizerFamily::WordPiece {
            return Err(problem(
                TYPES,
                format!(
                    "marks token {id} as a byte token, which a WordPiece (bert) vocabulary cannot render"
                ),
            ));
        }
        if !is_byte_token_text(tokens[id]) {
            return Err(problem(
                TYPES,
                format!("marks token {id} as a byte token, but its text is not of the form <0xXX>"),
            ));
        }
    }
    if family == TokenizerFamily::SentencePiece {
        let utf8_bytes = (0x00..=0xBFu8).chain(0xC2..=0xF4);
        for byte in utf8_bytes {
            let hex = format!("<0x{byte:02X}>");
            let plain = (byte < 0x80).then(|| char::from(byte).to_string());
            if !texts.contains(hex.as_str()) && !plain.is_some_and(|p| texts.contains(p.as_str())) {
                return Err(problem(
                    "tokenizer.ggml.tokens",
                    format!(
                        "has no token for byte 0x{byte:02X} ({hex}); a SentencePiece (llama) vocabulary needs one \
                         for every byte, or llama.cpp aborts on text it cannot otherwise spell"
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn is_byte_token_text(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 6
        && text.starts_with("<0x")
        && bytes[5] == b'>'
        && bytes[3].is_ascii_hexdigit()
        && bytes[4].is_ascii_hexdigit()
}

/// The token embeddings hold one row per token.
fn check_embedding_rows(file: &GgufFile, n_tokens: usize) -> Checked {
    let Some(arch) = file.architecture() else { return Ok(()) };
    if !DENSE_TRANSFORMERS.iter().any(|(name, _)| *name == arch) {
        return Ok(());
    }
    if let Some(embd) = file.tensor("token_embd.weight")
        && embd.dims.get(1) != Some(&(n_tokens as u64))
    {
        return Err(problem(
            "tokenizer.ggml.tokens",
            format!(
                "holds {n_tokens} tokens, but token_embd.weight has {} rows",
                embd.dims.get(1).copied().unwrap_or(1)
            ),
        ));
    }
    Ok(())
}

/// A non-negative integer value, `None` when absent.
fn count(file: &GgufFile, key: &str) -> Checked<Option<u64>> {
    match file.get(key) {
        None => Ok(None),
        Some(value) => value
            .as_u64()
            .map(Some)
            .ok_or_else(|| problem(key, format!("is {}, not a non-negative integer", value.summary()))),
    }
}

/// A value llama.cpp reads per block: one number for all blocks, or an array with one per
/// block. `None` when absent.
fn per_block(file: &GgufFile, key: &str, n_blocks: u64) -> Checked<Option<Vec<u64>>> {
    let Some(value) = file.get(key) else { return Ok(None) };
    let not_a_count = || problem(key, "holds something other than non-negative integers");
    let values = match value {
        MetadataValue::Array(items) => {
            if items.len() as u64 != n_blocks {
                return Err(problem(
                    key,
                    format!("has {} entries, but the model has {n_blocks} blocks (block_count)", items.len()),
                ));
            }
            items.iter().map(|item| item.as_u64().ok_or_else(not_a_count)).collect::<Result<Vec<_>, _>>()?
        }
        other => vec![other.as_u64().ok_or_else(not_a_count)?; n_blocks as usize],
    };
    if let Some(big) = values.iter().find(|v| **v > u64::from(u32::MAX)) {
        return Err(problem(key, format!("is {big}, beyond what llama.cpp reads (32 bits)")));
    }
    Ok(Some(values))
}

fn as_float(value: &MetadataValue) -> Option<f64> {
    match *value {
        MetadataValue::F32(v) => Some(f64::from(v)),
        MetadataValue::F64(v) => Some(v),
        _ => None,
    }
}

fn as_integer(value: &MetadataValue) -> Option<i64> {
    match *value {
        MetadataValue::I8(v) => Some(v.into()),
        MetadataValue::I16(v) => Some(v.into()),
        MetadataValue::I32(v) => Some(v.into()),
        MetadataValue::I64(v) => Some(v),
        ref other => other.as_u64().and_then(|v| i64::try_from(v).ok()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::{TinyModelSpec, write_tiny_model};

    fn tiny() -> GgufFile {
        static FILE: std::sync::OnceLock<(tempfile::TempDir, GgufFile)> = std::sync::OnceLock::new();
        let (_, file) = FILE.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("tiny.gguf");
            write_tiny_model(&path, &TinyModelSpec::default()).unwrap();
            let file = GgufFile::open(&path).unwrap();
            (dir, file)
        });
        file.clone()
    }

    /// The tiny model with `key` set to `value` (`None` removes it).
    fn with(key: &str, value: Option<MetadataValue>) -> GgufFile {
        let mut file = tiny();
        file.metadata.retain(|(k, _)| k != key);
        if let Some(value) = value {
            file.metadata.push((key.to_string(), value));
        }
        file
    }

    fn refusal(file: &GgufFile, scope: LoadScope) -> (String, String) {
        match file.check_loadable(scope) {
            Err(GgufError::Unloadable { key, problem, .. }) => (key, problem),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    fn tokens_with(edit: impl FnOnce(&mut Vec<MetadataValue>)) -> GgufFile {
        let mut file = tiny();
        let (_, value) = file.metadata.iter_mut().find(|(k, _)| k == "tokenizer.ggml.tokens").unwrap();
        let MetadataValue::Array(items) = value else { panic!("tokens are an array") };
        edit(items);
        file
    }

    #[test]
    fn the_tiny_model_is_loadable_in_every_scope() {
        for scope in [LoadScope::Hyperparameters, LoadScope::Vocabulary, LoadScope::Everything] {
            tiny().check_loadable(scope).unwrap();
        }
    }

    /// Each case is a value llama.cpp aborts on (or that makes its vocabulary abort later);
    /// each must be refused, naming the key.
    #[test]
    fn values_llama_cpp_aborts_on_are_refused_with_their_key() {
        use MetadataValue::{F32, I32, String as Text, U32};
        let cases: Vec<(&str, Option<MetadataValue>, &str)> = vec![
            ("llama.block_count", Some(U32(0)), "1 to 512"),
            ("llama.block_count", Some(U32(1 << 31)), "1 to 512"),
            ("llama.block_count", Some(U32(u32::MAX)), "1 to 512"),
            ("llama.block_count", Some(U32(3)), "blocks 0 to 1"),
            ("llama.block_count", Some(U32(1)), "blocks 0 to 1"),
            ("llama.block_count", Some(I32(-1)), "non-negative integer"),
            ("llama.block_count", None, "missing"),
            ("llama.context_length", Some(U32(0)), "is 0"),
            ("llama.embedding_length", Some(U32(0)), "is 0"),
            ("llama.embedding_length", Some(U32(66)), "does not split into 4"),
            ("llama.expert_used_count", Some(U32(2)), "no experts"),
            ("llama.expert_count", Some(U32(2000)), "at most 1024"),
            ("llama.expert_group_count", Some(U32(2)), "no experts"),
            ("llama.nextn_predict_layers", Some(U32(5)), "more than the 2 blocks"),
            ("llama.rope.scaling.type", Some(Text("bogus".into())), "linear"),
            ("llama.attention.layer_norm_rms_epsilon", Some(F32(f32::NAN)), "not a finite number"),
            ("llama.attention.layer_norm_rms_epsilon", Some(F32(f32::NEG_INFINITY)), "not a finite number"),
            ("llama.attention.layer_norm_rms_epsilon", Some(F32(-1.0)), "greater than 0"),
            ("llama.attention.layer_norm_rms_epsilon", Some(F32(0.0)), "greater than 0"),
            ("llama.attention.layer_norm_rms_epsilon", None, "missing"),
            ("llama.rope.freq_base", Some(F32(f32::INFINITY)), "not a finite number"),
            ("llama.rope.freq_base", Some(F32(0.0)), "greater than 0"),
            ("llama.rope.scaling.factor", Some(F32(f32::NAN)), "not a finite number"),
            ("llama.attention.head_count", Some(U32(0)), "is 0"),
            ("llama.attention.head_count_kv", Some(U32(0)), "is 0"),
            ("llama.attention.head_count_kv", Some(U32(3)), "does not divide"),
            ("llama.attention.head_count_kv", Some(U32(8)), "more than the 4"),
            ("llama.attention.head_count", Some(MetadataValue::Array(vec![U32(4)])), "2 blocks"),
            ("general.architecture", None, "missing"),
        ];
        for (key, value, expected) in cases {
            let file = with(key, value.clone());
            let (found_key, problem) = refusal(&file, LoadScope::Hyperparameters);
            assert_eq!(found_key, key, "{value:?}: {problem}");
            assert!(problem.contains(expected), "{key} = {value:?}: {problem}");
        }
    }

    #[test]
    fn expert_counts_follow_the_loader() {
        use MetadataValue::U32;
        let mut file = with("llama.expert_count", Some(U32(4)));
        let (key, problem) = refusal(&file, LoadScope::Hyperparameters);
        assert_eq!(key, "llama.expert_used_count");
        assert!(problem.contains("missing or 0, but the model has 4 experts"), "{problem}");
        file.metadata.push(("llama.expert_used_count".into(), U32(8)));
        assert!(refusal(&file, LoadScope::Hyperparameters).1.contains("more than the 4 experts"));
        file.metadata.retain(|(k, _)| k != "llama.expert_used_count");
        file.metadata.push(("llama.expert_used_count".into(), U32(2)));
        file.metadata.push(("llama.expert_group_count".into(), U32(3)));
        assert!(refusal(&file, LoadScope::Hyperparameters).1.contains("does not divide the 4 experts"));
        file.metadata.retain(|(k, _)| k != "llama.expert_group_count");
        file.metadata.push(("llama.expert_group_count".into(), U32(2)));
        assert_eq!(refusal(&file, LoadScope::Hyperparameters).0, "llama.expert_group_used_count");
        file.metadata.push(("llama.expert_group_used_count".into(), U32(1)));
        // Consistent expert counts pass this check (the tensors then decide, in llama.cpp).
        check_experts(&file, "llama", 2).unwrap();
    }

    #[test]
    fn vocabularies_that_abort_at_tokenization_are_refused() {
        use MetadataValue::{F32, I32, String as Text};
        let vocab = |file: &GgufFile| refusal(file, LoadScope::Vocabulary);
        for (value, expected) in [
            ("none", "no tokenizer"),
            ("no_vocab", "no tokenizer"),
            ("", "llama.cpp knows"),
            ("bogus", "llama.cpp knows"),
        ] {
            let (key, problem) = vocab(&with("tokenizer.ggml.model", Some(Text(value.into()))));
            assert_eq!(key, "tokenizer.ggml.model");
            assert!(problem.contains(expected), "{value}: {problem}");
        }
        // The tiny vocabulary has byte tokens, which a WordPiece tokenizer cannot render.
        let (key, problem) = vocab(&with("tokenizer.ggml.model", Some(Text("bert".into()))));
        assert_eq!(key, "tokenizer.ggml.token_type");
        assert!(problem.contains("WordPiece"), "{problem}");

        let all_empty = tokens_with(|items| items.iter_mut().for_each(|t| *t = Text(String::new())));
        assert!(vocab(&all_empty).1.contains("all of them empty"));
        assert!(vocab(&tokens_with(Vec::clear)).1.contains("is empty"));
        let duplicate = tokens_with(|items| items[300] = items[299].clone());
        assert!(vocab(&duplicate).1.contains("token 300's text twice"), "{:?}", vocab(&duplicate));
        // One empty token is renamed by llama.cpp, not a duplicate of another empty one.
        let one_empty = tokens_with(|items| items[300] = Text(String::new()));
        one_empty.check_loadable(LoadScope::Vocabulary).unwrap();
        let bad_byte_text = tokens_with(|items| items[5 + 0x0A] = Text("<0xZZ>".into()));
        assert!(vocab(&bad_byte_text).1.contains("not of the form <0xXX>"), "{:?}", vocab(&bad_byte_text));

        let mut missing_byte = tokens_with(|items| items[5 + 0xE9] = Text("\u{e9}x".into()));
        let (_, value) =
            missing_byte.metadata.iter_mut().find(|(k, _)| k == "tokenizer.ggml.token_type").unwrap();
        let MetadataValue::Array(types) = value else { panic!() };
        types[5 + 0xE9] = I32(1);
        assert!(vocab(&missing_byte).1.contains("no token for byte 0xE9"), "{:?}", vocab(&missing_byte));

        let mut bad_type = tiny();
        let (_, value) =
            bad_type.metadata.iter_mut().find(|(k, _)| k == "tokenizer.ggml.token_type").unwrap();
        let MetadataValue::Array(types) = value else { panic!() };
        types[7] = I32(99);
        assert!(vocab(&bad_type).1.contains("outside 0 to 6"));
        let mut nan_score = tiny();
        let (_, value) = nan_score.metadata.iter_mut().find(|(k, _)| k == "tokenizer.ggml.scores").unwrap();
        let MetadataValue::Array(scores) = value else { panic!() };
        scores[300] = F32(f32::NAN);
        assert!(vocab(&nan_score).1.contains("token 300 that is not finite"));
    }

    #[test]
    fn the_vocabulary_must_fill_the_embedding_rows() {
        let mut shorter = tokens_with(|items| items.push(MetadataValue::String("extra".into())));
        for (key, extra) in [
            ("tokenizer.ggml.scores", MetadataValue::F32(0.0)),
            ("tokenizer.ggml.token_type", MetadataValue::I32(1)),
        ] {
            let (_, MetadataValue::Array(items)) =
                shorter.metadata.iter_mut().find(|(k, _)| k == key).unwrap()
            else {
                panic!("{key} is an array")
            };
            items.push(extra);
        }
        shorter.check_loadable(LoadScope::Vocabulary).unwrap();
        let (key, problem) = refusal(&shorter, LoadScope::Everything);
        assert_eq!(key, "tokenizer.ggml.tokens");
        assert!(problem.contains("561 tokens, but token_embd.weight has 560 rows"), "{problem}");
    }

    #[test]
    fn the_quantizer_scope_ignores_the_vocabulary() {
        let file = with("tokenizer.ggml.model", Some(MetadataValue::String("none".into())));
        file.check_loadable(LoadScope::Hyperparameters).unwrap();
        assert_eq!(refusal(&file, LoadScope::Everything).0, "tokenizer.ggml.model");
    }
}
