//! Where PEFT's module names land in a GGUF model, and the row order of Q and K that
//! llama-family GGUF conversion changes.

/// Which linear layer of a block a PEFT module is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Projection {
    /// `self_attn.q_proj` → `attn_q`.
    Query,
    /// `self_attn.k_proj` → `attn_k`.
    Key,
    /// `self_attn.v_proj` → `attn_v`.
    Value,
    /// `self_attn.o_proj` → `attn_output`.
    Output,
    /// `mlp.gate_proj` → `ffn_gate`.
    Gate,
    /// `mlp.up_proj` → `ffn_up`.
    Up,
    /// `mlp.down_proj` → `ffn_down`.
    Down,
}

/// (PEFT group, PEFT module, GGUF tensor stem, projection).
const PROJECTIONS: &[(&str, &str, &str, Projection)] = &[
    ("self_attn", "q_proj", "attn_q", Projection::Query),
    ("self_attn", "k_proj", "attn_k", Projection::Key),
    ("self_attn", "v_proj", "attn_v", Projection::Value),
    ("self_attn", "o_proj", "attn_output", Projection::Output),
    ("mlp", "gate_proj", "ffn_gate", Projection::Gate),
    ("mlp", "up_proj", "ffn_up", Projection::Up),
    ("mlp", "down_proj", "ffn_down", Projection::Down),
];

/// A LoRA matrix of one block's linear layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LoraSlot {
    /// Block index.
    pub layer: u64,
    /// The linear layer.
    pub projection: Projection,
    /// True for `lora_B` (out × r), false for `lora_A` (r × in).
    pub is_b: bool,
}

impl LoraSlot {
    /// The GGUF name of the base weight: `blk.3.attn_q.weight`.
    pub fn base_tensor(&self) -> String {
        let stem = PROJECTIONS.iter().find(|p| p.3 == self.projection).map_or("", |p| p.2);
        format!("blk.{}.{stem}.weight", self.layer)
    }

    /// The PEFT module path without its model prefix: `layers.3.self_attn.q_proj`.
    pub fn module(&self) -> String {
        let p = PROJECTIONS.iter().find(|p| p.3 == self.projection).unwrap_or(&PROJECTIONS[0]);
        format!("layers.{}.{}.{}", self.layer, p.0, p.1)
    }
}

/// What a PEFT tensor name means for conversion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeftName {
    /// A LoRA matrix of a block's linear layer.
    Lora(LoraSlot),
    /// An adapter on the token embeddings or the output head.
    EmbeddingOrHead,
    /// A DoRA magnitude vector or a LoRA bias: no place in a GGUF LoRA adapter.
    Unrepresentable(&'static str),
    /// Nothing we know.
    Unknown,
}

/// Whether a module name is the token embeddings or the output head, in the names the
/// supported families use.
pub fn is_embedding_or_head(module: &str) -> bool {
    let last = module.rsplit('.').next().unwrap_or(module);
    matches!(last, "embed_tokens" | "lm_head" | "wte" | "tok_embeddings" | "output")
}

/// Reads a PEFT tensor name such as
/// `base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight` (any model prefix before
/// `layers.N`, so multimodal wrappers like `model.language_model.` work too).
pub fn parse_peft_name(name: &str) -> PeftName {
    if name.contains("lora_embedding_") {
        return PeftName::EmbeddingOrHead;
    }
    if name.contains("lora_magnitude_vector") {
        return PeftName::Unrepresentable("a DoRA magnitude vector");
    }
    let (module, is_b) = if let Some(m) = name.strip_suffix(".lora_A.weight") {
        (m, false)
    } else if let Some(m) = name.strip_suffix(".lora_B.weight") {
        (m, true)
    } else if name.ends_with(".lora_B.bias") {
        return PeftName::Unrepresentable("a LoRA bias (lora_bias=True)");
    } else {
        return PeftName::Unknown;
    };
    if is_embedding_or_head(module) {
        return PeftName::EmbeddingOrHead;
    }
    let parts: Vec<&str> = module.split('.').collect();
    let Some(at) = parts.iter().rposition(|p| *p == "layers") else { return PeftName::Unknown };
    let [layer, group, proj] = parts[at + 1..] else { return PeftName::Unknown };
    let Ok(layer) = layer.parse::<u64>() else { return PeftName::Unknown };
    match PROJECTIONS.iter().find(|p| p.0 == group && p.1 == proj) {
        Some(p) => PeftName::Lora(LoraSlot { layer, projection: p.3, is_b }),
        None => PeftName::Unknown,
    }
}

