//! ggml tensor types and llama.cpp file types, as numbered in GGUF files.

use serde::Serialize;

/// A ggml tensor element type as stored in a GGUF tensor record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct GgmlType(pub u32);

/// (id, name, elements per block, bytes per block) for every type ggml can store in a file.
const GGML_TYPES: &[(u32, &str, u64, u64)] = &[
    (0, "F32", 1, 4),
    (1, "F16", 1, 2),
    (2, "Q4_0", 32, 18),
    (3, "Q4_1", 32, 20),
    (6, "Q5_0", 32, 22),
    (7, "Q5_1", 32, 24),
    (8, "Q8_0", 32, 34),
    (9, "Q8_1", 32, 36),
    (10, "Q2_K", 256, 84),
    (11, "Q3_K", 256, 110),
    (12, "Q4_K", 256, 144),
    (13, "Q5_K", 256, 176),
    (14, "Q6_K", 256, 210),
    (15, "Q8_K", 256, 292),
    (16, "IQ2_XXS", 256, 66),
    (17, "IQ2_XS", 256, 74),
    (18, "IQ3_XXS", 256, 98),
    (19, "IQ1_S", 256, 50),
    (20, "IQ4_NL", 32, 18),
    (21, "IQ3_S", 256, 110),
    (22, "IQ2_S", 256, 82),
    (23, "IQ4_XS", 256, 136),
    (24, "I8", 1, 1),
    (25, "I16", 1, 2),
    (26, "I32", 1, 4),
    (27, "I64", 1, 8),
    (28, "F64", 1, 8),
    (29, "IQ1_M", 256, 56),
    (30, "BF16", 1, 2),
    (34, "TQ1_0", 256, 54),
    (35, "TQ2_0", 256, 66),
    (39, "MXFP4", 32, 17),
    (40, "NVFP4", 64, 36),
    (41, "Q1_0", 128, 18),
    (42, "Q2_0", 64, 18),
];

impl GgmlType {
    /// 32-bit float.
    pub const F32: GgmlType = GgmlType(0);
    /// 16-bit float.
    pub const F16: GgmlType = GgmlType(1);
    /// 8-bit blocks of 32 with one f16 scale.
    pub const Q8_0: GgmlType = GgmlType(8);

    fn entry(self) -> Option<&'static (u32, &'static str, u64, u64)> {
        GGML_TYPES.iter().find(|t| t.0 == self.0)
    }

    /// Whether this build knows the type's layout.
    pub fn is_known(self) -> bool {
        self.entry().is_some()
    }

    /// The type's name as llama.cpp prints it (`Q4_K`), or `type<N>` when unknown.
    pub fn name(self) -> String {
        self.entry().map_or_else(|| format!("type{}", self.0), |t| t.1.to_string())
    }

    /// Looks a type up by name, case-insensitively.
    pub fn from_name(name: &str) -> Option<GgmlType> {
        GGML_TYPES.iter().find(|t| t.1.eq_ignore_ascii_case(name)).map(|t| GgmlType(t.0))
    }

    /// Bytes taken by `elements` values of this type, when the count fills whole blocks.
    pub fn bytes_for(self, elements: u64) -> Option<u64> {
        let &(_, _, block, size) = self.entry()?;
        if !elements.is_multiple_of(block) {
            return None;
        }
        (elements / block).checked_mul(size)
    }

    /// Elements per quantisation block.
    pub fn block_size(self) -> Option<u64> {
        self.entry().map(|t| t.2)
    }
}

/// llama.cpp's `general.file_type` names, without the `MOSTLY_` prefix.
const FILE_TYPES: &[(u32, &str)] = &[
    (0, "F32"),
    (1, "F16"),
    (2, "Q4_0"),
    (3, "Q4_1"),
    (7, "Q8_0"),
    (8, "Q5_0"),
    (9, "Q5_1"),
    (10, "Q2_K"),
    (11, "Q3_K_S"),
    (12, "Q3_K_M"),
    (13, "Q3_K_L"),
    (14, "Q4_K_S"),
    (15, "Q4_K_M"),
    (16, "Q5_K_S"),
    (17, "Q5_K_M"),
    (18, "Q6_K"),
    (19, "IQ2_XXS"),
    (20, "IQ2_XS"),
    (21, "Q2_K_S"),
    (22, "IQ3_XS"),
    (23, "IQ3_XXS"),
    (24, "IQ1_S"),
    (25, "IQ4_NL"),
    (26, "IQ3_S"),
    (27, "IQ3_M"),
    (28, "IQ2_S"),
    (29, "IQ2_M"),
    (30, "IQ4_XS"),
    (31, "IQ1_M"),
    (32, "BF16"),
    (36, "TQ1_0"),
    (37, "TQ2_0"),
    (38, "MXFP4_MOE"),
    (39, "NVFP4"),
    (40, "Q1_0"),
    (41, "Q2_0"),
];

/// The name of a `general.file_type` value (`Q4_K_M`), or `unknown(N)`.
pub fn file_type_name(file_type: u32) -> String {
    FILE_TYPES
        .iter()
        .find(|t| t.0 == file_type)
        .map_or_else(|| format!("unknown({file_type})"), |t| t.1.to_string())
}

/// The `general.file_type` number of a name such as `Q4_K_M` (case-insensitive).
pub fn file_type_from_name(name: &str) -> Option<u32> {
    FILE_TYPES.iter().find(|t| t.1.eq_ignore_ascii_case(name)).map(|t| t.0)
}

/// Every `general.file_type` name, in number order.
pub fn file_type_names() -> impl Iterator<Item = &'static str> {
    FILE_TYPES.iter().map(|t| t.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_of_common_types() {
        assert_eq!(GgmlType::F32.bytes_for(10), Some(40));
        assert_eq!(GgmlType::from_name("q4_k").unwrap().bytes_for(512), Some(288));
        assert_eq!(GgmlType::Q8_0.bytes_for(33), None, "partial block");
        assert_eq!(GgmlType(99).bytes_for(32), None);
        assert_eq!(GgmlType(99).name(), "type99");
        assert_eq!(file_type_name(15), "Q4_K_M");
        assert_eq!(file_type_name(1234), "unknown(1234)");
        assert_eq!(file_type_from_name("q4_k_m"), Some(15));
        assert_eq!(file_type_from_name("Q4_K"), None, "aliases are the caller's business");
    }
}
