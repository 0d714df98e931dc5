//! Q4_1 matrix products: the weights as the file stores them, the
//! activations rounded to 8 bits per block of 32 with their block sums.
//!
//! candle computes Q4_1 dot products with portable scalar code (it has
//! SIMD kernels for other types only). A Q4_1 block holds
//! `w = d·q + m` (q in 0..16), so against activations `a = e·p` (p in
//! -127..=127) a block's dot product is `d·e·Σ q·p + m·(e·Σ p)`: integer
//! products of the nibbles and the 8-bit activations, and the block's
//! minimum times the activations' block sum, computed once per vector —
//! the method of llama.cpp's Q4_1 × Q8_1 kernel. Rows are shared between
//! candle's worker threads (its barrier pool, which its own kernels use).

use half::f16;

/// Values per block.
pub(crate) const BLOCK: usize = 32;

/// Bytes of a Q4_1 block: scale `d` and minimum `m` (f16 each), then 16
/// bytes holding values `j` (low nibble) and `j + 16` (high nibble).
pub(crate) const BLOCK_BYTES: usize = 20;

/// 32 activations as `e·p`, and `e·Σp`.
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) struct Rounded {
    scale: f32,
    sum: f32,
    values: [i8; BLOCK],
}

/// `x` (`n` rows of `cols`, a multiple of 32) rounded to 8 bits per block.
pub(crate) fn round(x: &[f32]) -> Vec<Rounded> {
    x.chunks_exact(BLOCK)
        .map(|block| {
            let largest = block.iter().fold(0f32, |m, v| m.max(v.abs()));
            let scale = largest / 127.0;
            let inverse = if scale > 0.0 { 1.0 / scale } else { 0.0 };
            let mut values = [0i8; BLOCK];
            for (p, v) in values.iter_mut().zip(block) {
                *p = (v * inverse).round() as i8;
            }
            let total: i32 = values.iter().map(|p| i32::from(*p)).sum();
            Rounded { scale, sum: scale * total as f32, values }
        })
        .collect()
}

/// `out[t·rows + r]` = row `r` of `weights` (`rows` rows of Q4_1 blocks)
/// · row `t` of the rounded activations, for every `t`.
pub(crate) fn matmul(weights: &[u8], rows: usize, acts: &[Rounded], out: &mut [f32]) {
    let blocks = weights.len() / rows / BLOCK_BYTES;
    let n = acts.len() / blocks;
    assert_eq!(out.len(), n * rows, "output of {n} × {rows}");
    let dot = kernel();
    let out = Shared(out.as_mut_ptr());
    candle_core::utils::barrier_pool().execute_chunked(rows, |range| {
        for r in range {
            let row = &weights[r * blocks * BLOCK_BYTES..(r + 1) * blocks * BLOCK_BYTES];
            for (t, acts) in acts.chunks_exact(blocks).enumerate() {
                // SAFETY: each (t, r) is written by exactly one worker
                // (rows are split between them) and lies inside `out`,
                // whose length was checked against n × rows above.
                unsafe { *out.at(t * rows + r) = dot(row, acts) };
            }
        }
    });
}

/// The output buffer, written by several workers at disjoint indices.
struct Shared(*mut f32);

// SAFETY: see `matmul`: workers never write the same element.
unsafe impl Sync for Shared {}

impl Shared {
    /// # Safety
    /// `i` is within the buffer, and no other thread touches element `i`.
    unsafe fn at(&self, i: usize) -> *mut f32 {
        self.0.add(i)
    }
}

type Dot = fn(&[u8], &[Rounded]) -> f32;

/// The fastest dot product this CPU runs.
fn kernel() -> Dot {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c") {
        return |row, acts| {
            // SAFETY: the CPU has the features `avx2::dot` is compiled for.
            unsafe { avx2::dot(row, acts) }
        };
    }
    portable_dot
}

