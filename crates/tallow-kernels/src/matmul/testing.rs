//! The test bench every kernel goes through: random weights quantized by our quantizers,
//! dequantized by candle's independent implementation of the ggml layouts, multiplied in f64 by
//! the converted activations, and compared with the kernel on every instruction set tier this
//! CPU has, every tile shape, and row lengths from a single block up.

use super::activations::{read_block, Q8Block, Q8KBlock};
use super::{
    kernel, matmul_on, ActFormat, Isa, Layout, Panel, Tile, Weights, MAX_TILE, PANEL_ROWS,
};
use crate::{quantize_rows, QuantType};
use candle_core::quantized::k_quants::{
    BlockQ4K, BlockQ4_0, BlockQ5_0, BlockQ6K, BlockQ8_0, GgmlType,
};

/// The weight types with kernels.
pub const TYPES: [QuantType; 6] = [
    QuantType::F16,
    QuantType::Q4_0,
    QuantType::Q5_0,
    QuantType::Q8_0,
    QuantType::Q4K,
    QuantType::Q6K,
];

/// Row lengths to test: 1, 2, 3, 5 and 8 blocks (odd counts leave SIMD tails); for F16, lengths
/// that are not multiples of any vector width.
pub fn row_lengths(ty: QuantType) -> Vec<usize> {
    match ty.block_size() {
        1 => vec![1, 3, 8, 15, 16, 17, 33, 64, 100, 257],
        b => [1, 2, 3, 5, 8].iter().map(|n| n * b).collect(),
    }
}

/// Deterministic values: mostly uniform in ±1 with a few ±8 outliers, as activations have.
pub fn random_values(count: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..count)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let unit = (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
            if state.is_multiple_of(61) {
                unit * 8.0
            } else {
                unit
            }
        })
        .collect()
}

fn dequantize_with<T: GgmlType>(bytes: &[u8], out: &mut [f32]) {
    let count = bytes.len() / size_of::<T>();
    let blocks: Vec<T> = (0..count)
        .map(|i| read_block::<T>(&bytes[i * size_of::<T>()..]))
        .collect();
    T::to_float(&blocks, out);
}

/// Weights in ggml's layout back to f32, by candle.
pub fn dequantize(ty: QuantType, bytes: &[u8], values: usize) -> Vec<f32> {
    let mut out = vec![0f32; values];
    match ty {
        QuantType::F16 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        QuantType::Q4_0 => dequantize_with::<BlockQ4_0>(bytes, &mut out),
        QuantType::Q5_0 => dequantize_with::<BlockQ5_0>(bytes, &mut out),
        QuantType::Q8_0 => dequantize_with::<BlockQ8_0>(bytes, &mut out),
        QuantType::Q4K => dequantize_with::<BlockQ4K>(bytes, &mut out),
        QuantType::Q6K => dequantize_with::<BlockQ6K>(bytes, &mut out),
        other => panic!("no test dequantizer for {other:?}"),
    }
    out
}

/// Converted activations back to the values they stand for.
pub fn decode_activations(format: ActFormat, bytes: &[u8], values: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(values);
    match format {
        ActFormat::Q8 => {
            for b in bytes.chunks_exact(size_of::<Q8Block>()) {
                let b: Q8Block = read_block(b);
                assert_eq!(b.sum, b.qs.iter().map(|&q| q as i32).sum::<i32>());
                out.extend(b.qs.iter().map(|&q| b.d * q as f32));
            }
        }
        ActFormat::Q8K => {
            for b in bytes.chunks_exact(size_of::<Q8KBlock>()) {
                let b: Q8KBlock = read_block(b);
                out.extend(b.qs.iter().map(|&q| b.d * q as f32));
            }
        }
        ActFormat::F16 => {
            for b in bytes.chunks_exact(4) {
                let x = f32::from_le_bytes(b.try_into().unwrap());
                assert_eq!(x, half::f16::from_f32(x).to_f32(), "an f16 value");
                out.push(x);
            }
        }
    }
    assert_eq!(out.len(), values);
    out
}

