//! One weight matrix of a GGUF model and its product with activations, on
//! plain `f32` buffers: Q4_1 through our kernel (`q4_1.rs`), every other
//! type through candle's.

use std::borrow::Cow;
use std::io::{Read, Seek};

use candle_core::quantized::{gguf_file, GgmlDType, QuantizedType};
use candle_core::{CpuStorage, Device, Result};

use crate::q4_1;

pub(crate) struct Weight {
    /// Output features (rows of the matrix as stored).
    rows: usize,
    /// Input features.
    cols: usize,
    product: Product,
}

enum Product {
    /// candle's kernel for the tensor's own type.
    Direct(Box<dyn QuantizedType>),
    /// A Q4_1 tensor's blocks, as stored.
    Q4_1(Vec<u8>),
}

impl Weight {
    /// Tensor `name` of a GGUF file, `rows × cols` as stored (GGUF lists
    /// the inner dimension first).
    pub(crate) fn read<R: Read + Seek>(content: &gguf_file::Content, reader: &mut R, name: &str) -> Result<Self> {
        let tensor = content.tensor(reader, name, &Device::Cpu)?;
        let (rows, cols) = tensor.shape().dims2()?;
        let dtype = tensor.dtype();
        let data = tensor.data()?;
        Ok(Self::from_bytes(rows, cols, dtype, &data))
    }

    fn from_bytes(rows: usize, cols: usize, dtype: GgmlDType, data: &[u8]) -> Self {
        let product = match dtype {
            GgmlDType::Q4_1 => Product::Q4_1(data.to_vec()),
            other => Product::Direct(other.from_data(Cow::Borrowed(data))),
        };
        Self { rows, cols, product }
    }

    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// `out[t] = W · x[t]` for each of the `n` rows of `x` (`cols` wide);
    /// `out` holds `n × rows`.
    pub(crate) fn mul(&self, x: &[f32], n: usize, out: &mut [f32]) -> Result<()> {
        debug_assert_eq!(x.len(), n * self.cols);
        match &self.product {
            Product::Direct(w) => w.matmul_t((n, self.cols, self.rows), x, out),
            Product::Q4_1(blocks) => {
                q4_1::matmul(blocks, self.rows, &q4_1::round(x), out);
                Ok(())
            }
        }
    }

    /// Rows `ids` of the matrix, dequantized (an embedding lookup).
    pub(crate) fn rows_of(&self, ids: &[u32]) -> Result<Vec<f32>> {
        let rows = match &self.product {
            Product::Direct(w) => w.embedding(ids, self.rows, self.cols)?,
            // Only the rows asked for are handed to candle's Q4_1 type.
            Product::Q4_1(blocks) => {
                let width = self.cols / q4_1::BLOCK * q4_1::BLOCK_BYTES;
                let mut picked = Vec::with_capacity(ids.len() * width);
                for &id in ids {
                    let at = id as usize * width;
                    let Some(row) = blocks.get(at..at + width) else {
                        candle_core::bail!("token {id} is outside the embedding table of {} rows", self.rows)
                    };
                    picked.extend_from_slice(row);
                }
                GgmlDType::Q4_1.from_data(Cow::Owned(picked)).dequantize(ids.len() * self.cols)?
            }
        };
        match rows {
            CpuStorage::F32(v) => Ok(v),
            _ => candle_core::bail!("embedding rows did not come back as f32"),
        }
    }
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
    fn a_q4_1_embedding_table_is_looked_up_row_by_row() {
        let (rows, cols) = (16, 64);
        let (w, _) = sample(rows, cols);
        let q = QTensor::quantize(&Tensor::from_vec(w, (rows, cols), &Device::Cpu).unwrap(), GgmlDType::Q4_1).unwrap();
        let exact = q.dequantize(&Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
        let weight = Weight::from_bytes(rows, cols, GgmlDType::Q4_1, &q.data().unwrap());
        let got = weight.rows_of(&[3, 0, 3, 15]).unwrap();
        let want: Vec<f32> = [3, 0, 3, 15].iter().flat_map(|r| exact[*r].clone()).collect();
        assert_eq!(got, want);
        let outside = weight.rows_of(&[16]).unwrap_err().to_string();
        assert!(outside.contains("token 16 is outside the embedding table of 16 rows"), "{outside}");
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
