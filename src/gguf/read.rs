//! Reading a GGUF file's header: metadata and the tensor index. Every length read from the
//! file is checked against the bytes that remain, so a truncated or corrupt file gives an
//! error and never a huge allocation, a panic or an abort.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use super::types::GgmlType;
use super::{GgufError, MetadataValue, TensorInfo};

const MAGIC: &[u8; 4] = b"GGUF";
/// Dimensions a ggml tensor can have.
const MAX_DIMS: u32 = 4;
/// Nesting of arrays inside arrays that we accept (GGUF writers use one level).
const MAX_ARRAY_DEPTH: u32 = 2;
/// Elements reserved up front for a count read from the file; beyond that vectors grow as
/// elements are actually read, so a corrupt count cannot reserve more than the file holds.
const PREALLOCATE_AT_MOST: u64 = 4096;
/// The longest string we read (chat templates are kilobytes; 64 MiB is far beyond).
const MAX_STRING_BYTES: u64 = 64 << 20;

/// A GGUF file's header, read without loading tensor data.
#[derive(Debug, Clone)]
pub struct GgufFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// GGUF format version (2 or 3).
    pub version: u32,
    /// Metadata in file order.
    pub metadata: Vec<(String, MetadataValue)>,
    /// Tensor records in file order, with absolute data offsets.
    pub tensors: Vec<TensorInfo>,
    /// Alignment of tensor data (`general.alignment`, default 32).
    pub alignment: u64,
    /// Absolute offset of the tensor data section.
    pub data_offset: u64,
    /// Size of the file in bytes.
    pub file_size: u64,
}

impl GgufFile {
    /// Reads the header of the GGUF file at `path`.
    pub fn open(path: &Path) -> Result<GgufFile, GgufError> {
        let file = File::open(path).map_err(|source| GgufError::Io { path: path.to_path_buf(), source })?;
        let file_size =
            file.metadata().map_err(|source| GgufError::Io { path: path.to_path_buf(), source })?.len();
        let mut reader = HeaderReader {
            inner: BufReader::with_capacity(1 << 16, file),
            offset: 0,
            file_size,
            path: path.to_path_buf(),
        };
        reader.read_file(path)
    }

    /// The metadata value under `key`.
    pub fn get(&self, key: &str) -> Option<&MetadataValue> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// A string metadata value.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(MetadataValue::as_str)
    }

    /// An integer metadata value of any width, widened.
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(MetadataValue::as_u64)
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Option<&str> {
        self.get_str("general.architecture")
    }

    /// The tensor record named `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Reads the data of `tensor` (a record of this file) from `file`, this file opened.
    /// The header already checked that the data lies inside the file.
    pub fn read_tensor_data_into(
        &self,
        file: &File,
        tensor: &TensorInfo,
        buf: &mut Vec<u8>,
    ) -> Result<(), GgufError> {
        use std::os::unix::fs::FileExt;
        buf.resize(tensor.n_bytes as usize, 0);
        file.read_exact_at(buf, tensor.offset).map_err(|source| {
            if source.kind() == std::io::ErrorKind::UnexpectedEof {
                GgufError::Truncated {
                    path: self.path.clone(),
                    what: format!("data of tensor {}", tensor.name),
                }
            } else {
                GgufError::Io { path: self.path.clone(), source }
            }
        })
    }

    /// The data of the tensor named `name`, read from the file, or `None` without it.
    pub fn read_tensor_data(&self, name: &str) -> Result<Option<Vec<u8>>, GgufError> {
        let Some(tensor) = self.tensor(name) else { return Ok(None) };
        let file = self.reopen()?;
        let mut buf = Vec::new();
        self.read_tensor_data_into(&file, tensor, &mut buf)?;
        Ok(Some(buf))
    }

    /// Opens the file again for reading tensor data.
    pub fn reopen(&self) -> Result<File, GgufError> {
        File::open(&self.path).map_err(|source| GgufError::Io { path: self.path.clone(), source })
    }
}

struct HeaderReader {
    inner: BufReader<File>,
    offset: u64,
    file_size: u64,
    path: PathBuf,
}

impl HeaderReader {
    fn read_file(&mut self, path: &Path) -> Result<GgufFile, GgufError> {
        let mut magic = [0u8; 4];
        self.read_exact(&mut magic)?;
        if &magic != MAGIC {
            return Err(GgufError::NotGguf { path: path.to_path_buf() });
        }
        let version = self.u32()?;
        if !(2..=3).contains(&version) {
            return Err(GgufError::UnsupportedVersion { path: path.to_path_buf(), version });
        }
        let tensor_count = self.u64()?;
        let kv_count = self.u64()?;
        // Each metadata entry takes at least 12 bytes and each tensor record at least 24.
        self.check_count(kv_count, 12, "metadata entries")?;
        self.check_count(tensor_count, 24, "tensor records")?;

        let mut metadata = Vec::with_capacity(kv_count.min(PREALLOCATE_AT_MOST) as usize);
        for _ in 0..kv_count {
            let key = self.string()?;
            let value_type = self.u32()?;
            let value = self.value(value_type, 0)?;
            metadata.push((key, value));
        }
        let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
            Some((_, v)) => v
                .as_u64()
                .filter(|a| *a > 0 && a.is_power_of_two())
                .ok_or_else(|| self.invalid("general.alignment must be a power of two".to_string()))?,
            None => 32,
        };

