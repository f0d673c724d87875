//! `lora convert`: a PEFT adapter folder → a GGUF LoRA adapter llama.cpp loads for the
//! given base model.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::LoraError;
use super::names::{
    LoraSlot, PeftName, Projection, parse_peft_name, permute_rows_for_rope, permutes_query_key,
};
use super::peft::{PeftAdapter, PeftMatrix};
use crate::gguf::{GgmlType, GgufFile, LoadScope, MetadataValue, TensorSpec, write_gguf};

/// What to convert, for which base, into what.
#[derive(Debug, Clone)]
pub struct ConvertSettings {
    /// The PEFT adapter folder.
    pub peft_dir: PathBuf,
    /// The GGUF base model the adapter will be applied to.
    pub base: PathBuf,
    /// The GGUF adapter to write.
    pub output: PathBuf,
}

/// What the conversion wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConvertReport {
    /// The adapter written.
    pub output: PathBuf,
    /// `general.architecture` of base and adapter.
    pub architecture: String,
    /// Pairs of LoRA matrices (adapted weights).
    pub adapted_tensors: usize,
    /// Rank from the config.
    pub rank: u64,
    /// `adapter.lora.alpha` written: llama.cpp scales by alpha / rank.
    pub alpha: f32,
    /// Whether rsLoRA scaling (alpha / √rank) was folded in.
    pub rslora: bool,
    /// Whether the rows of Q and K were permuted into llama.cpp's rotary layout.
    pub permuted_query_key: bool,
}

/// One adapted weight: its A (r × in) and B (out × r) as llama.cpp will use them.
struct AdaptedWeight {
    base_tensor: String,
    a: PeftMatrix,
    b: PeftMatrix,
}

/// Converts a PEFT adapter for the base model, writing the GGUF adapter atomically.
pub fn convert_peft(settings: &ConvertSettings) -> Result<ConvertReport, LoraError> {
    let base = GgufFile::open(&settings.base)?;
    base.check_loadable(LoadScope::Everything)?;
    let peft_files = [super::CONFIG_FILE, super::WEIGHTS_FILE].map(|name| settings.peft_dir.join(name));
    let inputs = std::iter::once(settings.base.as_path()).chain(peft_files.iter().map(PathBuf::as_path));
    if crate::atomic_file::refuse_output_among_inputs(&settings.output, inputs).is_err() {
        return Err(LoraError::OutputIsInput { path: settings.output.clone() });
    }
    let architecture = base.architecture().unwrap_or("unknown").to_string();
    let permute = permutes_query_key(&architecture)
        .ok_or_else(|| LoraError::UnsupportedArchitecture { architecture: architecture.clone() })?;
    let peft = PeftAdapter::read(&settings.peft_dir)?;
    let config = &peft.config;

    // llama.cpp scales each weight by alpha / r with one alpha for the whole adapter.
    // PEFT scales by alpha / r (alpha / √r with rsLoRA), alpha and r possibly per module:
    // the file's alpha serves the default module, and any other module's difference is
    // folded into its B.
    let sqrt_r = (config.r as f64).sqrt();
    let alpha = if config.use_rslora { config.lora_alpha * sqrt_r } else { config.lora_alpha };

    // (layer, projection) → (A, B)
    type Pair<'a> = (Option<&'a PeftMatrix>, Option<&'a PeftMatrix>);
    let mut slots: BTreeMap<(u64, Projection), Pair<'_>> = BTreeMap::new();
    for (name, matrix) in &peft.tensors {
        match parse_peft_name(name) {
            PeftName::Lora(slot) => {
                let entry = slots.entry((slot.layer, slot.projection)).or_default();
                if slot.is_b { entry.1 = Some(matrix) } else { entry.0 = Some(matrix) }
            }
            PeftName::EmbeddingOrHead => {
                return Err(LoraError::UnsupportedModule {
                    name: name.clone(),
                    reason:
                        "adapters on the token embeddings or the output head (lm_head) are not supported; \
                             llama.cpp applies LoRA to the blocks' linear layers"
                            .into(),
                });
            }
            PeftName::Unrepresentable(what) => {
                return Err(LoraError::UnsupportedModule {
                    name: name.clone(),
                    reason: format!("{what} has no place in a GGUF LoRA adapter"),
                });
            }
            PeftName::Unknown => return Err(LoraError::UnknownTensor { name: name.clone() }),
        }
    }
    if slots.is_empty() {
        return Err(LoraError::Peft {
            path: settings.peft_dir.clone(),
            reason: "the adapter holds no LoRA matrices".into(),
        });
    }

    let arch_key = |key: &str| base.get_u64(&format!("{architecture}.{key}"));
    let n_head = arch_key("attention.head_count").unwrap_or(0) as usize;
    let n_head_kv = arch_key("attention.head_count_kv").map_or(n_head, |n| n as usize);
    let mut weights = Vec::with_capacity(slots.len());
    for ((layer, projection), pair) in slots {
        let slot = LoraSlot { layer, projection, is_b: false };
        let module = slot.module();
        let (Some(a), Some(b)) = pair else {
            return Err(LoraError::Shape {
                name: module,
                reason: "has only one of lora_A and lora_B".into(),
            });
        };
        let base_tensor = slot.base_tensor();
        let shape_error = |reason: String| LoraError::Shape { name: module.clone(), reason };
        let base_info = base.tensor(&base_tensor).ok_or_else(|| {
            shape_error(format!("the base model has no tensor {base_tensor} (is this the right base?)"))
        })?;
        let [rank, n_in] = a.shape;
        let [n_out, rank_b] = b.shape;
        if rank != rank_b || rank == 0 {
            return Err(shape_error(format!(
                "lora_A is {:?} and lora_B {:?}: ranks differ",
                a.shape, b.shape
            )));
        }
        if base_info.dims.len() != 2 || base_info.dims[0] != n_in as u64 || base_info.dims[1] != n_out as u64
        {
            return Err(shape_error(format!(
                "the adapter maps {n_in} → {n_out} but {base_tensor} of the base is {:?} (in, out): \
                 the adapter was trained on another model",
                base_info.dims
            )));
        }
        let module_alpha = module_alpha(config, &module)?;
        let wanted =
            if config.use_rslora { module_alpha / (rank as f64).sqrt() } else { module_alpha / rank as f64 };
        let factor = (wanted / (alpha / rank as f64)) as f32;
        let mut b_values: Vec<f32> = if (factor - 1.0).abs() > 1e-7 {
            b.values.iter().map(|v| v * factor).collect()
        } else {
            b.values.clone()
        };
        if permute {
            let heads = match projection {
                Projection::Query => Some(n_head),
                Projection::Key => Some(n_head_kv),
                _ => None,
            };
            if let Some(heads) = heads {
                b_values = permute_rows_for_rope(&b_values, n_out, rank, heads).ok_or_else(|| {
                    shape_error(format!("{n_out} rows do not split into {heads} heads of even size"))
                })?;
            }
        }
        if let Some(bad) = b_values.iter().find(|v| !v.is_finite()) {
            return Err(shape_error(format!(
                "scaling lora_B by {factor} (its alpha against the adapter's) gives {bad}, not a finite number"
            )));
        }
        weights.push(AdaptedWeight {
            base_tensor,
            a: a.clone(),
            b: PeftMatrix { shape: b.shape, values: b_values },
        });
    }

    let alpha = alpha as f32;
    if !alpha.is_normal() {
        return Err(LoraError::Peft {
            path: settings.peft_dir.join(super::CONFIG_FILE),
            reason: format!("lora_alpha {} does not fit a 32-bit float", config.lora_alpha),
        });
    }
    let metadata = adapter_metadata(&base, &architecture, alpha, &peft);
    write_adapter(&settings.output, &metadata, &weights)?;
    Ok(ConvertReport {
        output: settings.output.clone(),
        architecture,
        adapted_tensors: weights.len(),
        rank: config.r,
        alpha,
        rslora: config.use_rslora,
        permuted_query_key: permute,
    })
}

