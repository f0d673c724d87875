//! `quantize`: a GGUF model re-typed by llama.cpp's quantizer (its k-quant mixtures,
//! importance matrices and fallbacks), written atomically, never over its own input.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{QuantError, read_importance_matrix};
use crate::gguf::{GgmlType, GgufFile, file_type_from_name, file_type_name, file_type_names};
use crate::llama::{ModelQuantizeParams, TensorConversion, quantize_model};

/// What to quantize, into what.
#[derive(Debug, Clone, Default)]
pub struct QuantizeSettings {
    /// The model to read.
    pub input: PathBuf,
    /// Where to write; may be absent only for a dry run.
    pub output: Option<PathBuf>,
    /// llama.cpp file type (see [`parse_file_type`]).
    pub file_type: u32,
    /// Worker threads (0: one per core).
    pub threads: usize,
    /// Type of `output.weight` instead of the mixture's choice.
    pub output_tensor_type: Option<GgmlType>,
    /// Type of the token embeddings instead of the mixture's choice.
    pub token_embedding_type: Option<GgmlType>,
    /// One type for every quantizable tensor: no k-quant mixture.
    pub pure: bool,
    /// Report the planned types and sizes; write nothing.
    pub dry_run: bool,
    /// An importance matrix file from `llama-imatrix` (GGUF or legacy `.dat`).
    pub imatrix: Option<PathBuf>,
}

/// One tensor's type and size before and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorRetype {
    /// Tensor name.
    pub name: String,
    /// Dimensions, ggml order.
    pub dims: Vec<u64>,
    /// Type in the input.
    pub from: String,
    /// Type in the output.
    pub to: String,
    /// Bytes in the input.
    pub bytes_before: u64,
    /// Bytes in the output.
    pub bytes_after: u64,
}

/// What a quantization did (or, for a dry run, would do).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantizeReport {
    /// The input model.
    pub input: PathBuf,
    /// The output written (none for a dry run).
    pub output: Option<PathBuf>,
    /// The file type asked for, by name.
    pub file_type: String,
    /// Whether this was only a plan.
    pub dry_run: bool,
    /// Size of the input file.
    pub input_file_bytes: u64,
    /// Size of the output file (none for a dry run).
    pub output_file_bytes: Option<u64>,
    /// Tensor data before.
    pub tensor_bytes_before: u64,
    /// Tensor data after (planned, for a dry run).
    pub tensor_bytes_after: u64,
    /// Every tensor, in file order.
    pub tensors: Vec<TensorRetype>,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Aliases llama-quantize accepts besides the file type names.
const FILE_TYPE_ALIASES: &[(&str, &str)] = &[("Q3_K", "Q3_K_M"), ("Q4_K", "Q4_K_M"), ("Q5_K", "Q5_K_M")];

/// The llama.cpp file type named `name` (`Q4_K_M`, `q8_0`, `f16`, `Q4_K` for Q4_K_M, …).
pub fn parse_file_type(name: &str) -> Result<u32, String> {
    let canonical =
        FILE_TYPE_ALIASES.iter().find(|(a, _)| a.eq_ignore_ascii_case(name)).map_or(name, |a| a.1);
    file_type_from_name(canonical).ok_or_else(|| {
        let known: Vec<&str> = file_type_names().chain(FILE_TYPE_ALIASES.iter().map(|a| a.0)).collect();
        format!("unknown type {name:?}; one of {}", known.join(", "))
    })
}