        let mut tensors = Vec::with_capacity(tensor_count.min(PREALLOCATE_AT_MOST) as usize);
        for _ in 0..tensor_count {
            tensors.push(self.tensor_record()?);
        }
        let data_offset = self.offset.next_multiple_of(alignment);
        for tensor in &mut tensors {
            if !tensor.offset.is_multiple_of(alignment) {
                return Err(self.invalid(format!(
                    "tensor {} data offset {} is not aligned to {alignment}",
                    tensor.name, tensor.offset
                )));
            }
            tensor.offset = data_offset
                .checked_add(tensor.offset)
                .ok_or_else(|| self.invalid(format!("tensor {} offset overflows", tensor.name)))?;
            let end = tensor.offset.checked_add(tensor.n_bytes);
            if end.is_none_or(|end| end > self.file_size) {
                return Err(GgufError::Truncated {
                    path: self.path.clone(),
                    what: format!("data of tensor {}", tensor.name),
                });
            }
        }
        Ok(GgufFile {
            path: path.to_path_buf(),
            version,
            metadata,
            tensors,
            alignment,
            data_offset,
            file_size: self.file_size,
        })
    }

    fn tensor_record(&mut self) -> Result<TensorInfo, GgufError> {
        let name = self.string()?;
        let n_dims = self.u32()?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(self.invalid(format!("tensor {name} has {n_dims} dimensions")));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(self.u64()?);
        }
        let ggml_type = GgmlType(self.u32()?);
        let offset = self.u64()?;
        let elements = dims
            .iter()
            .try_fold(1u64, |acc, d| acc.checked_mul(*d))
            .ok_or_else(|| self.invalid(format!("tensor {name} element count overflows")))?;
        if !ggml_type.is_known() {
            return Err(self.invalid(format!(
                "tensor {name} has tensor type {} that this build does not know",
                ggml_type.0
            )));
        }
        let first_dim = dims[0];
        let row_fits = ggml_type.block_size().is_some_and(|b| first_dim.is_multiple_of(b));
        let n_bytes = ggml_type.bytes_for(elements).filter(|_| row_fits).ok_or_else(|| {
            self.invalid(format!(
                "tensor {name}: {} rows of {first_dim} do not fill whole blocks",
                ggml_type.name()
            ))
        })?;
        Ok(TensorInfo { name, dims, ggml_type, offset, n_bytes })
    }

    fn value(&mut self, value_type: u32, depth: u32) -> Result<MetadataValue, GgufError> {
        Ok(match value_type {
            0 => MetadataValue::U8(self.array::<1>()?[0]),
            1 => MetadataValue::I8(self.array::<1>()?[0] as i8),
            2 => MetadataValue::U16(u16::from_le_bytes(self.array()?)),
            3 => MetadataValue::I16(i16::from_le_bytes(self.array()?)),
            4 => MetadataValue::U32(self.u32()?),
            5 => MetadataValue::I32(i32::from_le_bytes(self.array()?)),
            6 => MetadataValue::F32(f32::from_le_bytes(self.array()?)),
            7 => match self.array::<1>()?[0] {
                0 => MetadataValue::Bool(false),
                1 => MetadataValue::Bool(true),
                other => return Err(self.invalid(format!("boolean byte {other}"))),
            },
            8 => MetadataValue::String(self.string()?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.invalid("arrays nested too deeply".to_string()));
                }
                let item_type = self.u32()?;
                let len = self.u64()?;
                self.check_count(len, min_value_size(item_type), "array items")?;
                let mut items = Vec::with_capacity(len.min(PREALLOCATE_AT_MOST) as usize);
                for _ in 0..len {
                    items.push(self.value(item_type, depth + 1)?);
                }
                MetadataValue::Array(items)
            }
            10 => MetadataValue::U64(self.u64()?),
            11 => MetadataValue::I64(i64::from_le_bytes(self.array()?)),
            12 => MetadataValue::F64(f64::from_le_bytes(self.array()?)),
            other => return Err(self.invalid(format!("unknown metadata value type {other}"))),
        })
    }

    /// Refuses counts that could not fit in the rest of the file, before allocating.
    fn check_count(&self, count: u64, min_size: u64, what: &str) -> Result<(), GgufError> {
        let remaining = self.file_size.saturating_sub(self.offset);
        if count.saturating_mul(min_size.max(1)) > remaining {
            return Err(GgufError::Truncated {
                path: self.path.clone(),
                what: format!("{count} {what} at byte {}", self.offset),
            });
        }
        Ok(())
    }

    fn string(&mut self) -> Result<String, GgufError> {
        let len = self.u64()?;
        self.check_count(len, 1, "string bytes")?;
        if len > MAX_STRING_BYTES {
            return Err(self.invalid(format!("a string of {len} bytes")));
        }
        let mut bytes = vec![0u8; len as usize];
        self.read_exact(&mut bytes)?;
        String::from_utf8(bytes).map_err(|_| self.invalid("a string is not UTF-8".to_string()))
    }

    fn u32(&mut self) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], GgufError> {
        let mut buf = [0u8; N];
        self.read_exact(&mut buf)?;
        Ok(buf)
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), GgufError> {
        self.inner.read_exact(buf).map_err(|source| {
            if source.kind() == std::io::ErrorKind::UnexpectedEof {
                GgufError::Truncated {
                    path: self.path.clone(),
                    what: format!("header at byte {}", self.offset),
                }
            } else {
                GgufError::Io { path: self.path.clone(), source }
            }
        })?;
        self.offset += buf.len() as u64;
        Ok(())
    }

    fn invalid(&self, what: String) -> GgufError {
        GgufError::Invalid { path: self.path.clone(), offset: self.offset, what }
    }
}

