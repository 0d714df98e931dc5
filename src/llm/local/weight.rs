//! One weight matrix of a GGUF model and its product with activations, on
//! plain `f32` buffers through candle's quantized kernels.
//!
//! candle has SIMD kernels for Q4_0 but computes Q4_1 dot products with
//! portable scalar code. A Q4_1 block holds `w = d·q + m` (q in 0..16); the
//! same nibbles read as Q4_0 give `d·(q − 8)`, so
//! `w·x = Q4_0(d, q)·x + (8d + m)·Σx` over each block of 32: the Q4_0 part
//! runs on candle's kernel, and the second term is one offset per block
//! times the activations' block sums — a product 32 times smaller. Nothing
//! is re-quantized: the weights keep their exact Q4_1 values, and memory
//! traffic stays close to the file's own (18 bytes plus a 4-byte offset per
//! block of 32, against Q4_1's 20).

use std::borrow::Cow;
use std::io::{Read, Seek};

use candle_core::quantized::{gguf_file, GgmlDType, QuantizedType};
use candle_core::{CpuStorage, Device, Result};

/// Values per Q4_0 / Q4_1 block.
const BLOCK: usize = 32;

/// Bytes of a Q4_1 block: scale `d` and minimum `m` (f16 each), 16 bytes of nibbles.
const Q4_1_BYTES: usize = 20;

pub(super) struct Weight {
    /// Output features (rows of the matrix as stored).
    rows: usize,
    /// Input features.
    cols: usize,
    product: Product,
}

enum Product {
    /// candle's kernel for the tensor's own type.
    Direct(Box<dyn QuantizedType>),
    /// A Q4_1 tensor: its Q4_0 reading, and `8d + m` per block as an
    /// `f32` matrix of `rows × cols/32`.
    Q4_1 { scaled: Box<dyn QuantizedType>, offsets: Box<dyn QuantizedType> },
}

impl Weight {
    /// Tensor `name` of a GGUF file, `rows × cols` as stored (GGUF lists
    /// the inner dimension first).
    pub(super) fn read<R: Read + Seek>(content: &gguf_file::Content, reader: &mut R, name: &str) -> Result<Self> {
        let tensor = content.tensor(reader, name, &Device::Cpu)?;
        let (rows, cols) = tensor.shape().dims2()?;
        let dtype = tensor.dtype();
        let data = tensor.data()?;
        Ok(Self::from_bytes(rows, cols, dtype, &data))
    }

    fn from_bytes(rows: usize, cols: usize, dtype: GgmlDType, data: &[u8]) -> Self {
        let product = match dtype {
            GgmlDType::Q4_1 => {
                let (scaled, offsets) = split_q4_1(data);
                Product::Q4_1 {
                    scaled: GgmlDType::Q4_0.from_data(Cow::Owned(scaled)),
                    offsets: GgmlDType::F32.from_data(Cow::Owned(f32_bytes(&offsets))),
                }
            }
            other => Product::Direct(other.from_data(Cow::Borrowed(data))),
        };
        Self { rows, cols, product }
    }

    pub(super) fn rows(&self) -> usize {
        self.rows
    }

    /// `out[t] = W · x[t]` for each of the `n` rows of `x` (`cols` wide);
    /// `out` holds `n × rows`.
    pub(super) fn mul(&self, x: &[f32], n: usize, out: &mut [f32]) -> Result<()> {
        debug_assert_eq!(x.len(), n * self.cols);
        match &self.product {
            Product::Direct(w) => w.matmul_t((n, self.cols, self.rows), x, out),
            Product::Q4_1 { scaled, offsets } => {
                scaled.matmul_t((n, self.cols, self.rows), x, out)?;
                let blocks = self.cols / BLOCK;
                let sums: Vec<f32> = x.chunks_exact(BLOCK).map(|b| b.iter().sum()).collect();
                let mut shifted = vec![0f32; n * self.rows];
                offsets.matmul_t((n, blocks, self.rows), &sums, &mut shifted)?;
                for (o, s) in out.iter_mut().zip(&shifted) {
                    *o += s;
                }
                Ok(())
            }
        }
    }

