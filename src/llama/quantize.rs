//! llama.cpp's quantizer and ggml's per-type row conversions: whole models quantized by
//! `llama_model_quantize` (its type mixtures, importance matrices, fallbacks), and rows of
//! any ggml type turned into f32 and back, for merging adapters into quantized weights.

use std::cell::RefCell;
use std::ffi::{CString, c_void};
use std::path::Path;
use std::rc::Rc;

use super::LlamaError;
use super::backend::{init_backend, with_log_tap};
use super::model::path_to_cstring;
use crate::gguf::{GgmlType, GgufFile, LoadScope};

/// How to quantize a whole model file.
#[derive(Debug, Clone, Default)]
pub struct ModelQuantizeParams<'a> {
    /// The llama.cpp file type (`LLAMA_FTYPE_*`: 15 is Q4_K_M, 0 all F32).
    pub file_type: u32,
    /// Worker threads (0: one per core).
    pub threads: usize,
    /// Type of `output.weight`, instead of the mixture's choice.
    pub output_tensor_type: Option<GgmlType>,
    /// Type of the token embeddings, instead of the mixture's choice.
    pub token_embedding_type: Option<GgmlType>,
    /// Every tensor to the file type's base type: no k-quant mixture.
    pub pure: bool,
    /// Plan only: report each tensor's new type, write nothing.
    pub dry_run: bool,
    /// Importance of each input column, per tensor name (from an imatrix file).
    pub importance: &'a [(String, Vec<f32>)],
}

/// What the quantizer did (or, in a dry run, would do) with one tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorConversion {
    /// 1-based position among the model's tensors.
    pub index: usize,
    /// Tensors in the model.
    pub total: usize,
    /// Tensor name.
    pub name: String,
    /// Type in the input file.
    pub from: GgmlType,
    /// Type in the output file.
    pub to: GgmlType,
}

/// Quantizes the model at `input` into `output` with llama.cpp's quantizer. `on_tensor`
/// hears about each tensor once it is done. The output is written in place: callers that
/// want an atomic file pass a temporary path and rename it. The input's header and the
/// hyperparameters the quantizer reads are checked in Rust first (it aborts on some).
pub fn quantize_model(
    input: &Path,
    output: &Path,
    params: &ModelQuantizeParams<'_>,
    mut on_tensor: impl FnMut(&TensorConversion) + 'static,
) -> Result<(), LlamaError> {
    GgufFile::open(input)?.check_loadable(LoadScope::Hyperparameters)?;
    init_backend();
    let failed = |reason: String| LlamaError::Quantize { path: input.to_path_buf(), reason };
    let c_input = path_to_cstring(input)?;
    let c_output = path_to_cstring(output)?;

    // The importance matrix as llama.cpp reads it: (name, data, length) records ended by a
    // record with a null name. The names and vectors outlive the call.
    let names: Vec<CString> = params
        .importance
        .iter()
        .map(|(name, _)| CString::new(name.as_str()).map_err(|_| LlamaError::NulByte))
        .collect::<Result<_, _>>()?;
    let mut importance: Vec<llama_sys::llama_model_imatrix_data> = params
        .importance
        .iter()
        .zip(&names)
        .map(|((_, values), name)| llama_sys::llama_model_imatrix_data {
            name: name.as_ptr(),
            data: values.as_ptr(),
            size: values.len(),
        })
        .collect();
    if let Some((name, _)) = params.importance.iter().find(|(_, v)| v.iter().any(|x| !x.is_finite())) {
        return Err(failed(format!("the importance matrix of {name} holds a value that is not finite")));
    }
    importance.push(llama_sys::llama_model_imatrix_data {
        name: std::ptr::null(),
        data: std::ptr::null(),
        size: 0,
    });

    // SAFETY: returns a struct of plain values by copy.
    let mut raw = unsafe { llama_sys::llama_model_quantize_default_params() };
    raw.nthread = i32::try_from(params.threads).unwrap_or(i32::MAX);
    raw.ftype = params.file_type as llama_sys::llama_ftype;
    raw.output_tensor_type =
        params.output_tensor_type.map_or(llama_sys::GGML_TYPE_COUNT, |t| t.0 as llama_sys::ggml_type);
    raw.token_embedding_type =
        params.token_embedding_type.map_or(llama_sys::GGML_TYPE_COUNT, |t| t.0 as llama_sys::ggml_type);
    // Requantizing is a user's choice made by asking for it; llama.cpp warns in its log.
    raw.allow_requantize = true;
    raw.pure_ = params.pure;
    raw.dry_run = params.dry_run;
    raw.imatrix = if params.importance.is_empty() { std::ptr::null() } else { importance.as_ptr() };

    let log = Rc::new(RefCell::new(QuantizerLog::default()));
    let tap_log = Rc::clone(&log);
    let status = with_log_tap(
        move |chunk| {
            if let Some(done) = tap_log.borrow_mut().feed(chunk) {
                on_tensor(&done);
            }
        },
        || {
            // SAFETY: both paths are NUL-terminated and live for the call; `raw` is a
            // complete parameter struct whose importance records (names and data) outlive
            // the call and end with a null-name record; the other pointers keep their null
            // defaults. llama.cpp catches its own exceptions and returns non-zero instead.
            unsafe { llama_sys::llama_model_quantize(c_input.as_ptr(), c_output.as_ptr(), &raw) }
        },
    );
    if status != 0 {
        let reason = log.borrow().error.clone().unwrap_or_else(|| "llama.cpp gave no reason".into());
        return Err(failed(reason));
    }
    Ok(())
}

