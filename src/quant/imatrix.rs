//! Importance matrices as `llama-imatrix` writes them: the GGUF form (per tensor the sums
//! of squared activations `<name>.in_sum2` and the token counts `<name>.counts`) and the
//! older binary `.dat` form. Both become the mean squared activation of each input column.

use std::path::Path;

use super::QuantError;
use crate::gguf::{GgmlType, GgufFile};

/// Reads an importance matrix file: for each weight tensor, one importance per input
/// column (per expert for stacked expert tensors).
pub fn read_importance_matrix(path: &Path) -> Result<Vec<(String, Vec<f32>)>, QuantError> {
    let bad = |reason: String| QuantError::ImportanceMatrix { path: path.to_path_buf(), reason };
    let bytes = std::fs::read(path).map_err(|source| QuantError::Io { path: path.to_path_buf(), source })?;
    let mut entries =
        if bytes.starts_with(b"GGUF") { read_gguf(path)? } else { read_legacy(&bytes).map_err(bad)? };
    if entries.is_empty() {
        return Err(bad("it holds no entries".into()));
    }
    if let Some((name, _)) = entries.iter().find(|(_, v)| v.iter().any(|x| !x.is_finite())) {
        return Err(bad(format!("the entry for {name} holds a value that is not finite")));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(entries)
}

fn read_gguf(path: &Path) -> Result<Vec<(String, Vec<f32>)>, QuantError> {
    let bad = |reason: String| QuantError::ImportanceMatrix { path: path.to_path_buf(), reason };
    let file = GgufFile::open(path)?;
    let mut entries = Vec::new();
    for sums in &file.tensors {
        let Some(name) = sums.name.strip_suffix(".in_sum2") else { continue };
        let counts = file
            .tensor(&format!("{name}.counts"))
            .ok_or_else(|| bad(format!("{name} has sums but no counts")))?;
        if sums.ggml_type != GgmlType::F32 || counts.ggml_type != GgmlType::F32 {
            return Err(bad(format!("the sums and counts of {name} must be F32")));
        }
        let sums = f32s(&file.read_tensor_data(&sums.name)?.unwrap_or_default());
        let counts = f32s(&file.read_tensor_data(&counts.name)?.unwrap_or_default());
        if counts.is_empty() || sums.is_empty() || !sums.len().is_multiple_of(counts.len()) {
            return Err(bad(format!(
                "{name}: {} sums do not split into {} counts",
                sums.len(),
                counts.len()
            )));
        }
        let per_count = sums.len() / counts.len();
        let values = sums
            .chunks_exact(per_count)
            .zip(&counts)
            .flat_map(|(chunk, &count)| {
                // A column group never seen during collection gets neutral importance.
                let count = count.round();
                chunk.iter().map(move |&s| if count > 0.0 { s / count } else { 1.0 })
            })
            .collect();
        entries.push((name.to_string(), values));
    }
    Ok(entries)
}

/// `i32 entries`, then per entry `i32 name length, name, i32 calls, i32 values, f32 × values`;
/// anything after the entries (chunk count, dataset name) is not needed.
fn read_legacy(bytes: &[u8]) -> Result<Vec<(String, Vec<f32>)>, String> {
    let mut cursor = Cursor { bytes, at: 0 };
    let n_entries = cursor.i32()?;
    if n_entries < 1 {
        return Err("it is neither GGUF nor a legacy imatrix file with entries".into());
    }
    let mut entries = Vec::new();
    for _ in 0..n_entries {
        let len = usize::try_from(cursor.i32()?).map_err(|_| "a negative name length")?;
        let name = String::from_utf8(cursor.take(len)?.to_vec()).map_err(|_| "a name that is not UTF-8")?;
        let calls = cursor.i32()?;
        let n_values = usize::try_from(cursor.i32()?).ok().filter(|&n| n > 0).ok_or("an empty entry")?;
        let raw = cursor.take(n_values.checked_mul(4).ok_or("an entry too large")?)?;
        let divisor = if calls > 0 { calls as f32 } else { 1.0 };
        entries.push((name, f32s(raw).into_iter().map(|v| v / divisor).collect()));
    }
    Ok(entries)
}

/// Bounded reading: every length is checked against the bytes that remain.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end =
            end.ok_or_else(|| format!("it ends at byte {} in the middle of an entry", self.bytes.len()))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn i32(&mut self) -> Result<i32, String> {
        let b = self.take(4)?;
        Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::gguf::{MetadataValue, TensorSpec, write_gguf};

    fn legacy_file(entries: &[(&str, i32, &[f32])]) -> Vec<u8> {
        let mut out = (entries.len() as i32).to_le_bytes().to_vec();
        for (name, calls, values) in entries {
            out.extend((name.len() as i32).to_le_bytes());
            out.extend(name.as_bytes());
            out.extend(calls.to_le_bytes());
            out.extend((values.len() as i32).to_le_bytes());
            values.iter().for_each(|v| out.extend(v.to_le_bytes()));
        }
        out
    }

    #[test]
    fn legacy_values_are_means_over_calls() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("imatrix.dat");
        std::fs::write(&path, legacy_file(&[("blk.0.ffn_up.weight", 4, &[8.0, 2.0]), ("a", 0, &[3.0])]))
            .unwrap();
        let entries = read_importance_matrix(&path).unwrap();
        assert_eq!(entries, vec![("a".into(), vec![3.0]), ("blk.0.ffn_up.weight".into(), vec![2.0, 0.5])]);
        let bytes = std::fs::read(&path).unwrap();
        for cut in 0..bytes.len() - 1 {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            assert!(read_importance_matrix(&path).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn gguf_values_are_sums_over_counts_per_expert() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("imatrix.gguf");
        let tensors = vec![
            TensorSpec { name: "w.in_sum2".into(), dims: vec![2, 2], ggml_type: GgmlType::F32 },
            TensorSpec { name: "w.counts".into(), dims: vec![1, 2], ggml_type: GgmlType::F32 },
        ];
        let data: [&[f32]; 2] = [&[4.0, 6.0, 5.0, 7.0], &[2.0, 0.0]];
        let metadata = vec![("general.type".to_string(), MetadataValue::String("imatrix".into()))];
        let mut file = std::fs::File::create(&path).unwrap();
        write_gguf(&mut file, &metadata, &tensors, |i, out| {
            out.write_all(&data[i].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>())
        })
        .unwrap();
        let entries = read_importance_matrix(&path).unwrap();
        assert_eq!(entries, vec![("w".into(), vec![2.0, 3.0, 1.0, 1.0])]);
    }
}
