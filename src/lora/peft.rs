//! A PEFT LoRA adapter folder as Hugging Face PEFT saves it: `adapter_config.json` (rank,
//! alpha, rsLoRA, target modules) and `adapter_model.safetensors` (the A and B matrices).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::LoraError;

/// The fields of `adapter_config.json` that decide the conversion.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PeftConfig {
    /// `peft_type`; only `LORA` is converted.
    #[serde(default)]
    pub peft_type: Option<String>,
    /// Default rank.
    pub r: u64,
    /// Default alpha: the update is scaled by alpha/r (alpha/√r with rsLoRA).
    pub lora_alpha: f64,
    /// Rank-stabilised LoRA: scale by alpha/√r.
    #[serde(default)]
    pub use_rslora: bool,
    /// Weight-decomposed LoRA (magnitude vectors); not representable in GGUF adapters.
    #[serde(default)]
    pub use_dora: bool,
    /// Conv1D-style weights (GPT-2); the model families converted here have none.
    #[serde(default)]
    pub fan_in_fan_out: bool,
    /// Modules adapted: a list of names or one regular expression.
    #[serde(default)]
    pub target_modules: Option<TargetModules>,
    /// Per-module alphas overriding `lora_alpha`, by module-name pattern.
    #[serde(default)]
    pub alpha_pattern: BTreeMap<String, f64>,
    /// Per-module ranks overriding `r` (the tensors' shapes tell the rank anyway).
    #[serde(default)]
    pub rank_pattern: BTreeMap<String, u64>,
    /// Modules trained in full and saved beside the adapter.
    #[serde(default)]
    pub modules_to_save: Option<Vec<String>>,
    /// The model the adapter was trained on, as PEFT recorded it.
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
}

/// `target_modules`: names, or a regular expression over module paths.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum TargetModules {
    /// Module names such as `q_proj`.
    Names(Vec<String>),
    /// A regular expression.
    Pattern(String),
}

/// A matrix read from the safetensors file, widened to f32, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct PeftMatrix {
    /// Rows × columns, as PyTorch stores the weight.
    pub shape: [usize; 2],
    /// The values.
    pub values: Vec<f32>,
}

/// An adapter folder read into memory.
#[derive(Debug, Clone)]
pub struct PeftAdapter {
    /// The folder.
    pub dir: PathBuf,
    /// Its configuration.
    pub config: PeftConfig,
    /// Its tensors by name, in name order.
    pub tensors: BTreeMap<String, PeftMatrix>,
    /// sha256 of the safetensors file, hex.
    pub weights_sha256: String,
}

/// The file names PEFT writes.
pub const CONFIG_FILE: &str = "adapter_config.json";
/// The weights file PEFT writes.
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";

impl PeftAdapter {
    /// Reads the adapter in `dir`.
    pub fn read(dir: &Path) -> Result<PeftAdapter, LoraError> {
        let config_path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&config_path)
            .map_err(|source| LoraError::Io { path: config_path.clone(), source })?;
        let config = parse_config(&text).map_err(|reason| LoraError::Peft { path: config_path, reason })?;
        let weights_path = dir.join(WEIGHTS_FILE);
        if !weights_path.exists() && dir.join("adapter_model.bin").exists() {
            return Err(LoraError::Peft {
                path: dir.join("adapter_model.bin"),
                reason: "pickled PyTorch weights are not read (they can run code); save the adapter with \
                         safe_serialization=True"
                    .into(),
            });
        }
        let bytes = std::fs::read(&weights_path)
            .map_err(|source| LoraError::Io { path: weights_path.clone(), source })?;
        let tensors = read_safetensors(&bytes)
            .map_err(|reason| LoraError::Peft { path: weights_path.clone(), reason })?;
        // A NaN or an infinity in A or B would make every output of the adapted model NaN.
        if let Some(name) =
            tensors.iter().find(|(_, m)| m.values.iter().any(|v| !v.is_finite())).map(|(n, _)| n)
        {
            return Err(LoraError::Peft {
                path: weights_path,
                reason: format!("tensor {name} holds NaN or infinite values"),
            });
        }
        Ok(PeftAdapter { dir: dir.to_path_buf(), config, tensors, weights_sha256: super::sha256_hex(&bytes) })
    }
}