/// Follows the quantizer's log, which is its only progress report: per tensor a chunk
/// `[  3/ 272] name - [dims], type =    f32, `, maybe `converting to q8_0 .. `, then one
/// starting with `size = ` (in a dry run ending with the new type in parentheses).
#[derive(Debug, Default)]
struct QuantizerLog {
    current: Option<TensorConversion>,
    error: Option<String>,
}

impl QuantizerLog {
    fn feed(&mut self, chunk: &str) -> Option<TensorConversion> {
        let text = chunk.trim();
        if let Some(reason) = text.split_once("failed to quantize: ").map(|(_, r)| r) {
            self.error = Some(reason.trim().to_string());
        } else if let Some(started) = parse_tensor_start(text) {
            self.current = Some(started);
        } else if let Some(rest) = text.strip_prefix("converting to ") {
            let name = rest.split_whitespace().next().unwrap_or_default();
            if let (Some(current), Some(to)) = (self.current.as_mut(), GgmlType::from_name(name)) {
                current.to = to;
            }
        } else if text.starts_with("size = ") {
            let mut done = self.current.take()?;
            // Dry run: "size = a MiB -> b MiB (q4_K)".
            if let Some(to) =
                text.rsplit_once('(').and_then(|(_, t)| t.strip_suffix(')')).and_then(GgmlType::from_name)
            {
                done.to = to;
            }
            return Some(done);
        }
        None
    }
}

/// `[  3/ 272] blk.0.attn_q.weight - [  576,   576,     1,     1], type =    f32,`
fn parse_tensor_start(text: &str) -> Option<TensorConversion> {
    let rest = text.strip_prefix('[')?;
    let (counts, rest) = rest.split_once(']')?;
    let (index, total) = counts.split_once('/')?;
    let (index, total) = (index.trim().parse().ok()?, total.trim().parse().ok()?);
    let (name, rest) = rest.trim_start().split_once(" - ")?;
    let from = rest.rsplit_once("type =")?.1.trim().trim_end_matches(',').trim();
    let from = GgmlType::from_name(from)?;
    Some(TensorConversion { index, total, name: name.trim().to_string(), from, to: from })
}

fn type_traits(ty: GgmlType) -> Option<&'static llama_sys::ggml_type_traits> {
    if !ty.is_known() {
        return None;
    }
    // SAFETY: the type id is one ggml knows (checked above, our table follows ggml's);
    // ggml returns a pointer into its static table, valid for the whole program.
    let traits = unsafe { llama_sys::ggml_get_type_traits(ty.0 as llama_sys::ggml_type) };
    // SAFETY: non-null pointers from ggml_get_type_traits point at static data.
    (!traits.is_null()).then(|| unsafe { &*traits })
}

/// Whether rows of `ty` can be turned into f32.
pub fn can_dequantize(ty: GgmlType) -> bool {
    ty == GgmlType::F32 || type_traits(ty).is_some_and(|t| t.to_float.is_some())
}

