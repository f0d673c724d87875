//! `lora merge`: W' = W + Σ scale · (alpha / r) · B·A, one tensor at a time in a single
//! streaming pass. A merged tensor is dequantised, updated and re-quantised to its own
//! type (or the one asked for) by ggml's own row conversions, its rows shared among
//! threads; every other tensor is copied byte for byte. Memory holds one tensor (in and
//! out) and the adapters, never the model.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{LoraError, sha256_hex};
use crate::gguf::{
    GgmlType, GgufFile, LoadScope, MetadataValue, TensorInfo, TensorSpec, lora_alpha, lora_pairs, write_gguf,
};
use crate::llama::{can_dequantize, can_quantize_without_importance, dequantize_rows, quantize_rows};

/// An adapter to merge and its scale.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterInput {
    /// The GGUF LoRA adapter.
    pub path: PathBuf,
    /// Multiplies the adapter's own alpha / rank.
    pub scale: f32,
}

/// What to merge into what.
#[derive(Debug, Clone)]
pub struct MergeSettings {
    /// The base model.
    pub base: PathBuf,
    /// Adapters, applied together.
    pub adapters: Vec<AdapterInput>,
    /// The merged model to write.
    pub output: PathBuf,
    /// Type of the merged tensors (default: each keeps its base type).
    pub merged_type: Option<GgmlType>,
    /// Threads sharing each tensor's rows (0: one per core).
    pub threads: usize,
}

/// One adapter as merged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergedAdapter {
    /// The file.
    pub path: PathBuf,
    /// Its sha256, hex.
    pub sha256: String,
    /// The scale given.
    pub scale: f32,
    /// Its `adapter.lora.alpha` (0: no alpha, the scale alone applies).
    pub alpha: f32,
    /// Base tensors it changes.
    pub tensors: usize,
}

/// What a merge wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergeReport {
    /// The base model.
    pub base: PathBuf,
    /// The merged model.
    pub output: PathBuf,
    /// The adapters, in order.
    pub adapters: Vec<MergedAdapter>,
    /// Tensors changed by at least one adapter.
    pub merged_tensors: usize,
    /// Tensors copied unchanged.
    pub copied_tensors: usize,
    /// Size of the merged file.
    pub output_file_bytes: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Progress: a tensor just written.
#[derive(Debug, Clone, Copy)]
pub struct MergeProgress<'a> {
    /// 1-based position.
    pub index: usize,
    /// Tensors in the model.
    pub total: usize,
    /// Its name.
    pub name: &'a str,
    /// Whether an adapter changed it.
    pub merged: bool,
}

/// One adapter's low-rank update of one weight, scale folded into B.
struct Delta {
    rank: usize,
    /// rank × n_in, row-major.
    a: Vec<f32>,
    /// n_out × rank, row-major, times scale · alpha / rank.
    b_scaled: Vec<f32>,
}

/// Provenance keys added to the merged model (arrays, one entry per adapter; a model merged
/// again keeps the earlier entries first).
const KEY_SHA256: &str = "medllm.merge.adapter_sha256";
const KEY_SCALE: &str = "medllm.merge.adapter_scale";
const KEY_NAME: &str = "medllm.merge.adapter_name";