/// One row's dot product with one rounded vector, in plain Rust.
pub(crate) fn portable_dot(row: &[u8], acts: &[Rounded]) -> f32 {
    let mut total = 0f32;
    for (w, a) in row.chunks_exact(BLOCK_BYTES).zip(acts) {
        let d = f16::from_le_bytes([w[0], w[1]]).to_f32();
        let m = f16::from_le_bytes([w[2], w[3]]).to_f32();
        let mut products = 0i32;
        for (j, byte) in w[4..].iter().enumerate() {
            products += i32::from(byte & 0x0F) * i32::from(a.values[j]);
            products += i32::from(byte >> 4) * i32::from(a.values[j + BLOCK / 2]);
        }
        total += d * a.scale * products as f32 + m * a.sum;
    }
    total
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Rounded, BLOCK_BYTES};
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU supports AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn dot(row: &[u8], acts: &[Rounded]) -> f32 {
        // Two blocks per step into two accumulators: one chain of fused
        // multiply-adds would wait on its own latency every block.
        let (mut even, mut odd) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let (mut shift_even, mut shift_odd) = (0f32, 0f32);
        let mut pairs = row.chunks_exact(2 * BLOCK_BYTES).zip(acts.chunks_exact(2));
        for (w, a) in &mut pairs {
            let (s0, m0) = block(&w[..BLOCK_BYTES], &a[0]);
            let (s1, m1) = block(&w[BLOCK_BYTES..], &a[1]);
            even = _mm256_add_ps(even, s0);
            odd = _mm256_add_ps(odd, s1);
            shift_even += m0;
            shift_odd += m1;
        }
        if let Some(last) = row.chunks_exact(2 * BLOCK_BYTES).remainder().get(..BLOCK_BYTES) {
            let (s, m) = block(last, &acts[acts.len() - 1]);
            even = _mm256_add_ps(even, s);
            shift_even += m;
        }
        let total = _mm256_add_ps(even, odd);
        let half = _mm_add_ps(_mm256_castps256_ps128(total), _mm256_extractf128_ps(total, 1));
        let quarter = _mm_add_ps(half, _mm_movehl_ps(half, half));
        let one = _mm_add_ss(quarter, _mm_movehdup_ps(quarter));
        _mm_cvtss_f32(one) + shift_even + shift_odd
    }

    /// One block: its scaled integer products (8 lanes to be summed) and
    /// its minimum times the activations' sum.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn block(w: &[u8], a: &Rounded) -> (__m256, f32) {
        // d and m, converted together.
        let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(i32::from_le_bytes([w[0], w[1], w[2], w[3]])));
        let d = _mm_cvtss_f32(dm);
        let m = _mm_cvtss_f32(_mm_movehdup_ps(dm));
        // SAFETY (both loads): `w` has 16 bytes after its 4-byte header,
        // `a.values` 32; unaligned loads.
        let packed = _mm_loadu_si128(w.as_ptr().add(4).cast());
        let low = _mm_set1_epi8(0x0F);
        let nibbles = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(packed, 4), low), _mm_and_si128(packed, low));
        let values = _mm256_loadu_si256(a.values.as_ptr().cast());
        // u8 × i8 pairs summed to i16 (15·127·2 cannot saturate), then to i32.
        let products = _mm256_madd_epi16(_mm256_maddubs_epi16(nibbles, values), _mm256_set1_epi16(1));
        (_mm256_mul_ps(_mm256_set1_ps(d * a.scale), _mm256_cvtepi32_ps(products)), m * a.sum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};

    /// A `rows × cols` matrix of varied magnitudes and signs, as Q4_1.
    fn weights(rows: usize, cols: usize) -> QTensor {
        let w: Vec<f32> =
            (0..rows * cols).map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.3) * (1.0 + (i % 5) as f32)).collect();
        QTensor::quantize(&Tensor::from_vec(w, (rows, cols), &Device::Cpu).unwrap(), GgmlDType::Q4_1).unwrap()
    }

    fn activations(n: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 104_729 % 997) as f32 / 997.0 - 0.5) * 2.0).collect()
    }

    #[test]
    fn the_product_is_the_q4_1_weights_times_the_activations() {
        let (rows, cols, n) = (96, 256, 3);
        let q = weights(rows, cols);
        let exact = q.dequantize(&Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
        let x = activations(n * cols);
        let mut out = vec![0f32; n * rows];
        matmul(&q.data().unwrap(), rows, &round(&x), &mut out);
        for (t, x) in x.chunks_exact(cols).enumerate() {
            for (r, row) in exact.iter().enumerate() {
                let want: f32 = row.iter().zip(x).map(|(a, b)| a * b).sum();
                // Only the activations are rounded: by at most half a step
                // of their block's 127, each.
                let bound: f32 = x
                    .chunks(BLOCK)
                    .zip(row.chunks(BLOCK))
                    .map(|(xb, wb)| {
                        let step = xb.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
                        wb.iter().map(|w| w.abs()).sum::<f32>() * step / 2.0
                    })
                    .sum();
                let got = out[t * rows + r];
                assert!((got - want).abs() <= bound * 1.01 + 1e-4, "({t}, {r}): {got} vs {want}, bound {bound}");
            }
        }
    }

    #[test]
    fn the_simd_kernel_agrees_with_the_portable_one() {
        let (rows, cols) = (8, 576);
        let q = weights(rows, cols);
        let data = q.data().unwrap();
        let acts = round(&activations(cols));
        for r in 0..rows {
            let row = &data[r * cols / BLOCK * BLOCK_BYTES..(r + 1) * cols / BLOCK * BLOCK_BYTES];
            let (fast, plain) = (kernel()(row, &acts), portable_dot(row, &acts));
            assert!((fast - plain).abs() <= 1e-4 * plain.abs().max(1.0), "row {r}: {fast} vs {plain}");
        }
    }

    #[test]
    fn a_zero_block_rounds_to_zero_without_dividing_by_it() {
        let r = round(&[0f32; BLOCK]);
        assert_eq!((r[0].scale, r[0].sum), (0.0, 0.0));
        assert!(r[0].values.iter().all(|v| *v == 0));
    }
}