/// Quantizes `settings.input` into `settings.output` (atomically), telling `on_tensor` as
/// each tensor is done.
pub fn quantize(
    settings: &QuantizeSettings,
    on_tensor: impl FnMut(&TensorConversion) + 'static,
) -> Result<QuantizeReport, QuantError> {
    let started = Instant::now();
    let input = GgufFile::open(&settings.input)?;
    let output = match (&settings.output, settings.dry_run) {
        (Some(output), _)
            if crate::atomic_file::refuse_output_among_inputs(
                output,
                std::iter::once(settings.input.as_path()).chain(settings.imatrix.as_deref()),
            )
            .is_err() =>
        {
            return Err(QuantError::OutputIsInput { path: output.clone() });
        }
        (Some(output), false) => Some(output.clone()),
        (_, true) => None,
        (None, false) => return Err(QuantError::NoOutput),
    };
    let importance = match &settings.imatrix {
        Some(path) => read_importance_matrix(path)?,
        None => Vec::new(),
    };
    let params = ModelQuantizeParams {
        file_type: settings.file_type,
        threads: settings.threads,
        output_tensor_type: settings.output_tensor_type,
        token_embedding_type: settings.token_embedding_type,
        pure: settings.pure,
        dry_run: settings.dry_run,
        importance: &importance,
    };
    let planned = Rc::new(RefCell::new(Vec::new()));
    let record = Rc::clone(&planned);
    let mut on_tensor = on_tensor;
    let listener = move |done: &TensorConversion| {
        record.borrow_mut().push(done.clone());
        on_tensor(done);
    };

    let (tensors, output_file_bytes) = match &output {
        None => {
            // llama.cpp writes nothing in a dry run; the path is only a name to it.
            quantize_model(&settings.input, Path::new("/dev/null"), &params, listener)?;
            let planned = planned.borrow();
            let tensors: Vec<TensorRetype> = input
                .tensors
                .iter()
                .map(|t| {
                    let to = planned.iter().find(|p| p.name == t.name).map_or(t.ggml_type, |p| p.to);
                    retype(t, to, to.bytes_for(t.elements()).unwrap_or(t.n_bytes))
                })
                .collect();
            (tensors, None)
        }
        Some(path) => {
            let (tensors, size) = crate::atomic_file::write_through_temp_path(path, |temp| {
                quantize_model(&settings.input, temp, &params, listener)?;
                // Read back from the temporary file: an output such as a FIFO cannot be.
                let written = GgufFile::open(temp)?;
                let tensors: Vec<TensorRetype> = written
                    .tensors
                    .iter()
                    .map(|t| {
                        let before = input.tensor(&t.name);
                        TensorRetype {
                            name: t.name.clone(),
                            dims: t.dims.clone(),
                            from: before.map_or_else(|| "-".into(), |b| b.ggml_type.name()),
                            to: t.ggml_type.name(),
                            bytes_before: before.map_or(0, |b| b.n_bytes),
                            bytes_after: t.n_bytes,
                        }
                    })
                    .collect();
                Ok::<_, QuantError>((tensors, written.file_size))
            })?;
            (tensors, Some(size))
        }
    };
    Ok(QuantizeReport {
        input: settings.input.clone(),
        output,
        file_type: file_type_name(settings.file_type),
        dry_run: settings.dry_run,
        input_file_bytes: input.file_size,
        output_file_bytes,
        tensor_bytes_before: input.tensors.iter().map(|t| t.n_bytes).sum(),
        tensor_bytes_after: tensors.iter().map(|t: &TensorRetype| t.bytes_after).sum(),
        tensors,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn retype(tensor: &crate::gguf::TensorInfo, to: GgmlType, bytes_after: u64) -> TensorRetype {
    TensorRetype {
        name: tensor.name.clone(),
        dims: tensor.dims.clone(),
        from: tensor.ggml_type.name(),
        to: to.name(),
        bytes_before: tensor.n_bytes,
        bytes_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_types_by_name_and_alias() {
        assert_eq!(parse_file_type("Q4_K_M"), Ok(15));
        assert_eq!(parse_file_type("q4_k"), Ok(15));
        assert_eq!(parse_file_type("f32"), Ok(0));
        assert_eq!(parse_file_type("Q8_0"), Ok(7));
        let err = parse_file_type("Q9").unwrap_err();
        assert!(err.contains("Q4_K_M") && err.contains("Q9"), "{err}");
    }
}