/// `bytes` as a matrix of `rows` rows of `cols` values in `layout`.
fn matrix(ty: QuantType, layout: Layout, bytes: &[u8], rows: usize, cols: usize) -> Weights<'_> {
    Weights {
        ty,
        layout,
        bytes,
        rows,
        cols,
    }
}

/// `w` (`rows` rows of `k` values in [`Layout::Rows`]) in `layout`.
pub fn laid_out(ty: QuantType, layout: Layout, w: &[u8], rows: usize, k: usize) -> Vec<u8> {
    match layout {
        Layout::Rows => w.to_vec(),
        Layout::Interleaved => {
            let mut out = vec![0u8; w.len()];
            matrix(ty, Layout::Rows, w, rows, k).interleave_into(&mut out);
            out
        }
    }
}

/// Operands for `n` weight rows and `m` activation rows of length `k`, with the f64 products
/// and Σ|w·a| (the scale of the rounding error) of every pair, indexed [c][r].
pub struct Case {
    pub w: Vec<u8>,
    pub w_row_bytes: usize,
    pub a_f32: Vec<f32>,
    pub a: Vec<u8>,
    pub a_row_bytes: usize,
    pub expected: Vec<Vec<f64>>,
    pub magnitude: Vec<Vec<f64>>,
}

pub fn case(ty: QuantType, m: usize, n: usize, k: usize, seed: u64) -> Case {
    let format = kernel(ty, Isa::Scalar).expect("kernel").act;
    let w_f32 = random_values(n * k, seed);
    let w_row_bytes = k / ty.block_size() * ty.block_bytes();
    let mut w = vec![0u8; n * w_row_bytes];
    quantize_rows(ty, &w_f32, k, &mut w);
    let a_f32 = random_values(m * k, seed ^ 0xA5A5);
    let a_row_bytes = format.row_bytes(k);
    let mut a = vec![0u8; m * a_row_bytes];
    for (x, out) in a_f32.chunks(k).zip(a.chunks_mut(a_row_bytes)) {
        format.convert_row(x, out);
    }
    let w_values = dequantize(ty, &w, n * k);
    let a_values = decode_activations(format, &a, m * k);
    let mut expected = vec![vec![0f64; n]; m];
    let mut magnitude = vec![vec![0f64; n]; m];
    for c in 0..m {
        for r in 0..n {
            for i in 0..k {
                let p = w_values[r * k + i] as f64 * a_values[c * k + i] as f64;
                expected[c][r] += p;
                magnitude[c][r] += p.abs();
            }
        }
    }
    Case {
        w,
        w_row_bytes,
        a_f32,
        a,
        a_row_bytes,
        expected,
        magnitude,
    }
}

/// The kernel's result agrees with the f64 product up to f32 rounding of the block sums.
pub fn assert_close(got: f32, expected: f64, magnitude: f64, what: &str) {
    let tolerance = 2e-5 * magnitude + 1e-6;
    assert!(
        (got as f64 - expected).abs() <= tolerance,
        "{what}: got {got}, expected {expected} (tolerance {tolerance:.3e})"
    );
}

