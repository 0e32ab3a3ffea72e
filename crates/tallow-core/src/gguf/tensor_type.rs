//! The ggml tensor types a GGUF file can name, with their block layout: how many elements one
//! block holds and how many bytes it takes. The GGUF reader uses the layout to compute (and
//! bound) every tensor's byte size before it trusts an offset; the ids and sizes are ggml's
//! (`ggml.h` `enum ggml_type`, `ggml.c` `type_traits`, the `block_*` structs of
//! `ggml-common.h`).
//!
//! Every type a current GGUF file may hold is listed, including the ones tallow cannot run
//! (IQ*, TQ*, MXFP4, I*): the reader accepts them, the weight loader rejects them by name. Ids
//! ggml has removed (4, 5: Q4_2/Q4_3; 31-33 and 36-38: the repacked Q4_0_M_N / IQ4_NL_M_N
//! types, never valid in files) are not types at all.

use std::fmt;

/// Elements per block of the k-quants and i-quants (`QK_K`).
const QK_K: usize = 256;

/// A ggml tensor type, as stored in a GGUF tensor info.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TensorType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    Q8K,
    IQ2XXS,
    IQ2XS,
    IQ3XXS,
    IQ1S,
    IQ4NL,
    IQ3S,
    IQ2S,
    IQ4XS,
    I8,
    I16,
    I32,
    I64,
    F64,
    IQ1M,
    BF16,
    TQ1_0,
    TQ2_0,
    MXFP4,
}

impl TensorType {
    /// Every type, in id order.
    pub const ALL: [TensorType; 32] = [
        TensorType::F32,
        TensorType::F16,
        TensorType::Q4_0,
        TensorType::Q4_1,
        TensorType::Q5_0,
        TensorType::Q5_1,
        TensorType::Q8_0,
        TensorType::Q8_1,
        TensorType::Q2K,
        TensorType::Q3K,
        TensorType::Q4K,
        TensorType::Q5K,
        TensorType::Q6K,
        TensorType::Q8K,
        TensorType::IQ2XXS,
        TensorType::IQ2XS,
        TensorType::IQ3XXS,
        TensorType::IQ1S,
        TensorType::IQ4NL,
        TensorType::IQ3S,
        TensorType::IQ2S,
        TensorType::IQ4XS,
        TensorType::I8,
        TensorType::I16,
        TensorType::I32,
        TensorType::I64,
        TensorType::F64,
        TensorType::IQ1M,
        TensorType::BF16,
        TensorType::TQ1_0,
        TensorType::TQ2_0,
        TensorType::MXFP4,
    ];

    /// The type with ggml id `id`; None for removed and unknown ids.
    pub fn from_id(id: u32) -> Option<TensorType> {
        Some(match id {
            0 => TensorType::F32,
            1 => TensorType::F16,
            2 => TensorType::Q4_0,
            3 => TensorType::Q4_1,
            6 => TensorType::Q5_0,
            7 => TensorType::Q5_1,
            8 => TensorType::Q8_0,
            9 => TensorType::Q8_1,
            10 => TensorType::Q2K,
            11 => TensorType::Q3K,
            12 => TensorType::Q4K,
            13 => TensorType::Q5K,
            14 => TensorType::Q6K,
            15 => TensorType::Q8K,
            16 => TensorType::IQ2XXS,
            17 => TensorType::IQ2XS,
            18 => TensorType::IQ3XXS,
            19 => TensorType::IQ1S,
            20 => TensorType::IQ4NL,
            21 => TensorType::IQ3S,
            22 => TensorType::IQ2S,
            23 => TensorType::IQ4XS,
            24 => TensorType::I8,
            25 => TensorType::I16,
            26 => TensorType::I32,
            27 => TensorType::I64,
            28 => TensorType::F64,
            29 => TensorType::IQ1M,
            30 => TensorType::BF16,
            34 => TensorType::TQ1_0,
            35 => TensorType::TQ2_0,
            39 => TensorType::MXFP4,
            _ => return None,
        })
    }

    /// The ggml id (`enum ggml_type`).
    pub fn id(self) -> u32 {
        match self {
            TensorType::F32 => 0,
            TensorType::F16 => 1,
            TensorType::Q4_0 => 2,
            TensorType::Q4_1 => 3,
            TensorType::Q5_0 => 6,
            TensorType::Q5_1 => 7,
            TensorType::Q8_0 => 8,
            TensorType::Q8_1 => 9,
            TensorType::Q2K => 10,
            TensorType::Q3K => 11,
            TensorType::Q4K => 12,
            TensorType::Q5K => 13,
            TensorType::Q6K => 14,
            TensorType::Q8K => 15,
            TensorType::IQ2XXS => 16,
            TensorType::IQ2XS => 17,
            TensorType::IQ3XXS => 18,
            TensorType::IQ1S => 19,
            TensorType::IQ4NL => 20,
            TensorType::IQ3S => 21,
            TensorType::IQ2S => 22,
            TensorType::IQ4XS => 23,
            TensorType::I8 => 24,
            TensorType::I16 => 25,
            TensorType::I32 => 26,
            TensorType::I64 => 27,
            TensorType::F64 => 28,
            TensorType::IQ1M => 29,
            TensorType::BF16 => 30,
            TensorType::TQ1_0 => 34,
            TensorType::TQ2_0 => 35,
            TensorType::MXFP4 => 39,
        }
    }

