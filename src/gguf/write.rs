//! Writing GGUF files: header first, then each tensor's data streamed by the caller, so a
//! file larger than memory can be written tensor by tensor.

use std::io::{self, Write};

use super::types::GgmlType;
use super::{GgufError, MetadataValue};

/// A tensor to be written: its name, dimensions (ggml order, fastest first) and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// Tensor name, such as `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions in ggml order (`ne[0]` first).
    pub dims: Vec<u64>,
    /// Element type.
    pub ggml_type: GgmlType,
}

impl TensorSpec {
    /// Bytes of data this tensor takes.
    pub fn n_bytes(&self) -> Result<u64, GgufError> {
        let elements = self.dims.iter().try_fold(1u64, |acc, d| acc.checked_mul(*d));
        elements.and_then(|n| self.ggml_type.bytes_for(n)).ok_or_else(|| GgufError::BadTensor {
            name: self.name.clone(),
            reason: format!("{:?} does not fit {} blocks", self.dims, self.ggml_type.name()),
        })
    }
}

/// Alignment of tensor data in files we write (llama.cpp's default).
pub const ALIGNMENT: u64 = 32;

/// Writes a whole GGUF file to `out`. `write_data(i, out)` must write exactly the bytes of
/// tensor `i`; the writer checks the count and adds the padding between tensors.
pub fn write_gguf<W: Write>(
    out: &mut W,
    metadata: &[(String, MetadataValue)],
    tensors: &[TensorSpec],
    mut write_data: impl FnMut(usize, &mut dyn Write) -> io::Result<()>,
) -> Result<(), GgufError> {
    let io_err = |source: io::Error| GgufError::Write { source };
    let mut out = CountingWriter { inner: out, written: 0 };
    out.write_all(b"GGUF").map_err(io_err)?;
    out.write_all(&3u32.to_le_bytes()).map_err(io_err)?;
    out.write_all(&(tensors.len() as u64).to_le_bytes()).map_err(io_err)?;
    out.write_all(&(metadata.len() as u64).to_le_bytes()).map_err(io_err)?;
    for (key, value) in metadata {
        write_string(&mut out, key).map_err(io_err)?;
        out.write_all(&value.type_id().to_le_bytes()).map_err(io_err)?;
        write_value(&mut out, value).map_err(io_err)?;
    }
    let mut sizes = Vec::with_capacity(tensors.len());
    let mut offset = 0u64;
    for tensor in tensors {
        let n_bytes = tensor.n_bytes()?;
        write_string(&mut out, &tensor.name).map_err(io_err)?;
        out.write_all(&(tensor.dims.len() as u32).to_le_bytes()).map_err(io_err)?;
        for d in &tensor.dims {
            out.write_all(&d.to_le_bytes()).map_err(io_err)?;
        }
        out.write_all(&tensor.ggml_type.0.to_le_bytes()).map_err(io_err)?;
        out.write_all(&offset.to_le_bytes()).map_err(io_err)?;
        sizes.push(n_bytes);
        offset = (offset + n_bytes).next_multiple_of(ALIGNMENT);
    }
    pad(&mut out).map_err(io_err)?;
    for (i, tensor) in tensors.iter().enumerate() {
        let before = out.written;
        write_data(i, &mut out).map_err(io_err)?;
        if out.written - before != sizes[i] {
            return Err(GgufError::BadTensor {
                name: tensor.name.clone(),
                reason: format!("{} bytes of data written, {} expected", out.written - before, sizes[i]),
            });
        }
        pad(&mut out).map_err(io_err)?;
    }
    out.flush().map_err(io_err)
}

fn pad(out: &mut CountingWriter<'_, impl Write>) -> io::Result<()> {
    let padding = out.written.next_multiple_of(ALIGNMENT) - out.written;
    out.write_all(&[0u8; ALIGNMENT as usize][..padding as usize])
}

fn write_string(out: &mut impl Write, s: &str) -> io::Result<()> {
    out.write_all(&(s.len() as u64).to_le_bytes())?;
    out.write_all(s.as_bytes())
}

fn write_value(out: &mut impl Write, value: &MetadataValue) -> io::Result<()> {
    match value {
        MetadataValue::U8(v) => out.write_all(&[*v]),
        MetadataValue::I8(v) => out.write_all(&v.to_le_bytes()),
        MetadataValue::U16(v) => out.write_all(&v.to_le_bytes()),
        MetadataValue::I16(v) => out.write_all(&v.to_le_bytes()),
        MetadataValue::U32(v) => out.write_all(&v.to_le_bytes()),
        MetadataValue::I32(v) => out.write_all(&v.to_le_bytes()),
        MetadataValue::F32(v) => out.write_all(&v.to_le_bytes()),
        MetadataValue::Bool(v) => out.write_all(&[u8::from(*v)]),
        MetadataValue::String(v) => write_string(out, v),
        MetadataValue::Array(items) => {
            // An empty array still needs an item type; strings are as good as any.
            let item_type = items.first().map_or(8, MetadataValue::type_id);
            out.write_all(&item_type.to_le_bytes())?;
            out.write_all(&(items.len() as u64).to_le_bytes())?;
            items.iter().try_for_each(|item| write_value(out, item))
        }
        MetadataValue::U64(v) => out.write_all(&v.to_le_bytes()),
        MetadataValue::I64(v) => out.write_all(&v.to_le_bytes()),
        MetadataValue::F64(v) => out.write_all(&v.to_le_bytes()),
    }
}

struct CountingWriter<'a, W: Write> {
    inner: &'a mut W,
    written: u64,
}

impl<W: Write> Write for CountingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
