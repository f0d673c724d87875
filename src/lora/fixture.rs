//! A PEFT adapter folder with random weights for a given GGUF base, laid out exactly as
//! PEFT saves one (Hugging Face names, PyTorch shapes, Hugging Face row order for Q and K),
//! so tests, the demo and the benchmark can convert and merge without Python or a GPU.

use std::collections::HashMap;
use std::path::Path;

use super::LoraError;
use super::names::{LoraSlot, Projection};
use super::peft::{CONFIG_FILE, WEIGHTS_FILE};
use crate::gguf::GgufFile;

/// Element type of the safetensors file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeftDtype {
    /// 32-bit float.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    Bf16,
}

/// Shape and values of a random PEFT adapter.
#[derive(Debug, Clone)]
pub struct PeftFixtureSpec {
    /// Rank.
    pub rank: usize,
    /// lora_alpha.
    pub alpha: f64,
    /// use_rslora.
    pub rslora: bool,
    /// Element type written.
    pub dtype: PeftDtype,
    /// Seed of the random values.
    pub seed: u64,
    /// Values of A and B are uniform in ±magnitude.
    pub magnitude: f32,
    /// Linear layers adapted in every block.
    pub projections: Vec<Projection>,
}

impl Default for PeftFixtureSpec {
    fn default() -> Self {
        PeftFixtureSpec {
            rank: 4,
            alpha: 8.0,
            rslora: false,
            dtype: PeftDtype::F32,
            seed: 7,
            magnitude: 0.1,
            projections: vec![
                Projection::Query,
                Projection::Key,
                Projection::Value,
                Projection::Output,
                Projection::Gate,
                Projection::Up,
                Projection::Down,
            ],
        }
    }
}

/// Writes `adapter_config.json` and `adapter_model.safetensors` into `dir` for `base`.
pub fn write_peft_adapter(base: &GgufFile, dir: &Path, spec: &PeftFixtureSpec) -> Result<(), LoraError> {
    let arch = base.architecture().unwrap_or("llama");
    let n_layer = base.get_u64(&format!("{arch}.block_count")).unwrap_or(0);
    let mut rng = spec.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut random = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        ((rng >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    };
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut modules = Vec::new();
    for layer in 0..n_layer {
        for &projection in &spec.projections {
            let slot = LoraSlot { layer, projection, is_b: false };
            let base_tensor = slot.base_tensor();
            let dims = &base
                .tensor(&base_tensor)
                .ok_or_else(|| LoraError::Shape {
                    name: base_tensor.clone(),
                    reason: "the base has no such tensor".into(),
                })?
                .dims;
            let (n_in, n_out) = (dims[0] as usize, dims[1] as usize);
            let module = format!("base_model.model.model.{}", slot.module());
            let a: Vec<f32> = (0..spec.rank * n_in).map(|_| spec.magnitude * random()).collect();
            let b: Vec<f32> = (0..n_out * spec.rank).map(|_| spec.magnitude * random()).collect();
            tensors.push((format!("{module}.lora_A.weight"), vec![spec.rank, n_in], encode(&a, spec.dtype)));
            tensors.push((format!("{module}.lora_B.weight"), vec![n_out, spec.rank], encode(&b, spec.dtype)));
            let name = slot.module().rsplit('.').next().unwrap_or_default().to_string();
            if !modules.contains(&name) {
                modules.push(name);
            }
        }
    }
    let dtype = match spec.dtype {
        PeftDtype::F32 => safetensors::Dtype::F32,
        PeftDtype::F16 => safetensors::Dtype::F16,
        PeftDtype::Bf16 => safetensors::Dtype::BF16,
    };
    let views = tensors
        .iter()
        .map(|(name, shape, bytes)| {
            safetensors::tensor::TensorView::new(dtype, shape.clone(), bytes).map(|v| (name.clone(), v))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| LoraError::Peft { path: dir.join(WEIGHTS_FILE), reason: e.to_string() })?;
    let info = HashMap::from([("format".to_string(), "pt".to_string())]);
    let weights = safetensors::serialize(views, Some(info))
        .map_err(|e| LoraError::Peft { path: dir.join(WEIGHTS_FILE), reason: e.to_string() })?;
    let config = serde_json::json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": spec.rank,
        "lora_alpha": spec.alpha,
        "use_rslora": spec.rslora,
        "lora_dropout": 0.0,
        "bias": "none",
        "target_modules": modules,
        "base_model_name_or_path": base.get_str("general.name").unwrap_or("base"),
    });
    std::fs::create_dir_all(dir).map_err(|source| LoraError::Io { path: dir.to_path_buf(), source })?;
    let write = |name: &str, bytes: &[u8]| {
        crate::atomic_file::write_atomically(&dir.join(name), |f| std::io::Write::write_all(f, bytes))
            .map_err(|source| LoraError::Io { path: dir.join(name), source })
    };
    write(CONFIG_FILE, serde_json::to_string_pretty(&config).unwrap_or_default().as_bytes())?;
    write(WEIGHTS_FILE, &weights)
}