    /// The name llama.cpp and gguf-py print (`GGMLQuantizationType`): "F32", "Q4_K", "IQ2_XXS".
    pub fn name(self) -> &'static str {
        match self {
            TensorType::F32 => "F32",
            TensorType::F16 => "F16",
            TensorType::Q4_0 => "Q4_0",
            TensorType::Q4_1 => "Q4_1",
            TensorType::Q5_0 => "Q5_0",
            TensorType::Q5_1 => "Q5_1",
            TensorType::Q8_0 => "Q8_0",
            TensorType::Q8_1 => "Q8_1",
            TensorType::Q2K => "Q2_K",
            TensorType::Q3K => "Q3_K",
            TensorType::Q4K => "Q4_K",
            TensorType::Q5K => "Q5_K",
            TensorType::Q6K => "Q6_K",
            TensorType::Q8K => "Q8_K",
            TensorType::IQ2XXS => "IQ2_XXS",
            TensorType::IQ2XS => "IQ2_XS",
            TensorType::IQ3XXS => "IQ3_XXS",
            TensorType::IQ1S => "IQ1_S",
            TensorType::IQ4NL => "IQ4_NL",
            TensorType::IQ3S => "IQ3_S",
            TensorType::IQ2S => "IQ2_S",
            TensorType::IQ4XS => "IQ4_XS",
            TensorType::I8 => "I8",
            TensorType::I16 => "I16",
            TensorType::I32 => "I32",
            TensorType::I64 => "I64",
            TensorType::F64 => "F64",
            TensorType::IQ1M => "IQ1_M",
            TensorType::BF16 => "BF16",
            TensorType::TQ1_0 => "TQ1_0",
            TensorType::TQ2_0 => "TQ2_0",
            TensorType::MXFP4 => "MXFP4",
        }
    }

    /// Elements per block (`blck_size`): 1 for the plain types, 32 or 256 for quantized ones.
    pub fn block_size(self) -> usize {
        match self {
            TensorType::F32
            | TensorType::F16
            | TensorType::BF16
            | TensorType::F64
            | TensorType::I8
            | TensorType::I16
            | TensorType::I32
            | TensorType::I64 => 1,
            TensorType::Q4_0
            | TensorType::Q4_1
            | TensorType::Q5_0
            | TensorType::Q5_1
            | TensorType::Q8_0
            | TensorType::Q8_1
            | TensorType::IQ4NL
            | TensorType::MXFP4 => 32,
            TensorType::Q2K
            | TensorType::Q3K
            | TensorType::Q4K
            | TensorType::Q5K
            | TensorType::Q6K
            | TensorType::Q8K
            | TensorType::IQ2XXS
            | TensorType::IQ2XS
            | TensorType::IQ3XXS
            | TensorType::IQ1S
            | TensorType::IQ3S
            | TensorType::IQ2S
            | TensorType::IQ4XS
            | TensorType::IQ1M
            | TensorType::TQ1_0
            | TensorType::TQ2_0 => QK_K,
        }
    }

    /// Bytes per block (`type_size`, i.e. `sizeof(block_*)`); the sums spell out each struct
    /// (f16 scales are 2 bytes).
    pub fn type_size(self) -> usize {
        match self {
            TensorType::F32 => 4,
            TensorType::F16 => 2,
            TensorType::BF16 => 2,
            TensorType::F64 => 8,
            TensorType::I8 => 1,
            TensorType::I16 => 2,
            TensorType::I32 => 4,
            TensorType::I64 => 8,
            // d; qs[16]
            TensorType::Q4_0 => 2 + 16,
            // d, m; qs[16]
            TensorType::Q4_1 => 2 + 2 + 16,
            // d; qh[4]; qs[16]
            TensorType::Q5_0 => 2 + 4 + 16,
            // d, m; qh[4]; qs[16]
            TensorType::Q5_1 => 2 + 2 + 4 + 16,
            // d; qs[32]
            TensorType::Q8_0 => 2 + 32,
            // d, s; qs[32]
            TensorType::Q8_1 => 2 + 2 + 32,
            // scales[16]; qs[64]; d, dmin
            TensorType::Q2K => QK_K / 16 + QK_K / 4 + 2 + 2,
            // hmask[32]; qs[64]; scales[12]; d
            TensorType::Q3K => QK_K / 8 + QK_K / 4 + 12 + 2,
            // d, dmin; scales[12]; qs[128]
            TensorType::Q4K => 2 + 2 + 12 + QK_K / 2,
            // d, dmin; scales[12]; qh[32]; qs[128]
            TensorType::Q5K => 2 + 2 + 12 + QK_K / 8 + QK_K / 2,
            // ql[128]; qh[64]; scales[16]; d
            TensorType::Q6K => QK_K / 2 + QK_K / 4 + QK_K / 16 + 2,
            // f32 d; qs[256]; i16 bsums[16]
            TensorType::Q8K => 4 + QK_K + 2 * (QK_K / 16),
            // d; u16 qs[32]
            TensorType::IQ2XXS => 2 + 2 * (QK_K / 8),
            // d; u16 qs[32]; scales[8]
            TensorType::IQ2XS => 2 + 2 * (QK_K / 8) + QK_K / 32,
            // d; qs[96]
            TensorType::IQ3XXS => 2 + 3 * (QK_K / 8),
            // d; qs[32]; u16 qh[8]
            TensorType::IQ1S => 2 + QK_K / 8 + 2 * (QK_K / 32),
            // d; qs[16]
            TensorType::IQ4NL => 2 + 16,
            // d; qs[64]; qh[8]; signs[32]; scales[4]
            TensorType::IQ3S => 2 + QK_K / 4 + QK_K / 32 + QK_K / 8 + QK_K / 64,
            // d; qs[64]; qh[8]; scales[8]
            TensorType::IQ2S => 2 + QK_K / 4 + QK_K / 32 + QK_K / 32,
            // d; u16 scales_h; scales_l[4]; qs[128]
            TensorType::IQ4XS => 2 + 2 + QK_K / 64 + QK_K / 2,
            // qs[32]; qh[16]; scales[8]
            TensorType::IQ1M => QK_K / 8 + QK_K / 16 + QK_K / 32,
            // qs[48]; qh[4]; d
            TensorType::TQ1_0 => (QK_K - 4 * (QK_K / 64)) / 5 + QK_K / 64 + 2,
            // qs[64]; d
            TensorType::TQ2_0 => QK_K / 4 + 2,
            // e (shared exponent); qs[16]
            TensorType::MXFP4 => 1 + 16,
        }
    }

    /// Bytes taken by `elements` consecutive elements (a row); None if `elements` is not a
    /// whole number of blocks or the size overflows.
    pub fn row_bytes(self, elements: usize) -> Option<usize> {
        let block = self.block_size();
        if !elements.is_multiple_of(block) {
            return None;
        }
        (elements / block).checked_mul(self.type_size())
    }

    /// Whether the type is a block-quantized one (block size above 1).
    pub fn is_quantized(self) -> bool {
        self.block_size() > 1
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (id, name, block size, bytes per block) for every type, copied from gguf-py's
    /// `GGML_QUANT_SIZES` (an independent table of the same numbers ggml.c's type_traits hold)
    /// with the sums evaluated.
    const REFERENCE: [(u32, &str, usize, usize); 32] = [
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
    ];

    #[test]
    fn layouts_match_ggml() {
        for (ty, &(id, name, block, bytes)) in TensorType::ALL.iter().zip(REFERENCE.iter()) {
            assert_eq!(ty.id(), id, "{ty:?}");
            assert_eq!(ty.name(), name, "{ty:?}");
            assert_eq!(ty.block_size(), block, "{ty:?}");
            assert_eq!(ty.type_size(), bytes, "{ty:?}");
            assert_eq!(TensorType::from_id(id), Some(*ty));
        }
    }

    #[test]
    fn removed_and_unknown_ids_are_none() {
        for id in [4, 5, 31, 32, 33, 36, 37, 38, 40, 41, 42, 43, 255, u32::MAX] {
            assert_eq!(TensorType::from_id(id), None, "id {id}");
        }
        let known = (0..64)
            .filter(|&id| TensorType::from_id(id).is_some())
            .count();
        assert_eq!(known, TensorType::ALL.len());
    }

    #[test]
    fn row_bytes() {
        assert_eq!(TensorType::F32.row_bytes(7), Some(28));
        assert_eq!(TensorType::Q4_0.row_bytes(64), Some(36));
        assert_eq!(TensorType::Q4_0.row_bytes(48), None);
        assert_eq!(TensorType::Q6K.row_bytes(4096), Some(16 * 210));
        assert_eq!(TensorType::Q4K.row_bytes(128), None);
        assert_eq!(TensorType::F16.row_bytes(0), Some(0));
        assert_eq!(TensorType::F64.row_bytes(usize::MAX / 4), None);
        assert_eq!(TensorType::I8.row_bytes(usize::MAX), Some(usize::MAX));
        assert_eq!(TensorType::Q8_0.row_bytes(usize::MAX - 31), None);
    }
}
