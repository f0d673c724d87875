//! A GGUF LoRA adapter checked against the base model it is meant for, in pure Rust: the
//! file is an adapter, of the base's architecture, and each `<weight>.lora_a`/`.lora_b` pair
//! fits the base weight it changes. Loading, merging and packaging share these rules.

use super::{GgufFile, MetadataValue, TensorInfo};

/// One base weight an adapter changes: W' = W + scale · B·A.
#[derive(Debug, Clone, Copy)]
pub struct LoraPair<'a> {
    /// The base tensor, such as `blk.0.attn_q.weight`.
    pub weight: &'a str,
    /// A: ggml dims (in, rank).
    pub a: &'a TensorInfo,
    /// B: ggml dims (rank, out).
    pub b: &'a TensorInfo,
    /// The shared rank.
    pub rank: u64,
}

/// Why a file cannot serve as a LoRA adapter of a base model.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AdapterProblem {
    /// A full model, or some other GGUF.
    #[error(
        "it is not a LoRA adapter (general.type = {general_type}, adapter.type = {adapter_type}; an adapter has adapter and lora)"
    )]
    NotLora {
        /// `general.type`, quoted, or `missing`.
        general_type: String,
        /// `adapter.type`, quoted, or `missing`.
        adapter_type: String,
    },
    /// Made for another architecture.
    #[error("it is for architecture {adapter}, the base model is {base}")]
    Architecture {
        /// The adapter's `general.architecture`.
        adapter: String,
        /// The base's.
        base: String,
    },
    /// `adapter.lora.alpha` is not a finite number.
    #[error("adapter.lora.alpha is {0}, not a finite number")]
    Alpha(String),
    /// A tensor that is neither A nor B of a pair.
    #[error("tensor {name} is not a LoRA matrix (names end in .lora_a or .lora_b)")]
    UnknownTensor {
        /// The tensor.
        name: String,
    },
    /// A without B or B without A.
    #[error("{weight} has only one of lora_a and lora_b")]
    Unpaired {
        /// The base weight.
        weight: String,
    },
    /// A pair for a weight the base does not have.
    #[error("it changes {weight}, which the base model does not have (an adapter of another model?)")]
    MissingWeight {
        /// The base weight.
        weight: String,
    },
    /// A pair whose shapes do not fit the base weight.
    #[error("{weight}: lora_a {a:?} and lora_b {b:?} do not fit the base's {base:?} (in, out)")]
    Shape {
        /// The base weight.
        weight: String,
        /// A's dims.
        a: Vec<u64>,
        /// B's dims.
        b: Vec<u64>,
        /// The base weight's dims.
        base: Vec<u64>,
    },
    /// No tensors at all.
    #[error("it holds no LoRA matrices")]
    Empty,
}

/// `adapter.lora.alpha` of an adapter (0 when absent: the scale alone applies).
pub fn lora_alpha(adapter: &GgufFile) -> Result<f32, AdapterProblem> {
    let alpha = match adapter.get("adapter.lora.alpha") {
        None => return Ok(0.0),
        Some(MetadataValue::F32(a)) => *a,
        Some(MetadataValue::F64(a)) => *a as f32,
        Some(other) => {
            other.as_u64().map(|a| a as f32).ok_or_else(|| AdapterProblem::Alpha(other.summary()))?
        }
    };
    if alpha.is_finite() { Ok(alpha) } else { Err(AdapterProblem::Alpha(alpha.to_string())) }
}