/// The alpha PEFT uses for `module` (`layers.3.self_attn.q_proj`): an `alpha_pattern`
/// entry whose key is the module's dotted suffix, else `lora_alpha`.
fn module_alpha(config: &super::peft::PeftConfig, module: &str) -> Result<f64, LoraError> {
    let mut found = None;
    for (pattern, alpha) in &config.alpha_pattern {
        if !pattern.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_') {
            return Err(LoraError::UnsupportedModule {
                name: pattern.clone(),
                reason: "alpha_pattern keys with regular expressions are not supported; use module names"
                    .into(),
            });
        }
        let matches = module == pattern || module.ends_with(&format!(".{pattern}"));
        if matches && found.is_none_or(|(len, _)| pattern.len() > len) {
            found = Some((pattern.len(), *alpha));
        }
    }
    Ok(found.map_or(config.lora_alpha, |(_, alpha)| alpha))
}

fn adapter_metadata(
    base: &GgufFile,
    architecture: &str,
    alpha: f32,
    peft: &PeftAdapter,
) -> Vec<(String, MetadataValue)> {
    let string = |s: &str| MetadataValue::String(s.to_string());
    let mut metadata = vec![
        ("general.architecture".to_string(), string(architecture)),
        ("general.type".to_string(), string("adapter")),
        ("adapter.type".to_string(), string("lora")),
        ("adapter.lora.alpha".to_string(), MetadataValue::F32(alpha)),
        ("medllm.lora.peft_sha256".to_string(), string(&peft.weights_sha256)),
    ];
    let name = base.get_str("general.name").unwrap_or("model");
    metadata.push(("general.name".to_string(), string(&format!("{name} LoRA"))));
    if let Some(source) = &peft.config.base_model_name_or_path {
        metadata.push(("medllm.lora.peft_base_model".to_string(), string(source)));
    }
    metadata
}

/// Writes A as `<weight>.lora_a` (ggml dims in × r) and B as `<weight>.lora_b` (r × out):
/// the same row-major bytes PyTorch holds.
fn write_adapter(
    path: &Path,
    metadata: &[(String, MetadataValue)],
    weights: &[AdaptedWeight],
) -> Result<(), LoraError> {
    let mut specs = Vec::with_capacity(weights.len() * 2);
    let mut data: Vec<&[f32]> = Vec::with_capacity(weights.len() * 2);
    for weight in weights {
        let [rank, n_in] = weight.a.shape;
        let [n_out, _] = weight.b.shape;
        specs.push(TensorSpec {
            name: format!("{}.lora_a", weight.base_tensor),
            dims: vec![n_in as u64, rank as u64],
            ggml_type: GgmlType::F32,
        });
        data.push(&weight.a.values);
        specs.push(TensorSpec {
            name: format!("{}.lora_b", weight.base_tensor),
            dims: vec![rank as u64, n_out as u64],
            ggml_type: GgmlType::F32,
        });
        data.push(&weight.b.values);
    }
    let mut writer = crate::atomic_file::AtomicWriter::create(path)?;
    write_gguf(&mut writer, metadata, &specs, |i, out| {
        let bytes: Vec<u8> = data[i].iter().flat_map(|v| v.to_le_bytes()).collect();
        out.write_all(&bytes)
    })?;
    writer.commit()?;
    Ok(())
}