/// Parses `adapter_config.json`, refusing what cannot become a GGUF LoRA adapter.
pub fn parse_config(text: &str) -> Result<PeftConfig, String> {
    let config: PeftConfig =
        serde_json::from_str(text).map_err(|e| format!("not a PEFT LoRA config: {e}"))?;
    if let Some(kind) = config.peft_type.as_deref().filter(|k| !k.eq_ignore_ascii_case("lora")) {
        return Err(format!("peft_type is {kind}; only LORA adapters convert to GGUF"));
    }
    // GGUF adapters carry one alpha, and llama.cpp reads 0 as "no alpha" (scale 1), not as
    // a scale of 0: a zero alpha cannot be written faithfully.
    if config.r == 0 || !config.lora_alpha.is_finite() || config.lora_alpha == 0.0 {
        return Err(format!(
            "r = {} and lora_alpha = {} do not make a LoRA scale",
            config.r, config.lora_alpha
        ));
    }

    if config.use_dora {
        return Err("DoRA adapters (use_dora) have magnitude vectors that GGUF LoRA adapters cannot hold; \
                    merge them in PEFT instead"
            .into());
    }
    if config.fan_in_fan_out {
        return Err(
            "fan_in_fan_out adapters (GPT-2 Conv1D layers) are not of a supported model family".into()
        );
    }
    if let Some(saved) = config.modules_to_save.as_ref().filter(|m| !m.is_empty()) {
        return Err(format!(
            "modules_to_save ({}) are fully trained weights, not LoRA matrices; a GGUF adapter cannot carry them",
            saved.join(", ")
        ));
    }
    if let Some(TargetModules::Names(names)) = &config.target_modules
        && let Some(name) = names.iter().find(|n| super::names::is_embedding_or_head(n))
    {
        return Err(format!(
            "the adapter targets {name}: adapters on the token embeddings or the output head are not supported \
             (llama.cpp applies LoRA to the linear layers of the blocks); train without it or merge in PEFT"
        ));
    }
    Ok(config)
}

/// Reads every tensor of a safetensors file as an f32 matrix. A malformed file is an
/// error, never a panic: the crate checks the header against the buffer.
pub fn read_safetensors(bytes: &[u8]) -> Result<BTreeMap<String, PeftMatrix>, String> {
    let file =
        safetensors::SafeTensors::deserialize(bytes).map_err(|e| format!("not a safetensors file: {e}"))?;
    let mut tensors = BTreeMap::new();
    for (name, view) in file.iter() {
        let shape = match *view.shape() {
            [rows, cols] => [rows, cols],
            ref other => return Err(format!("tensor {name} has shape {other:?}; LoRA matrices are 2-D")),
        };
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            safetensors::Dtype::F32 => {
                data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
            }
            safetensors::Dtype::F16 => {
                data.chunks_exact(2).map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]]))).collect()
            }
            safetensors::Dtype::BF16 => data
                .chunks_exact(2)
                .map(|b| f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16))
                .collect(),
            other => return Err(format!("tensor {name} is {other:?}; F32, F16 and BF16 are read")),
        };
        if values.len() != shape[0] * shape[1] {
            return Err(format!("tensor {name}: {} values for shape {shape:?}", values.len()));
        }
        tensors.insert(name.to_string(), PeftMatrix { shape, values });
    }
    Ok(tensors)
}