    /// Rows `ids` of the matrix, dequantized (an embedding lookup).
    pub(super) fn rows_of(&self, ids: &[u32]) -> Result<Vec<f32>> {
        let Product::Direct(w) = &self.product else {
            candle_core::bail!("an embedding table stored as Q4_1 is not supported")
        };
        match w.embedding(ids, self.rows, self.cols)? {
            CpuStorage::F32(v) => Ok(v),
            _ => candle_core::bail!("embedding rows did not come back as f32"),
        }
    }
}

/// A Q4_1 tensor's bytes as Q4_0 blocks (the same scale and nibbles) and
/// one `8d + m` per block.
fn split_q4_1(data: &[u8]) -> (Vec<u8>, Vec<f32>) {
    let blocks = data.len() / Q4_1_BYTES;
    let mut scaled = Vec::with_capacity(blocks * (Q4_1_BYTES - 2));
    let mut offsets = Vec::with_capacity(blocks);
    for block in data.chunks_exact(Q4_1_BYTES) {
        let d = half::f16::from_le_bytes([block[0], block[1]]).to_f32();
        let m = half::f16::from_le_bytes([block[2], block[3]]).to_f32();
        scaled.extend_from_slice(&block[..2]);
        scaled.extend_from_slice(&block[4..]);
        offsets.push(8.0 * d + m);
    }
    (scaled, offsets)
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::QTensor;
    use candle_core::Tensor;

    /// A `rows × cols` matrix of varied magnitudes, and a vector.
    fn sample(rows: usize, cols: usize) -> (Vec<f32>, Vec<f32>) {
        let w = (0..rows * cols).map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.3) * (1.0 + (i % 5) as f32)).collect();
        let x = (0..cols).map(|i| ((i * 104_729 % 997) as f32 / 997.0 - 0.5) * 2.0).collect();
        (w, x)
    }

    #[test]
    fn q4_1_through_the_q4_0_kernel_equals_the_q4_1_product() {
        let (rows, cols) = (96, 256);
        let (w, x) = sample(rows, cols);
        let q = QTensor::quantize(&Tensor::from_vec(w, (rows, cols), &Device::Cpu).unwrap(), GgmlDType::Q4_1).unwrap();
        let exact = q.dequantize(&Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
        let weight = Weight::from_bytes(rows, cols, GgmlDType::Q4_1, &q.data().unwrap());
        assert!(matches!(weight.product, Product::Q4_1 { .. }));
        let mut out = vec![0f32; rows];
        weight.mul(&x, 1, &mut out).unwrap();
        let scale: f32 = x.iter().map(|v| v.abs()).sum();
        for (r, row) in exact.iter().enumerate() {
            let want: f32 = row.iter().zip(&x).map(|(a, b)| a * b).sum();
            // The activations are rounded to 8 bits for the Q4_0 kernel,
            // as for candle's Q4_1 one: within 1% of Σ|x|·max|w|.
            let largest = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!((out[r] - want).abs() <= 0.01 * scale * largest, "row {r}: {} vs {want}", out[r]);
        }
    }

    #[test]
    fn several_rows_of_activations_at_once_match_one_at_a_time() {
        let (rows, cols) = (64, 128);
        let (w, x) = sample(rows, cols);
        let q = QTensor::quantize(&Tensor::from_vec(w, (rows, cols), &Device::Cpu).unwrap(), GgmlDType::Q4_1).unwrap();
        let weight = Weight::from_bytes(rows, cols, GgmlDType::Q4_1, &q.data().unwrap());
        let xs: Vec<f32> = x.iter().chain(x.iter().rev()).copied().collect();
        let mut both = vec![0f32; 2 * rows];
        weight.mul(&xs, 2, &mut both).unwrap();
        for t in 0..2 {
            let mut one = vec![0f32; rows];
            weight.mul(&xs[t * cols..(t + 1) * cols], 1, &mut one).unwrap();
            assert_eq!(&both[t * rows..(t + 1) * rows], &one[..], "row {t}");
        }
    }
}