/// Checks that `adapter` is a LoRA adapter for `base` and pairs its tensors, in name order.
pub fn lora_pairs<'a>(adapter: &'a GgufFile, base: &GgufFile) -> Result<Vec<LoraPair<'a>>, AdapterProblem> {
    let quoted = |key: &str| adapter.get_str(key).map_or_else(|| "missing".to_string(), |v| format!("{v:?}"));
    if adapter.get_str("general.type") != Some("adapter") || adapter.get_str("adapter.type") != Some("lora") {
        return Err(AdapterProblem::NotLora {
            general_type: quoted("general.type"),
            adapter_type: quoted("adapter.type"),
        });
    }
    let (adapter_arch, base_arch) =
        (adapter.architecture().unwrap_or("unknown"), base.architecture().unwrap_or("unknown"));
    if adapter_arch != base_arch {
        return Err(AdapterProblem::Architecture { adapter: adapter_arch.into(), base: base_arch.into() });
    }
    lora_alpha(adapter)?;

    let mut halves: std::collections::BTreeMap<&str, (Option<&TensorInfo>, Option<&TensorInfo>)> =
        std::collections::BTreeMap::new();
    for tensor in &adapter.tensors {
        if let Some(weight) = tensor.name.strip_suffix(".lora_a") {
            halves.entry(weight).or_default().0 = Some(tensor);
        } else if let Some(weight) = tensor.name.strip_suffix(".lora_b") {
            halves.entry(weight).or_default().1 = Some(tensor);
        } else {
            return Err(AdapterProblem::UnknownTensor { name: tensor.name.clone() });
        }
    }
    if halves.is_empty() {
        return Err(AdapterProblem::Empty);
    }
    let mut pairs = Vec::with_capacity(halves.len());
    for (weight, half) in halves {
        let (Some(a), Some(b)) = half else {
            return Err(AdapterProblem::Unpaired { weight: weight.into() });
        };
        let target =
            base.tensor(weight).ok_or_else(|| AdapterProblem::MissingWeight { weight: weight.into() })?;
        let rank =
            fitting_rank(weight, &a.dims, &b.dims, &target.dims).ok_or_else(|| AdapterProblem::Shape {
                weight: weight.into(),
                a: a.dims.clone(),
                b: b.dims.clone(),
                base: target.dims.clone(),
            })?;
        pairs.push(LoraPair { weight, a, b, rank });
    }
    Ok(pairs)
}