/// The fewest bytes one value of a metadata type takes in the file.
fn min_value_size(value_type: u32) -> u64 {
    match value_type {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 | 10..=12 => 8,
        9 => 12,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::{TinyModelSpec, write_tiny_model};

    /// Every prefix of a valid file, and the file with bytes flipped, gives an error or a
    /// consistent header: never a panic or a runaway allocation.
    #[test]
    fn truncated_and_corrupted_files_never_panic() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("tiny.gguf");
        write_tiny_model(&good, &TinyModelSpec { n_layer: 1, ..Default::default() }).unwrap();
        let bytes = std::fs::read(&good).unwrap();
        let header_len = GgufFile::open(&good).unwrap().data_offset as usize;
        let probe = dir.path().join("probe.gguf");
        // Every cut inside the header, then coarser cuts through the data.
        let cuts = (0..header_len).chain((header_len..bytes.len()).step_by(997));
        for cut in cuts {
            std::fs::write(&probe, &bytes[..cut]).unwrap();
            assert!(GgufFile::open(&probe).is_err(), "a file cut at {cut} must not read as whole");
        }
        // Deterministic byte flips across the header.
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..3000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut damaged = bytes.clone();
            let at = (state as usize) % header_len;
            damaged[at] ^= (state >> 32) as u8 | 1;
            std::fs::write(&probe, &damaged).unwrap();
            if let Ok(file) = GgufFile::open(&probe) {
                for t in &file.tensors {
                    assert!(t.offset + t.n_bytes <= file.file_size);
                }
            }
        }
    }

    /// Random bytes after a valid magic and version: errors, never a panic or an abort.
    #[test]
    fn random_bytes_after_the_magic_never_panic() {
        let dir = tempfile::tempdir().unwrap();
        let probe = dir.path().join("noise.gguf");
        let mut state = 0x853C_49E6_748F_EA9Bu64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..2000 {
            let mut bytes = b"GGUF".to_vec();
            bytes.extend_from_slice(&(2 + (round % 2) as u32).to_le_bytes());
            // Small counts half of the time, so reading gets past the counts into entries.
            let (tensors, kvs) = if round % 2 == 0 { (next() % 4, next() % 4) } else { (next(), next()) };
            bytes.extend_from_slice(&tensors.to_le_bytes());
            bytes.extend_from_slice(&kvs.to_le_bytes());
            let len = (next() % 512) as usize;
            bytes.extend((0..len).map(|_| next() as u8));
            std::fs::write(&probe, &bytes).unwrap();
            if let Ok(file) = GgufFile::open(&probe) {
                assert!(file.tensors.iter().all(|t| t.offset + t.n_bytes <= file.file_size));
            }
        }
    }

    #[test]
    fn not_gguf_and_huge_counts_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.gguf");
        std::fs::write(&path, b"PK\x03\x04 not a model").unwrap();
        assert!(matches!(GgufFile::open(&path), Err(GgufError::NotGguf { .. })));
        let mut header = b"GGUF".to_vec();
        header.extend_from_slice(&3u32.to_le_bytes());
        header.extend_from_slice(&u64::MAX.to_le_bytes());
        header.extend_from_slice(&u64::MAX.to_le_bytes());
        std::fs::write(&path, &header).unwrap();
        assert!(matches!(GgufFile::open(&path), Err(GgufError::Truncated { .. })));
    }
}