fn encode(values: &[f32], dtype: PeftDtype) -> Vec<u8> {
    match dtype {
        PeftDtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        PeftDtype::F16 => values.iter().flat_map(|v| f32_to_f16(*v).to_le_bytes()).collect(),
        PeftDtype::Bf16 => values
            .iter()
            .flat_map(|v| {
                // Round to nearest even on the dropped 16 bits.
                let bits = v.to_bits();
                let rounded = bits.wrapping_add(0x7fff + ((bits >> 16) & 1));
                ((rounded >> 16) as u16).to_le_bytes()
            })
            .collect(),
    }
}

/// f32 → IEEE half, round to nearest even; magnitudes below the half range flush to zero
/// and above it become infinity (fixture values are far from both).
fn f32_to_f16(value: f32) -> u16 {
    let bits = value.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exponent = ((bits >> 23) & 0xff) as i32 - 127 + 15;
    let mantissa = bits & 0x7f_ffff;
    if exponent <= 0 {
        return sign;
    }
    if exponent >= 0x1f {
        return sign | 0x7c00;
    }
    let half = ((exponent as u32) << 10) | (mantissa >> 13);
    let rest = mantissa & 0x1fff;
    let rounded = if rest > 0x1000 || (rest == 0x1000 && half & 1 == 1) { half + 1 } else { half };
    sign | rounded as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lora::PeftAdapter;
    use crate::lora::peft::f16_to_f32;

    #[test]
    fn half_rounding_round_trips() {
        for v in [1.0f32, -0.5, 0.333_333, 0.1, 65504.0, 1e-3] {
            let back = f16_to_f32(f32_to_f16(v));
            assert!((back - v).abs() <= v.abs() * 1e-3, "{v} -> {back}");
        }
        assert_eq!(f32_to_f16(1.0), 0x3c00);
    }

    #[test]
    fn fixture_reads_back_as_peft() {
        let dir = tempfile::tempdir().unwrap();
        let base = GgufFile::open(crate::test_support::tiny_model_path()).unwrap();
        for dtype in [PeftDtype::F32, PeftDtype::F16, PeftDtype::Bf16] {
            let spec = PeftFixtureSpec { dtype, ..PeftFixtureSpec::default() };
            write_peft_adapter(&base, dir.path(), &spec).unwrap();
            let adapter = PeftAdapter::read(dir.path()).unwrap();
            assert_eq!(adapter.config.r, 4);
            assert_eq!(adapter.tensors.len(), 2 * 7 * 2, "2 layers × 7 projections × A and B");
            let q_b = &adapter.tensors["base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight"];
            assert_eq!(q_b.shape, [64, 4]);
            let k_a = &adapter.tensors["base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight"];
            assert_eq!(k_a.shape, [4, 64]);
            assert!(
                k_a.values.iter().all(|v| v.abs() <= 0.1001) && k_a.values.iter().any(|v| v.abs() > 0.05)
            );
        }
    }
}