/// Every tile shape 1..=MAX_TILE × 1..=MAX_TILE, every row length and every layout, on every
/// tier this CPU has.
#[allow(clippy::needless_range_loop)] // out[r][col] reads as the tile it is
pub fn check_tiles(ty: QuantType) {
    for &isa in Isa::available() {
        let tile_fn = kernel(ty, isa).expect("kernel").tile;
        for (seed, k) in row_lengths(ty).into_iter().enumerate() {
            let c = case(ty, MAX_TILE, MAX_TILE, k, seed as u64 + 1);
            for (&layout, rows) in Layout::all_for(ty)
                .iter()
                .flat_map(|l| std::iter::repeat(l).zip(1..=MAX_TILE))
            {
                for cols in 1..=MAX_TILE {
                    // Exactly the bytes of the tile (a whole group of `rows` rows), so a read
                    // past them is out of bounds.
                    let w = laid_out(ty, layout, &c.w[..rows * c.w_row_bytes], rows, k);
                    let (w_row_stride, w_block_stride) = matrix(ty, layout, &w, rows, k).strides(0);
                    let a = c.a[..cols * c.a_row_bytes].to_vec();
                    let tile = Tile {
                        w: &w,
                        w_row_stride,
                        w_block_stride,
                        rows,
                        a: &a,
                        a_row_bytes: c.a_row_bytes,
                        cols,
                        blocks: k / ty.block_size(),
                    };
                    let mut out = [[f32::NAN; MAX_TILE]; MAX_TILE];
                    tile_fn(&tile, &mut out);
                    for r in 0..rows {
                        for col in 0..cols {
                            assert_close(
                                out[r][col],
                                c.expected[col][r],
                                c.magnitude[col][r],
                                &format!(
                                    "{ty:?} {layout:?} on {} k={k} tile {rows}x{cols} [{r}][{col}]",
                                    isa.name()
                                ),
                            );
                        }
                    }
                }
            }
        }
    }
}

/// Every panel of a matrix of 2 whole panels and a short one (half a panel and 5 rows), against
/// 13 activation rows (a pass's worth and a remainder), every row length and layout, on every
/// tier this CPU has a panel kernel for.
pub fn check_panels(ty: QuantType) {
    let (m, n) = (13, 2 * PANEL_ROWS + PANEL_ROWS / 2 + 5);
    for &isa in Isa::available() {
        let Some(panel_fn) = kernel(ty, isa).expect("kernel").panel else {
            continue;
        };
        for (seed, k) in row_lengths(ty).into_iter().enumerate() {
            let c = case(ty, m, n, k, seed as u64 + 7);
            for &layout in Layout::all_for(ty) {
                let bytes = laid_out(ty, layout, &c.w, n, k);
                let w = matrix(ty, layout, &bytes, n, k);
                for first in (0..n).step_by(PANEL_ROWS) {
                    let panel = Panel {
                        w,
                        first,
                        a: &c.a,
                        a_row_bytes: c.a_row_bytes,
                    };
                    let mut out = vec![[f32::NAN; PANEL_ROWS]; m];
                    panel_fn(&panel, &mut out);
                    for (col, out) in out.iter().enumerate() {
                        for (r, &got) in out.iter().enumerate().take(panel.rows()) {
                            let row = first + r;
                            assert_close(
                                got,
                                c.expected[col][row],
                                c.magnitude[col][row],
                                &format!(
                                    "{ty:?} {layout:?} panel on {} k={k} [{col}][{row}]",
                                    isa.name()
                                ),
                            );
                        }
                    }
                }
            }
        }
    }
}

/// The whole product through the driver in `layout`, on one thread and on a pool of three.
pub fn check_matmul(isa: Isa, ty: QuantType, layout: Layout, m: usize, n: usize, k: usize) {
    let c = case(ty, m, n, k, (m * 1000 + n) as u64);
    let bytes = laid_out(ty, layout, &c.w, n, k);
    let w = matrix(ty, layout, &bytes, n, k);
    for threads in [1, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let mut dst = vec![f32::NAN; m * n];
        pool.install(|| matmul_on(isa, &w, &c.a_f32, &mut dst));
        for col in 0..m {
            for r in 0..n {
                assert_close(
                    dst[col * n + r],
                    c.expected[col][r],
                    c.magnitude[col][r],
                    &format!(
                        "{ty:?} {layout:?} on {} [{m}x{k}]·[{n}x{k}]ᵀ at [{col}, {r}], {threads} threads",
                        isa.name()
                    ),
                );
            }
        }
    }
}