/// IEEE half precision to single, exactly (subnormals, infinities and NaN included).
pub fn f16_to_f32(half: u16) -> f32 {
    let sign = u32::from(half & 0x8000) << 16;
    let exponent = u32::from((half >> 10) & 0x1f);
    let mantissa = u32::from(half & 0x3ff);
    let bits = match (exponent, mantissa) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: value = mantissa × 2^-24, normalised for f32.
            let shift = mantissa.leading_zeros() - 21;
            let mantissa = (mantissa << shift) & 0x3ff;
            sign | ((127 - 15 + 1 - shift) << 23) | (mantissa << 13)
        }
        (0x1f, _) => sign | 0x7f80_0000 | (mantissa << 13),
        _ => sign | ((exponent + 127 - 15) << 23) | (mantissa << 13),
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_values() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24), "smallest subnormal");
        assert_eq!(f16_to_f32(0x03ff), 1023.0 * 2f32.powi(-24), "largest subnormal");
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
    }

    #[test]
    fn config_fields_and_refusals() {
        let config = parse_config(
            r#"{"peft_type": "LORA", "r": 16, "lora_alpha": 32, "use_rslora": true,
                "target_modules": ["q_proj", "v_proj"], "task_type": "CAUSAL_LM"}"#,
        )
        .unwrap();
        assert_eq!((config.r, config.lora_alpha, config.use_rslora), (16, 32.0, true));
        assert_eq!(config.target_modules, Some(TargetModules::Names(vec!["q_proj".into(), "v_proj".into()])));
        let pattern = parse_config(r#"{"r": 8, "lora_alpha": 8, "target_modules": ".*proj"}"#).unwrap();
        assert_eq!(pattern.target_modules, Some(TargetModules::Pattern(".*proj".into())));

        for (config, expected) in [
            (r#"{"r": 8, "lora_alpha": 8, "target_modules": ["q_proj", "lm_head"]}"#, "lm_head"),
            (r#"{"r": 8, "lora_alpha": 8, "target_modules": ["embed_tokens"]}"#, "embed_tokens"),
            (r#"{"r": 8, "lora_alpha": 8, "use_dora": true}"#, "DoRA"),
            (r#"{"peft_type": "IA3", "r": 8, "lora_alpha": 8}"#, "IA3"),
            (r#"{"r": 0, "lora_alpha": 8}"#, "r = 0"),
            (r#"{"r": 8, "lora_alpha": 0}"#, "lora_alpha = 0"),
            (r#"{"r": 8, "lora_alpha": 8, "modules_to_save": ["score"]}"#, "modules_to_save"),
            (r#"{"lora_alpha": 8}"#, "not a PEFT LoRA config"),
        ] {
            let err = parse_config(config).unwrap_err();
            assert!(err.contains(expected), "{config}: {err}");
        }
    }

    #[test]
    fn safetensors_dtypes_widen_to_f32() {
        let f32_bytes: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let f16_bytes: Vec<u8> = [0x3c00u16, 0xc000].iter().flat_map(|v| v.to_le_bytes()).collect();
        let bf16_bytes: Vec<u8> = [0x3fc0u16, 0x4040].iter().flat_map(|v| v.to_le_bytes()).collect();
        let views = [
            (
                "a",
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1, 2], &f32_bytes)
                    .unwrap(),
            ),
            (
                "b",
                safetensors::tensor::TensorView::new(safetensors::Dtype::F16, vec![2, 1], &f16_bytes)
                    .unwrap(),
            ),
            (
                "c",
                safetensors::tensor::TensorView::new(safetensors::Dtype::BF16, vec![1, 2], &bf16_bytes)
                    .unwrap(),
            ),
        ];
        let bytes = safetensors::serialize(views, None).unwrap();
        let tensors = read_safetensors(&bytes).unwrap();
        assert_eq!(tensors["a"], PeftMatrix { shape: [1, 2], values: vec![1.5, -2.0] });
        assert_eq!(tensors["b"], PeftMatrix { shape: [2, 1], values: vec![1.0, -2.0] });
        assert_eq!(tensors["c"], PeftMatrix { shape: [1, 2], values: vec![1.5, 3.0] });
    }

    /// Random bytes, and every cut of a valid file, give errors: never a panic.
    #[test]
    fn random_and_truncated_safetensors_never_panic() {
        let values: Vec<u8> = (0..64u32).flat_map(|v| (v as f32).to_le_bytes()).collect();
        let view =
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![8, 8], &values).unwrap();
        let bytes = safetensors::serialize([("w", view)], None).unwrap();
        for cut in 0..bytes.len() {
            assert!(read_safetensors(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..2000 {
            let mut damaged = bytes.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % damaged.len();
                damaged[at] = next() as u8;
            }
            let _ = read_safetensors(&damaged);
            let len = (next() % 256) as usize;
            let noise: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let _ = read_safetensors(&noise);
        }
        // A header claiming a huge length must not allocate it.
        let mut huge = u64::MAX.to_le_bytes().to_vec();
        huge.extend_from_slice(b"{}");
        assert!(read_safetensors(&huge).is_err());
    }
}