/// Whether GGUF conversion of this architecture reorders the rows of Q and K (llama and
/// Mistral checkpoints use a different rotary layout from the one llama.cpp computes in).
/// `None` for architectures this converter does not know.
pub fn permutes_query_key(architecture: &str) -> Option<bool> {
    match architecture {
        "llama" => Some(true),
        "qwen2" | "gemma" | "gemma2" | "gemma3" => Some(false),
        _ => None,
    }
}

/// Reorders the rows of a row-major `rows × cols` matrix from the Hugging Face rotary
/// layout to llama.cpp's: within each head, the first half and second half of the head's
/// rows are interleaved (row `t·d/2 + j` moves to `2j + t`, d the head size).
pub fn permute_rows_for_rope(values: &[f32], rows: usize, cols: usize, n_heads: usize) -> Option<Vec<f32>> {
    if n_heads == 0 || !rows.is_multiple_of(n_heads) || !(rows / n_heads).is_multiple_of(2) {
        return None;
    }
    let head = rows / n_heads;
    let half = head / 2;
    let mut out = vec![0.0; values.len()];
    for h in 0..n_heads {
        for t in 0..2 {
            for j in 0..half {
                let from = h * head + t * half + j;
                let to = h * head + 2 * j + t;
                out[to * cols..(to + 1) * cols].copy_from_slice(&values[from * cols..(from + 1) * cols]);
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peft_names_map_to_gguf_tensors() {
        let name = "base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight";
        let PeftName::Lora(slot) = parse_peft_name(name) else { panic!("{name}") };
        assert_eq!(slot, LoraSlot { layer: 3, projection: Projection::Query, is_b: false });
        assert_eq!(slot.base_tensor(), "blk.3.attn_q.weight");
        assert_eq!(slot.module(), "layers.3.self_attn.q_proj");
        for (peft, gguf) in [
            ("model.layers.0.self_attn.k_proj", "blk.0.attn_k.weight"),
            ("model.layers.1.self_attn.v_proj", "blk.1.attn_v.weight"),
            ("model.layers.12.self_attn.o_proj", "blk.12.attn_output.weight"),
            ("model.layers.2.mlp.gate_proj", "blk.2.ffn_gate.weight"),
            ("model.layers.2.mlp.up_proj", "blk.2.ffn_up.weight"),
            ("model.language_model.layers.5.mlp.down_proj", "blk.5.ffn_down.weight"),
        ] {
            let PeftName::Lora(slot) = parse_peft_name(&format!("base_model.model.{peft}.lora_B.weight"))
            else {
                panic!("{peft}")
            };
            assert!(slot.is_b);
            assert_eq!(slot.base_tensor(), gguf);
        }
        assert_eq!(parse_peft_name("base_model.model.lm_head.lora_A.weight"), PeftName::EmbeddingOrHead);
        assert_eq!(
            parse_peft_name("base_model.model.model.embed_tokens.lora_embedding_A"),
            PeftName::EmbeddingOrHead
        );
        assert!(matches!(
            parse_peft_name("base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector"),
            PeftName::Unrepresentable(_)
        ));
        assert_eq!(
            parse_peft_name("base_model.model.model.layers.0.mlp.q_proj.lora_A.weight"),
            PeftName::Unknown
        );
        assert_eq!(
            parse_peft_name("base_model.model.model.layers.x.mlp.up_proj.lora_A.weight"),
            PeftName::Unknown
        );
        assert_eq!(parse_peft_name("model.norm.weight"), PeftName::Unknown);
    }

    #[test]
    fn rope_permutation_interleaves_head_halves() {
        // 2 heads of 4 rows, 1 column: rows are their own indices.
        let rows: Vec<f32> = (0..8).map(|r| r as f32).collect();
        let permuted = permute_rows_for_rope(&rows, 8, 1, 2).unwrap();
        // Head 0: halves [0 1] and [2 3] interleave to 0 2 1 3; head 1 likewise.
        assert_eq!(permuted, vec![0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]);
        // Whole rows move together.
        let wide: Vec<f32> = (0..8).flat_map(|r| [r as f32, 10.0 + r as f32]).collect();
        let permuted = permute_rows_for_rope(&wide, 8, 2, 2).unwrap();
        assert_eq!(&permuted[2..4], &[2.0, 12.0]);
        assert!(permute_rows_for_rope(&rows, 8, 1, 3).is_none(), "heads must divide the rows");
    }
}