/// Merges the adapters into the base and writes the result atomically.
pub fn merge_adapters(
    settings: &MergeSettings,
    mut on_tensor: impl FnMut(&MergeProgress<'_>),
) -> Result<MergeReport, LoraError> {
    let started = Instant::now();
    let base = GgufFile::open(&settings.base)?;
    // The merged model keeps the base's metadata: a base llama.cpp would abort on gives a
    // merged model it aborts on.
    base.check_loadable(LoadScope::Everything)?;
    for input in std::iter::once(&settings.base).chain(settings.adapters.iter().map(|a| &a.path)) {
        if crate::atomic_file::same_path(input, &settings.output) {
            return Err(LoraError::OutputIsInput { path: settings.output.clone() });
        }
    }
    let mut deltas: BTreeMap<String, Vec<Delta>> = BTreeMap::new();
    let mut merged_adapters = Vec::with_capacity(settings.adapters.len());
    for input in &settings.adapters {
        merged_adapters.push(load_adapter(input, &base, &mut deltas)?);
    }

    // Every merged tensor must be convertible both ways before anything is written.
    let mut specs = Vec::with_capacity(base.tensors.len());
    for tensor in &base.tensors {
        let mut ggml_type = tensor.ggml_type;
        if deltas.contains_key(&tensor.name) {
            ggml_type = settings.merged_type.unwrap_or(tensor.ggml_type);
            check_convertible(tensor, ggml_type)?;
        }
        specs.push(TensorSpec { name: tensor.name.clone(), dims: tensor.dims.clone(), ggml_type });
    }
    let metadata = merged_metadata(&base, &merged_adapters);

    let threads = match settings.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let total = base.tensors.len();
    let mut writer = crate::atomic_file::AtomicWriter::create(&settings.output)?;
    // Two stages: a producer merges the adapted tensors in file order while this thread
    // writes, copying untouched tensors itself, so disk writes overlap the arithmetic. At
    // most two merged tensors wait in the channel; their buffers come back for reuse.
    std::thread::scope(|scope| -> Result<(), LoraError> {
        let (merged_tx, merged_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(1);
        let (spare_tx, spare_rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let (base, specs, deltas) = (&base, &specs, &deltas);
        let producer = scope.spawn(move || -> Result<(), LoraError> {
            let source = base.reopen()?;
            let mut in_bytes = Vec::new();
            for (tensor, spec) in base.tensors.iter().zip(specs) {
                let Some(tensor_deltas) = deltas.get(&tensor.name) else { continue };
                let mut out_bytes = spare_rx.try_recv().unwrap_or_default();
                merge_tensor(
                    base,
                    &source,
                    tensor,
                    spec.ggml_type,
                    tensor_deltas,
                    threads,
                    &mut in_bytes,
                    &mut out_bytes,
                )?;
                if merged_tx.send(out_bytes).is_err() {
                    break; // the writer stopped; its error is reported
                }
            }
            Ok(())
        });
        let source = base.reopen()?;
        let mut copy_buf = Vec::new();
        let written = write_gguf(&mut writer, &metadata, specs, |i, out| {
            let tensor = &base.tensors[i];
            let merged = deltas.contains_key(&tensor.name);
            if merged {
                let bytes = merged_rx.recv().map_err(|_| std::io::Error::other("merging stopped"))?;
                out.write_all(&bytes)?;
                let _ = spare_tx.send(bytes);
            } else {
                copy_tensor(base, &source, tensor, &mut copy_buf, out).map_err(std::io::Error::other)?;
            }
            on_tensor(&MergeProgress { index: i + 1, total, name: &tensor.name, merged });
            Ok(())
        });
        drop(merged_rx);
        // The producer's error explains a writer's "merging stopped", so it comes first.
        producer.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        written?;
        Ok(())
    })?;
    writer.commit()?;
    let output_file_bytes = std::fs::metadata(&settings.output).map(|m| m.len()).unwrap_or(0);
    Ok(MergeReport {
        base: settings.base.clone(),
        output: settings.output.clone(),
        adapters: merged_adapters,
        merged_tensors: deltas.len(),
        copied_tensors: total - deltas.len(),
        output_file_bytes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Reads one adapter, checks it against the base, and adds its updates to `deltas`.
fn load_adapter(
    input: &AdapterInput,
    base: &GgufFile,
    deltas: &mut BTreeMap<String, Vec<Delta>>,
) -> Result<MergedAdapter, LoraError> {
    let path = &input.path;
    let refuse = |reason: String| LoraError::Adapter { path: path.clone(), reason };
    if !input.scale.is_finite() {
        return Err(refuse(format!("scale {} is not a finite number", input.scale)));
    }
    let bytes = std::fs::read(path).map_err(|source| LoraError::Io { path: path.clone(), source })?;
    let sha256 = sha256_hex(&bytes);
    drop(bytes);
    let adapter = GgufFile::open(path)?;
    let pairs = lora_pairs(&adapter, base).map_err(|problem| refuse(problem.to_string()))?;
    if adapter.get("adapter.alora.invocation_tokens").is_some() {
        return Err(refuse(
            "activated LoRA (aLoRA) applies only after its invocation tokens; it cannot be merged".into(),
        ));
    }
    let alpha = lora_alpha(&adapter).map_err(|problem| refuse(problem.to_string()))?;

    let file = adapter.reopen()?;
    let mut raw = Vec::new();
    // A NaN or an infinity in A or B would spread through every row it touches.
    let mut read_f32 = |tensor: &TensorInfo| -> Result<Vec<f32>, LoraError> {
        adapter.read_tensor_data_into(&file, tensor, &mut raw)?;
        let mut values = vec![0.0; tensor.elements() as usize];
        dequantize_rows(tensor.ggml_type, &raw, &mut values)?;
        if values.iter().any(|v| !v.is_finite()) {
            return Err(refuse(format!("tensor {} holds NaN or infinite values", tensor.name)));
        }
        Ok(values)
    };
    for pair in &pairs {
        if pair.weight == "token_embd.weight" {
            return Err(LoraError::UnsupportedModule {
                name: pair.weight.to_string(),
                reason: "merging adapters on the token embeddings is not supported".into(),
            });
        }
        if pair.a.dims.len() != 2 {
            return Err(LoraError::UnsupportedModule {
                name: pair.weight.to_string(),
                reason: format!(
                    "the base tensor has dims {:?}, not a matrix",
                    base.tensor(pair.weight).map(|t| &t.dims)
                ),
            });
        }
        // llama.cpp's rule: alpha / rank scales the product, or the scale alone without alpha.
        let factor = if alpha == 0.0 { input.scale } else { input.scale * alpha / pair.rank as f32 };
        let a_values = read_f32(pair.a)?;
        let b_scaled: Vec<f32> = read_f32(pair.b)?.into_iter().map(|v| v * factor).collect();
        if b_scaled.iter().any(|v| !v.is_finite()) {
            return Err(refuse(format!(
                "scale {} · alpha {alpha} / rank {} makes {} overflow to infinity",
                input.scale, pair.rank, pair.b.name
            )));
        }
        deltas.entry(pair.weight.to_string()).or_default().push(Delta {
            rank: pair.rank as usize,
            a: a_values,
            b_scaled,
        });
    }
    Ok(MergedAdapter { path: path.clone(), sha256, scale: input.scale, alpha, tensors: pairs.len() })
}

fn check_convertible(tensor: &TensorInfo, to: GgmlType) -> Result<(), LoraError> {
    let refuse = |reason: String| LoraError::UnsupportedModule { name: tensor.name.clone(), reason };
    if !can_dequantize(tensor.ggml_type) {
        return Err(refuse(format!("its type {} cannot be dequantised by ggml", tensor.ggml_type.name())));
    }
    if !can_quantize_without_importance(to) {
        return Err(refuse(format!(
            "re-quantising to {} needs an importance matrix; merge into an F16/F32 base and run medllm quantize \
             --imatrix, or pass --type",
            to.name()
        )));
    }
    if to.bytes_for(tensor.dims[0]).is_none() {
        return Err(refuse(format!(
            "rows of {} values do not fill whole {} blocks",
            tensor.dims[0],
            to.name()
        )));
    }
    Ok(())
}

/// Copies a tensor's bytes in bounded pieces.
fn copy_tensor(
    base: &GgufFile,
    source: &File,
    tensor: &TensorInfo,
    buf: &mut Vec<u8>,
    out: &mut dyn Write,
) -> Result<(), LoraError> {
    use std::os::unix::fs::FileExt;
    const PIECE: u64 = 8 << 20;
    let mut done = 0;
    while done < tensor.n_bytes {
        let len = PIECE.min(tensor.n_bytes - done);
        buf.resize(len as usize, 0);
        source
            .read_exact_at(buf, tensor.offset + done)
            .map_err(|source| LoraError::Io { path: base.path.clone(), source })?;
        out.write_all(buf)?;
        done += len;
    }
    Ok(())
}

/// Rows dequantised, updated and re-quantised per step by each thread: enough to keep
/// ggml's row kernels busy, small enough to stay in cache.
const ROWS_PER_STEP: usize = 16;

/// Merges the deltas into one tensor, leaving its new bytes in `out_bytes`.
#[allow(clippy::too_many_arguments)]
fn merge_tensor(
    base: &GgufFile,
    source: &File,
    tensor: &TensorInfo,
    out_type: GgmlType,
    deltas: &[Delta],
    threads: usize,
    in_bytes: &mut Vec<u8>,
    out_bytes: &mut Vec<u8>,
) -> Result<(), LoraError> {
    base.read_tensor_data_into(source, tensor, in_bytes)?;
    let (n_in, n_out) = (tensor.dims[0] as usize, tensor.dims[1] as usize);
    let in_row = tensor.ggml_type.bytes_for(n_in as u64).unwrap_or(0) as usize;
    let out_row = out_type.bytes_for(n_in as u64).unwrap_or(0) as usize;
    out_bytes.resize(out_row * n_out, 0);
    let rows_per_thread = n_out.div_ceil(threads.max(1)).max(1);
    let (in_type, name) = (tensor.ggml_type, tensor.name.as_str());
    std::thread::scope(|scope| {
        let workers: Vec<_> = in_bytes
            .chunks(rows_per_thread * in_row)
            .zip(out_bytes.chunks_mut(rows_per_thread * out_row))
            .enumerate()
            .map(|(t, (src, dst))| {
                let first_row = t * rows_per_thread;
                scope.spawn(move || merge_rows(name, in_type, out_type, n_in, first_row, src, dst, deltas))
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
    })
}

/// One thread's share: rows `first_row..` of the tensor, `src` in the base type, `dst` in
/// the output type.
#[allow(clippy::too_many_arguments)]
fn merge_rows(
    tensor_name: &str,
    in_type: GgmlType,
    out_type: GgmlType,
    n_in: usize,
    first_row: usize,
    src: &[u8],
    dst: &mut [u8],
    deltas: &[Delta],
) -> Result<(), LoraError> {
    let in_row = in_type.bytes_for(n_in as u64).unwrap_or(0) as usize;
    let out_row = out_type.bytes_for(n_in as u64).unwrap_or(0) as usize;
    let n_rows = dst.len() / out_row.max(1);
    let mut rows = vec![0.0f32; ROWS_PER_STEP * n_in];
    for step in (0..n_rows).step_by(ROWS_PER_STEP) {
        let count = ROWS_PER_STEP.min(n_rows - step);
        let values = &mut rows[..count * n_in];
        dequantize_rows(in_type, &src[step * in_row..(step + count) * in_row], values)?;
        for (r, row) in values.chunks_exact_mut(n_in).enumerate() {
            let o = first_row + step + r;
            for delta in deltas {
                let b_row = &delta.b_scaled[o * delta.rank..(o + 1) * delta.rank];
                add_low_rank_row(row, b_row, &delta.a);
            }
            // Finite inputs can still sum past f32's range; a NaN weight would be written as is.
            if row.iter().any(|v| !v.is_finite()) {
                return Err(LoraError::NonFiniteMerge { tensor: tensor_name.to_string(), row: o });
            }
        }
        quantize_rows(out_type, values, n_in, &mut dst[step * out_row..(step + count) * out_row], None)?;
    }
    Ok(())
}

/// Elements of a row updated together: the running sums stay in registers while every
/// row of A streams past, instead of the row being loaded and stored once per rank.
const LANES: usize = 32;

/// row += Σ_k coefficients[k] · a[k], `a` holding one row of `row.len()` per coefficient.
fn add_low_rank_row(row: &mut [f32], coefficients: &[f32], a: &[f32]) {
    let n = row.len();
    let whole = n - n % LANES;
    for start in (0..whole).step_by(LANES) {
        let mut sums = [0.0f32; LANES];
        sums.copy_from_slice(&row[start..start + LANES]);
        for (k, &c) in coefficients.iter().enumerate() {
            let a_part = &a[k * n + start..k * n + start + LANES];
            for (sum, &x) in sums.iter_mut().zip(a_part) {
                *sum += c * x;
            }
        }
        row[start..start + LANES].copy_from_slice(&sums);
    }
    for (k, &c) in coefficients.iter().enumerate() {
        for (w, &x) in row[whole..].iter_mut().zip(&a[k * n + whole..(k + 1) * n]) {
            *w += c * x;
        }
    }
}

/// The base's metadata, with our alignment and the adapters' provenance appended.
fn merged_metadata(base: &GgufFile, adapters: &[MergedAdapter]) -> Vec<(String, MetadataValue)> {
    let mut metadata: Vec<(String, MetadataValue)> = base
        .metadata
        .iter()
        .map(|(k, v)| {
            // The writer aligns tensor data to its own ALIGNMENT.
            if k == "general.alignment" {
                (k.clone(), MetadataValue::U32(crate::gguf::ALIGNMENT as u32))
            } else {
                (k.clone(), v.clone())
            }
        })
        .collect();
    let mut append = |key: &str, values: Vec<MetadataValue>| {
        if let Some((_, MetadataValue::Array(existing))) = metadata.iter_mut().find(|(k, _)| k == key) {
            existing.extend(values);
        } else {
            metadata.retain(|(k, _)| k != key);
            metadata.push((key.to_string(), MetadataValue::Array(values)));
        }
    };
    append(KEY_SHA256, adapters.iter().map(|a| MetadataValue::String(a.sha256.clone())).collect());
    append(KEY_SCALE, adapters.iter().map(|a| MetadataValue::F32(a.scale)).collect());
    append(KEY_NAME, adapters.iter().map(|a| MetadataValue::String(file_name(&a.path))).collect());
    metadata
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}
