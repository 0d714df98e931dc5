//! Q4_1 weights re-encoded as Q8_0 as the model loads.
//!
//! candle computes Q4_1 dot products with portable scalar code (it has no
//! SIMD kernel for that type), and Q8_0 ones with AVX2 / NEON kernels, so a
//! Q4_1 file decodes several times slower than llama.cpp runs it. Q8_0
//! holds each Q4_1 value to within 1/254 of its block's largest magnitude,
//! far inside the 4-bit step the value came from; the weights take 1.7×
//! the memory (34 bytes per 32 values instead of 20).

use std::io::{Cursor, Read, Seek};

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::Device;

/// Whether any tensor is of a type candle has no fast kernel for.
pub(super) fn worthwhile(content: &gguf_file::Content) -> bool {
    content.tensor_infos.values().any(|t| t.ggml_dtype == GgmlDType::Q4_1)
}

/// The same model with its Q4_1 tensors as Q8_0: the new file's header and
/// the reader of its bytes (in memory), for `ModelWeights::from_gguf`.
pub(super) fn as_q8_0<R: Read + Seek>(
    content: &gguf_file::Content,
    reader: &mut R,
) -> candle_core::Result<(gguf_file::Content, Cursor<Vec<u8>>)> {
    let mut tensors = Vec::with_capacity(content.tensor_infos.len());
    for (name, info) in &content.tensor_infos {
        let tensor = content.tensor(reader, name, &Device::Cpu)?;
        let tensor = if info.ggml_dtype == GgmlDType::Q4_1 {
            QTensor::quantize(&tensor.dequantize(&Device::Cpu)?, GgmlDType::Q8_0)?
        } else {
            tensor
        };
        tensors.push((name.as_str(), tensor));
    }
    let metadata: Vec<(&str, &gguf_file::Value)> = content.metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    let mut file = Cursor::new(Vec::new());
    gguf_file::write(&mut file, &metadata, &tensors)?;
    file.set_position(0);
    let header = gguf_file::Content::read(&mut file)?;
    Ok((header, file))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped SmolLM2 file (`make models`, or `CAXTON_MODELS_DIR`).
    fn smollm2() -> std::path::PathBuf {
        std::env::var_os("CAXTON_MODELS_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/models").into())
            .join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    }

    #[test]
    fn every_q4_1_weight_survives_as_q8_0_within_its_block_step() {
        let mut file = std::fs::File::open(smollm2()).expect("the SmolLM2 weights: `make models`");
        let content = gguf_file::Content::read(&mut file).unwrap();
        assert!(worthwhile(&content), "the shipped file is Q4_1");
        let (converted, mut bytes) = as_q8_0(&content, &mut file).unwrap();
        assert_eq!(converted.tensor_infos.len(), content.tensor_infos.len());
        assert_eq!(converted.metadata.len(), content.metadata.len(), "the tokenizer and hyperparameters carried over");
        let mut checked = 0;
        for (name, info) in &content.tensor_infos {
            let after = converted.tensor(&mut bytes, name, &Device::Cpu).unwrap();
            if info.ggml_dtype != GgmlDType::Q4_1 {
                assert_eq!(after.dtype(), info.ggml_dtype, "{name} is left as it was");
                continue;
            }
            assert_eq!(after.dtype(), GgmlDType::Q8_0, "{name}");
            let before = content.tensor(&mut file, name, &Device::Cpu).unwrap();
            let flat =
                |t: &QTensor| t.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let (x, y) = (flat(&before), flat(&after));
            assert_eq!(x.len(), y.len(), "{name}");
            for (bx, by) in x.chunks(32).zip(y.chunks(32)) {
                let largest = bx.iter().fold(0f32, |m, v| m.max(v.abs()));
                for (a, b) in bx.iter().zip(by) {
                    // Half a Q8_0 step, plus up to 127 times the f16
                    // rounding of that step (2^-11 of it).
                    let bound = largest * (1.0 / 254.0 + 1.0 / 2048.0) + 1e-6;
                    assert!((a - b).abs() <= bound, "{name}: {a} became {b} (block's largest {largest})");
                }
            }
            checked += 1;
        }
        assert!(checked > 0);
    }
}
