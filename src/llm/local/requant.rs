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