/// Whether f32 rows can be written as `ty` without an importance matrix.
pub fn can_quantize_without_importance(ty: GgmlType) -> bool {
    const QUANTIZABLE: &[&str] = &[
        "F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
        "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ4_NL", "IQ4_XS", "TQ1_0", "TQ2_0", "MXFP4", "NVFP4", "Q1_0", "Q2_0",
    ];
    QUANTIZABLE.iter().any(|name| GgmlType::from_name(name) == Some(ty))
}

/// Turns `src`, whole rows of `ty`, into f32 values in `dst` (one per element).
pub fn dequantize_rows(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), LlamaError> {
    let unsupported = || LlamaError::UnsupportedType { ty: ty.name(), what: "converted to f32" };
    let expected = ty.bytes_for(dst.len() as u64).ok_or_else(unsupported)?;
    if expected != src.len() as u64 {
        return Err(LlamaError::RowSize { ty: ty.name(), bytes: src.len(), elements: dst.len() });
    }
    if ty == GgmlType::F32 {
        for (value, bytes) in dst.iter_mut().zip(src.chunks_exact(4)) {
            *value = f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        }
        return Ok(());
    }
    let to_float = type_traits(ty).and_then(|t| t.to_float).ok_or_else(unsupported)?;
    init_backend();
    // SAFETY: `src` holds exactly the bytes of `dst.len()` elements of `ty` (checked
    // above, whole blocks), and `dst` has room for that many floats.
    unsafe { to_float(src.as_ptr().cast::<c_void>(), dst.as_mut_ptr(), dst.len() as i64) };
    Ok(())
}

/// Writes `src`, rows of `n_per_row` f32 values, as rows of `ty` into `dst`, which must
/// have exactly their size. `importance` (one weight per column) steers the rounding.
pub fn quantize_rows(
    ty: GgmlType,
    src: &[f32],
    n_per_row: usize,
    dst: &mut [u8],
    importance: Option<&[f32]>,
) -> Result<(), LlamaError> {
    let unsupported = || LlamaError::UnsupportedType { ty: ty.name(), what: "written from f32" };
    if importance.is_none() && !can_quantize_without_importance(ty) {
        return Err(unsupported());
    }
    if n_per_row == 0 || !src.len().is_multiple_of(n_per_row) {
        return Err(LlamaError::RowSize { ty: ty.name(), bytes: dst.len(), elements: src.len() });
    }
    let row_bytes = ty.bytes_for(n_per_row as u64).ok_or_else(unsupported)?;
    let n_rows = src.len() / n_per_row;
    if row_bytes * n_rows as u64 != dst.len() as u64 || importance.is_some_and(|w| w.len() != n_per_row) {
        return Err(LlamaError::RowSize { ty: ty.name(), bytes: dst.len(), elements: src.len() });
    }
    if ty == GgmlType::F32 {
        for (bytes, value) in dst.chunks_exact_mut(4).zip(src) {
            bytes.copy_from_slice(&value.to_le_bytes());
        }
        return Ok(());
    }
    init_backend();
    // SAFETY: `src` holds `n_rows` rows of `n_per_row` floats; `dst` has exactly the bytes
    // of that many rows of `ty`, and rows fill whole blocks (checked above); start 0 keeps
    // ggml's block and row alignment assertions true; `importance`, when given, has one
    // weight per column; the type is one ggml quantizes (checked above).
    let written = unsafe {
        llama_sys::ggml_quantize_chunk(
            ty.0 as llama_sys::ggml_type,
            src.as_ptr(),
            dst.as_mut_ptr().cast::<c_void>(),
            0,
            n_rows as i64,
            n_per_row as i64,
            importance.map_or(std::ptr::null(), <[f32]>::as_ptr),
        )
    };
    if written != dst.len() {
        return Err(LlamaError::RowSize { ty: ty.name(), bytes: written, elements: src.len() });
    }
    Ok(())
}

/// Whether `bytes` (whole rows of `ty`) hold no NaN or infinite scales or values.
pub fn rows_are_valid(ty: GgmlType, bytes: &[u8]) -> bool {
    if !ty.is_known() {
        return false;
    }
    // SAFETY: ggml reads exactly `bytes.len()` bytes and checks the size is a whole number
    // of blocks itself, returning false otherwise.
    unsafe {
        llama_sys::ggml_validate_row_data(ty.0 as llama_sys::ggml_type, bytes.as_ptr().cast(), bytes.len())
    }
}