/// The rank of a pair whose shapes fit the base weight, as llama.cpp's adapter loader
/// requires: A is (in, r) and B (r, out) for a weight (in, out), with any further (expert)
/// dimensions the same in all three. The token embeddings are looked up, not multiplied,
/// so their pair is stored the other way round: A (r, vocabulary), B (r, width).
fn fitting_rank(weight: &str, a: &[u64], b: &[u64], base: &[u64]) -> Option<u64> {
    let (&[a0, a1, ref a_rest @ ..], &[b0, b1, ref b_rest @ ..], &[n0, n1, ref n_rest @ ..]) = (a, b, base)
    else {
        return None;
    };
    if a_rest != n_rest || b_rest != n_rest {
        return None;
    }
    let rank = if weight == "token_embd.weight" {
        (a1 == n1 && b1 == n0 && a0 == b0).then_some(a0)
    } else {
        (a0 == n0 && b1 == n1 && a1 == b0).then_some(a1)
    };
    rank.filter(|r| *r > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::{GgmlType, TensorSpec, TinyModelSpec, write_gguf, write_tiny_model};

    fn adapter(
        dir: &std::path::Path,
        metadata: &[(&str, MetadataValue)],
        tensors: &[(&str, Vec<u64>)],
    ) -> GgufFile {
        let path = dir.join("adapter.gguf");
        let metadata: Vec<(String, MetadataValue)> =
            metadata.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let specs: Vec<TensorSpec> = tensors
            .iter()
            .map(|(n, d)| TensorSpec { name: n.to_string(), dims: d.clone(), ggml_type: GgmlType::F32 })
            .collect();
        let mut file = std::fs::File::create(&path).unwrap();
        write_gguf(&mut file, &metadata, &specs, |i, out| {
            out.write_all(&vec![0u8; specs[i].n_bytes().unwrap() as usize])
        })
        .unwrap();
        GgufFile::open(&path).unwrap()
    }

    #[test]
    fn pairs_fit_the_base_or_say_why_not() {
        let dir = tempfile::tempdir().unwrap();
        let base_path = dir.path().join("base.gguf");
        write_tiny_model(&base_path, &TinyModelSpec::default()).unwrap();
        let base = GgufFile::open(&base_path).unwrap();
        let s = |v: &str| MetadataValue::String(v.into());
        let lora = [
            ("general.architecture", s("llama")),
            ("general.type", s("adapter")),
            ("adapter.type", s("lora")),
        ];
        let q = |half: &str| format!("blk.0.attn_q.weight.{half}");
        let (qa, qb) = (q("lora_a"), q("lora_b"));

        let good = adapter(dir.path(), &lora, &[(&qa, vec![64, 4]), (&qb, vec![4, 64])]);
        let pairs = lora_pairs(&good, &base).unwrap();
        assert_eq!(pairs.len(), 1);
        assert_eq!((pairs[0].weight, pairs[0].rank), ("blk.0.attn_q.weight", 4));
        let embd = adapter(
            dir.path(),
            &lora,
            &[("token_embd.weight.lora_a", vec![4, 560]), ("token_embd.weight.lora_b", vec![4, 64])],
        );
        assert_eq!(lora_pairs(&embd, &base).unwrap()[0].rank, 4);

        // The tiny model itself is a full model, not an adapter.
        assert!(matches!(lora_pairs(&base, &base), Err(AdapterProblem::NotLora { .. })));
        type Case<'a> = (Vec<(&'a str, MetadataValue)>, Vec<(&'a str, Vec<u64>)>, &'a str);
        let cases: Vec<Case<'_>> = vec![
            (lora.to_vec(), vec![(&qa, vec![48, 4]), (&qb, vec![4, 64])], "do not fit"),
            (lora.to_vec(), vec![(&qa, vec![64, 4]), (&qb, vec![3, 64])], "do not fit"),
            (lora.to_vec(), vec![(&qa, vec![64, 0]), (&qb, vec![0, 64])], "do not fit"),
            (lora.to_vec(), vec![(&qa, vec![64, 4])], "only one of"),
            (lora.to_vec(), vec![("blk.0.attn_q.weight", vec![64, 64])], "not a LoRA matrix"),
            (
                lora.to_vec(),
                vec![
                    ("blk.7.attn_q.weight.lora_a", vec![64, 4]),
                    ("blk.7.attn_q.weight.lora_b", vec![4, 64]),
                ],
                "does not have",
            ),
            (lora.to_vec(), vec![], "no LoRA matrices"),
            // The embeddings' pair is stored the other way round; the usual layout does not fit.
            (
                lora.to_vec(),
                vec![("token_embd.weight.lora_a", vec![64, 4]), ("token_embd.weight.lora_b", vec![4, 560])],
                "do not fit",
            ),
            (
                vec![
                    lora[0].clone(),
                    lora[1].clone(),
                    lora[2].clone(),
                    ("adapter.lora.alpha", MetadataValue::F32(f32::NAN)),
                ],
                vec![(&qa, vec![64, 4]), (&qb, vec![4, 64])],
                "alpha is NaN",
            ),
            (
                vec![("general.architecture", s("qwen2")), lora[1].clone(), lora[2].clone()],
                vec![(&qa, vec![64, 4]), (&qb, vec![4, 64])],
                "architecture qwen2",
            ),
            (
                vec![lora[0].clone(), lora[1].clone()],
                vec![(&qa, vec![64, 4]), (&qb, vec![4, 64])],
                "adapter.type = missing",
            ),
        ];
        for (metadata, tensors, expected) in cases {
            let file = adapter(dir.path(), &metadata, &tensors);
            let err = lora_pairs(&file, &base).unwrap_err().to_string();
            assert!(err.contains(expected), "{tensors:?}: {err}");
        }
    }
}
