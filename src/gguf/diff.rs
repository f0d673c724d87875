//! How two GGUF files differ: metadata keys added, removed or changed, and tensors added,
//! removed, re-typed or re-shaped. Tensor data is not compared.

use serde::{Deserialize, Serialize};

use super::GgufFile;

/// A metadata key whose value differs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangedValue {
    /// The key.
    pub key: String,
    /// Short rendering of the value in the first file.
    pub a: String,
    /// Short rendering of the value in the second file.
    pub b: String,
}

/// A tensor present in both files whose type or dimensions differ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangedTensor {
    /// Tensor name.
    pub name: String,
    /// Type in the first file.
    pub type_a: String,
    /// Type in the second file.
    pub type_b: String,
    /// Dimensions in the first file.
    pub dims_a: Vec<u64>,
    /// Dimensions in the second file.
    pub dims_b: Vec<u64>,
}

/// The differences between two GGUF headers.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct GgufDiff {
    /// Keys only in the first file, with their values.
    pub metadata_only_a: Vec<(String, String)>,
    /// Keys only in the second file, with their values.
    pub metadata_only_b: Vec<(String, String)>,
    /// Keys in both with different values.
    pub metadata_changed: Vec<ChangedValue>,
    /// Tensors only in the first file.
    pub tensors_only_a: Vec<String>,
    /// Tensors only in the second file.
    pub tensors_only_b: Vec<String>,
    /// Tensors in both whose type or shape differs.
    pub tensors_changed: Vec<ChangedTensor>,
    /// Tensors in both with the same type and shape.
    pub tensors_same: usize,
}

impl GgufDiff {
    /// Compares the headers of `a` and `b`.
    pub fn of(a: &GgufFile, b: &GgufFile) -> GgufDiff {
        let mut diff = GgufDiff::default();
        for (key, value) in &a.metadata {
            match b.get(key) {
                None => diff.metadata_only_a.push((key.clone(), value.summary())),
                Some(other) if other != value => diff.metadata_changed.push(ChangedValue {
                    key: key.clone(),
                    a: value.summary(),
                    b: other.summary(),
                }),
                Some(_) => {}
            }
        }
        for (key, value) in &b.metadata {
            if a.get(key).is_none() {
                diff.metadata_only_b.push((key.clone(), value.summary()));
            }
        }
        for tensor in &a.tensors {
            match b.tensor(&tensor.name) {
                None => diff.tensors_only_a.push(tensor.name.clone()),
                Some(other) if other.ggml_type != tensor.ggml_type || other.dims != tensor.dims => {
                    diff.tensors_changed.push(ChangedTensor {
                        name: tensor.name.clone(),
                        type_a: tensor.ggml_type.name(),
                        type_b: other.ggml_type.name(),
                        dims_a: tensor.dims.clone(),
                        dims_b: other.dims.clone(),
                    });
                }
                Some(_) => diff.tensors_same += 1,
            }
        }
        diff.tensors_only_b =
            b.tensors.iter().filter(|t| a.tensor(&t.name).is_none()).map(|t| t.name.clone()).collect();
        diff
    }

    /// Whether the headers agree in everything compared.
    pub fn is_empty(&self) -> bool {
        self.metadata_only_a.is_empty()
            && self.metadata_only_b.is_empty()
            && self.metadata_changed.is_empty()
            && self.tensors_only_a.is_empty()
            && self.tensors_only_b.is_empty()
            && self.tensors_changed.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::{GgmlType, MetadataValue, TensorSpec, write_gguf};

    fn write(path: &std::path::Path, metadata: &[(&str, MetadataValue)], tensors: &[(&str, u64, GgmlType)]) {
        let metadata: Vec<(String, MetadataValue)> =
            metadata.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let specs: Vec<TensorSpec> = tensors
            .iter()
            .map(|(name, n, ty)| TensorSpec { name: name.to_string(), dims: vec![*n], ggml_type: *ty })
            .collect();
        let mut file = std::fs::File::create(path).unwrap();
        write_gguf(&mut file, &metadata, &specs, |i, out| {
            out.write_all(&vec![0u8; specs[i].n_bytes().unwrap() as usize])
        })
        .unwrap();
    }

    #[test]
    fn differences_in_metadata_and_tensors() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.gguf"), dir.path().join("b.gguf"));
        let name = |s: &str| MetadataValue::String(s.into());
        write(
            &a,
            &[
                ("general.name", name("x")),
                ("general.file_type", MetadataValue::U32(0)),
                ("only.a", name("1")),
            ],
            &[("w", 64, GgmlType::F32), ("gone", 32, GgmlType::F32), ("same", 32, GgmlType::F16)],
        );
        write(
            &b,
            &[
                ("general.name", name("x")),
                ("general.file_type", MetadataValue::U32(7)),
                ("only.b", name("2")),
            ],
            &[("w", 64, GgmlType::Q8_0), ("same", 32, GgmlType::F16), ("new", 32, GgmlType::F32)],
        );
        let diff = GgufDiff::of(&GgufFile::open(&a).unwrap(), &GgufFile::open(&b).unwrap());
        assert_eq!(diff.metadata_only_a, vec![("only.a".to_string(), "\"1\"".to_string())]);
        assert_eq!(diff.metadata_only_b, vec![("only.b".to_string(), "\"2\"".to_string())]);
        assert_eq!(
            diff.metadata_changed,
            vec![ChangedValue { key: "general.file_type".into(), a: "0".into(), b: "7".into() }]
        );
        assert_eq!(diff.tensors_only_a, vec!["gone".to_string()]);
        assert_eq!(diff.tensors_only_b, vec!["new".to_string()]);
        assert_eq!(diff.tensors_changed.len(), 1);
        assert_eq!(
            (diff.tensors_changed[0].type_a.as_str(), diff.tensors_changed[0].type_b.as_str()),
            ("F32", "Q8_0")
        );
        assert_eq!(diff.tensors_same, 1);
        assert!(!diff.is_empty());
        assert!(GgufDiff::of(&GgufFile::open(&a).unwrap(), &GgufFile::open(&a).unwrap()).is_empty());
    }
}
