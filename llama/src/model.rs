//! The forward pass of a llama-architecture GGUF model (SmolLM2), on plain
//! `f32` buffers: the matrix products in `weight.rs` (our Q4_1 kernel,
//! candle's for the other types), everything else written out here.
//!
//! Why our own rather than `candle_transformers`' quantized llama: there,
//! every token appends to the KV cache by concatenation (a copy of the
//! whole cache per layer and token), repeats the shared key/value heads
//! for grouped-query attention (another copy), and runs some forty tensor
//! ops per layer, each allocating. Here the cache is allocated once per
//! generation and written in place, each query head reads its shared
//! key/value head directly, and a decode step allocates a handful of
//! buffers. The model itself is read as stored: no weight changes type.

use std::io::{Read, Seek};

use candle_core::quantized::gguf_file;
use candle_core::Result;

use crate::weight::Weight;

/// Positions one generation can hold: prompt and answer together.
pub const WINDOW: usize = 4096;

struct Shape {
    embedding: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    rope_dim: usize,
    eps: f32,
}

struct Layer {
    attn_norm: Vec<f32>,
    q: Weight,
    k: Weight,
    v: Weight,
    o: Weight,
    ffn_norm: Vec<f32>,
    gate: Weight,
    up: Weight,
    down: Weight,
}

pub struct Llama {
    shape: Shape,
    embeddings: Weight,
    /// None: the output projection is the embedding table (tied).
    output: Option<Weight>,
    layers: Vec<Layer>,
    norm: Vec<f32>,
    /// `base^(-2i/rope_dim)` for each rotated pair.
    inv_freq: Vec<f32>,
}

/// One generation's keys and values, for every layer: `kv_heads` runs of
/// `capacity` positions of `head_dim` values each.
pub struct Cache {
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    capacity: usize,
    len: usize,
}

impl Llama {
    pub fn read<R: Read + Seek>(content: &gguf_file::Content, reader: &mut R) -> Result<Self> {
        let meta = |key: &str| {
            content.metadata.get(key).ok_or_else(|| candle_core::Error::Msg(format!("metadata `{key}` is missing")))
        };
        let arch = meta("general.architecture")?.to_string()?;
        if arch != "llama" {
            candle_core::bail!("architecture `{arch}` is not supported (llama only)");
        }
        let count = |key: &str| -> Result<usize> { Ok(meta(key)?.to_u32()? as usize) };
        let embedding = count("llama.embedding_length")?;
        let heads = count("llama.attention.head_count")?;
        let kv_heads = count("llama.attention.head_count_kv")?;
        let head_dim = embedding / heads;
        let rope_dim = count("llama.rope.dimension_count").unwrap_or(head_dim);
        let base = meta("llama.rope.freq_base").and_then(|v| v.to_f32()).unwrap_or(10_000.0);
        let eps = meta("llama.attention.layer_norm_rms_epsilon")?.to_f32()?;
        if heads == 0 || kv_heads == 0 || heads % kv_heads != 0 || rope_dim > head_dim || rope_dim % 2 != 0 {
            candle_core::bail!(
                "inconsistent shape: {heads} heads, {kv_heads} key/value heads, rope over {rope_dim} of {head_dim}"
            );
        }
        let embeddings = weight(content, reader, "token_embd.weight")?;
        let output = match content.tensor_infos.contains_key("output.weight") {
            true => Some(weight(content, reader, "output.weight")?),
            false => None,
        };
        let mut layers = Vec::new();
        for i in 0..count("llama.block_count")? {
            let p = format!("blk.{i}");
            layers.push(Layer {
                attn_norm: vector(content, reader, &format!("{p}.attn_norm.weight"))?,
                q: weight(content, reader, &format!("{p}.attn_q.weight"))?,
                k: weight(content, reader, &format!("{p}.attn_k.weight"))?,
                v: weight(content, reader, &format!("{p}.attn_v.weight"))?,
                o: weight(content, reader, &format!("{p}.attn_output.weight"))?,
                ffn_norm: vector(content, reader, &format!("{p}.ffn_norm.weight"))?,
                gate: weight(content, reader, &format!("{p}.ffn_gate.weight"))?,
                up: weight(content, reader, &format!("{p}.ffn_up.weight"))?,
                down: weight(content, reader, &format!("{p}.ffn_down.weight"))?,
            });
        }
        let norm = vector(content, reader, "output_norm.weight")?;
        let inv_freq = (0..rope_dim / 2).map(|i| base.powf(-((2 * i) as f32) / rope_dim as f32)).collect();
        let shape = Shape { embedding, heads, kv_heads, head_dim, rope_dim, eps };
        Ok(Self { shape, embeddings, output, layers, norm, inv_freq })
    }

    /// Entries in the vocabulary (the width of the logits).
    pub fn vocabulary(&self) -> usize {
        self.output().rows()
    }

    /// The output projection: its own, or the embedding table (tied).
    fn output(&self) -> &Weight {
        self.output.as_ref().unwrap_or(&self.embeddings)
    }

    /// An empty cache for a generation of up to `positions` tokens.
    pub fn cache(&self, positions: usize) -> Cache {
        let per_layer = self.shape.kv_heads * positions * self.shape.head_dim;
        let layers = self.layers.len();
        Cache {
            keys: vec![vec![0.0; per_layer]; layers],
            values: vec![vec![0.0; per_layer]; layers],
            capacity: positions,
            len: 0,
        }
    }

    /// Runs `tokens` (the positions after those in `cache`) through the
    /// model, keeping their keys and values; the logits of the last one.
    pub fn forward(&self, tokens: &[u32], cache: &mut Cache) -> Result<Vec<f32>> {
        let n = tokens.len();
        if n == 0 || cache.len + n > cache.capacity {
            candle_core::bail!("{n} tokens do not fit the cache ({} of {} used)", cache.len, cache.capacity);
        }
        let s = &self.shape;
        let (q_width, kv_width) = (s.heads * s.head_dim, s.kv_heads * s.head_dim);
        let mut x = self.embeddings.rows_of(tokens)?;
        let (cos, sin) = self.rotations(cache.len, n);
        let mut q = vec![0.0; n * q_width];
        let mut k = vec![0.0; n * kv_width];
        let mut v = vec![0.0; n * kv_width];
        let mut attended = vec![0.0; n * q_width];
        let mut projected = vec![0.0; n * s.embedding];
        let (mut gate, mut up) = (Vec::new(), Vec::new());
        for (l, layer) in self.layers.iter().enumerate() {
            let h = rms_norm(&x, &layer.attn_norm, s.eps);
            layer.q.mul(&h, n, &mut q)?;
            layer.k.mul(&h, n, &mut k)?;
            layer.v.mul(&h, n, &mut v)?;
            self.rotate(&mut q, s.heads, &cos, &sin);
            self.rotate(&mut k, s.kv_heads, &cos, &sin);
            cache.store(l, s, &k, &v);
            self.attend(&q, cache, l, n, &mut attended);
            layer.o.mul(&attended, n, &mut projected)?;
            add(&mut x, &projected);

            let h = rms_norm(&x, &layer.ffn_norm, s.eps);
            let width = layer.gate.rows();
            gate.resize(n * width, 0.0);
            up.resize(n * width, 0.0);
            layer.gate.mul(&h, n, &mut gate)?;
            layer.up.mul(&h, n, &mut up)?;
            for (g, u) in gate.iter_mut().zip(&up) {
                *g = *g / (1.0 + (-*g).exp()) * u;
            }
            layer.down.mul(&gate, n, &mut projected)?;
            add(&mut x, &projected);
        }
        cache.len += n;
        let last = rms_norm(&x[(n - 1) * s.embedding..], &self.norm, s.eps);
        let mut logits = vec![0.0; self.vocabulary()];
        self.output().mul(&last, 1, &mut logits)?;
        Ok(logits)
    }

    /// cos and sin of each rotated pair's angle at positions `from..from+n`.
    fn rotations(&self, from: usize, n: usize) -> (Vec<f32>, Vec<f32>) {
        let pairs = self.inv_freq.len();
        let (mut cos, mut sin) = (Vec::with_capacity(n * pairs), Vec::with_capacity(n * pairs));
        for p in from..from + n {
            for f in &self.inv_freq {
                let (s, c) = (p as f32 * f).sin_cos();
                cos.push(c);
                sin.push(s);
            }
        }
        (cos, sin)
    }

    /// Rotary position embedding of `heads` heads per row, pairs
    /// interleaved (`2i`, `2i+1`) as the llama architecture stores them.
    fn rotate(&self, rows: &mut [f32], heads: usize, cos: &[f32], sin: &[f32]) {
        let (dim, pairs) = (self.shape.head_dim, self.inv_freq.len());
        for (t, row) in rows.chunks_exact_mut(heads * dim).enumerate() {
            let (cos, sin) = (&cos[t * pairs..(t + 1) * pairs], &sin[t * pairs..(t + 1) * pairs]);
            for head in row.chunks_exact_mut(dim) {
                for (i, pair) in head[..self.shape.rope_dim].chunks_exact_mut(2).enumerate() {
                    let (a, b) = (pair[0], pair[1]);
                    pair[0] = a * cos[i] - b * sin[i];
                    pair[1] = a * sin[i] + b * cos[i];
                }
            }
        }
    }

    /// Causal attention of the `n` newest positions over everything in
    /// layer `l`'s cache; each query head reads its group's key/value head.
    fn attend(&self, q: &[f32], cache: &Cache, l: usize, n: usize, out: &mut [f32]) {
        let s = &self.shape;
        let group = s.heads / s.kv_heads;
        let scale = 1.0 / (s.head_dim as f32).sqrt();
        let first = cache.len;
        let mut scores = vec![0.0; first + n];
        out.fill(0.0);
        for t in 0..n {
            let seen = first + t + 1;
            for h in 0..s.heads {
                let query = &q[(t * s.heads + h) * s.head_dim..][..s.head_dim];
                let (keys, values) = cache.head(l, h / group, seen, s.head_dim);
                let scores = &mut scores[..seen];
                for (score, key) in scores.iter_mut().zip(keys.chunks_exact(s.head_dim)) {
                    *score = dot(query, key) * scale;
                }
                softmax(scores);
                let out = &mut out[(t * s.heads + h) * s.head_dim..][..s.head_dim];
                for (w, value) in scores.iter().zip(values.chunks_exact(s.head_dim)) {
                    for (o, v) in out.iter_mut().zip(value) {
                        *o += w * v;
                    }
                }
            }
        }
    }
}

impl Cache {
    /// Keeps the keys and values of the rows after `len` (not yet counted).
    fn store(&mut self, l: usize, s: &Shape, k: &[f32], v: &[f32]) {
        let d = s.head_dim;
        for (t, (krow, vrow)) in k.chunks_exact(s.kv_heads * d).zip(v.chunks_exact(s.kv_heads * d)).enumerate() {
            for g in 0..s.kv_heads {
                let at = (g * self.capacity + self.len + t) * d;
                self.keys[l][at..at + d].copy_from_slice(&krow[g * d..(g + 1) * d]);
                self.values[l][at..at + d].copy_from_slice(&vrow[g * d..(g + 1) * d]);
            }
        }
    }

    /// The first `seen` keys and values of key/value head `g` in layer `l`.
    fn head(&self, l: usize, g: usize, seen: usize, d: usize) -> (&[f32], &[f32]) {
        let from = g * self.capacity * d;
        (&self.keys[l][from..from + seen * d], &self.values[l][from..from + seen * d])
    }
}

/// A matrix, its name in any error.
fn weight<R: Read + Seek>(content: &gguf_file::Content, reader: &mut R, name: &str) -> Result<Weight> {
    Weight::read(content, reader, name).map_err(|e| candle_core::Error::Msg(format!("tensor `{name}`: {e}")))
}

/// A norm's weights (stored as f32 or f16).
fn vector<R: Read + Seek>(content: &gguf_file::Content, reader: &mut R, name: &str) -> Result<Vec<f32>> {
    content.tensor(reader, name, &candle_core::Device::Cpu)?.dequantize(&candle_core::Device::Cpu)?.to_vec1()
}

/// RMS norm of each row of `x` (as wide as `weight`), scaled by `weight`.
fn rms_norm(x: &[f32], weight: &[f32], eps: f32) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks_exact(weight.len()) {
        let mean = dot(row, row) / row.len() as f32;
        let scale = 1.0 / (mean + eps).sqrt();
        out.extend(row.iter().zip(weight).map(|(v, w)| v * scale * w));
    }
    out
}

fn add(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// Eight running sums, so the compiler can keep them in one vector register.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut sums = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac.remainder().iter().zip(bc.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ac.zip(bc) {
        for i in 0..8 {
            sums[i] += x[i] * y[i];
        }
    }
    sums.iter().sum::<f32>() + tail
}

fn softmax(scores: &mut [f32]) {
    let max = scores.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
    let mut total = 0.0;
    for s in scores.iter_mut() {
        *s = (*s - max).exp();
        total += *s;
    }
    for s in scores.iter_mut() {
        *s /= total;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};
    use candle_transformers::models::quantized_llama::ModelWeights;
    use std::io::Cursor;

    /// The shipped SmolLM2 file (`make models`, or `CAXTON_MODELS_DIR`).
    fn smollm2() -> std::fs::File {
        let path = std::env::var_os("CAXTON_MODELS_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../models").into())
            .join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
        std::fs::File::open(path).expect("the SmolLM2 weights: `make models`")
    }

    /// The same model with every tensor widened to f32, in memory: both
    /// implementations then compute with the exact weights.
    fn widened(content: &gguf_file::Content, file: &mut std::fs::File) -> (gguf_file::Content, Cursor<Vec<u8>>) {
        let mut tensors = Vec::new();
        for name in content.tensor_infos.keys() {
            let t = content.tensor(file, name, &Device::Cpu).unwrap();
            tensors
                .push((name.clone(), QTensor::quantize(&t.dequantize(&Device::Cpu).unwrap(), GgmlDType::F32).unwrap()));
        }
        let metadata: Vec<(&str, &gguf_file::Value)> = content.metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let mut bytes = Cursor::new(Vec::new());
        gguf_file::write(&mut bytes, &metadata, &tensors).unwrap();
        bytes.set_position(0);
        (gguf_file::Content::read(&mut bytes).unwrap(), bytes)
    }

    fn argmax(v: &[f32]) -> u32 {
        let best = v.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (i, x)| if *x > b.1 { (i, *x) } else { b });
        best.0 as u32
    }

    /// How far apart two logit vectors are: (largest, mean) difference as
    /// a share of the reference's spread.
    fn apart(ours: &[f32], theirs: &[f32]) -> (f32, f32) {
        assert_eq!(ours.len(), theirs.len());
        let spread = theirs.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v))
            - theirs.iter().fold(f32::INFINITY, |m, v| m.min(*v));
        let diffs = ours.iter().zip(theirs).map(|(x, y)| (x - y).abs());
        let worst = diffs.clone().fold(0f32, f32::max);
        (worst / spread, diffs.sum::<f32>() / ours.len() as f32 / spread)
    }

    /// Runs a prompt and five greedy steps through both implementations;
    /// each step's (largest, mean) gap, and whether both chose the same token.
    fn side_by_side(content: gguf_file::Content, reader: &mut (impl Read + Seek)) -> Vec<(f32, f32, bool)> {
        let tokenizer = crate::GgufTokenizer::from_gguf(&content).unwrap();
        let ours = Llama::read(&content, reader).unwrap();
        let mut theirs = ModelWeights::from_gguf(content, reader, &Device::Cpu).unwrap();
        let prompt = tokenizer
            .encode("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n")
            .unwrap();
        let mut cache = ours.cache(prompt.len() + 5);
        let (mut input, mut at, mut steps) = (prompt.clone(), 0, Vec::new());
        for _ in 0..6 {
            let a = ours.forward(&input, &mut cache).unwrap();
            let t = Tensor::new(input.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
            let b = theirs.forward(&t, at).unwrap().squeeze(0).unwrap().to_vec1::<f32>().unwrap();
            let (worst, mean) = apart(&a, &b);
            steps.push((worst, mean, argmax(&a) == argmax(&b)));
            at += input.len();
            input = vec![argmax(&b)];
        }
        assert_eq!(cache.len, prompt.len() + 5);
        let full = ours.forward(&[1], &mut cache).unwrap_err().to_string();
        assert!(full.contains("do not fit"), "{full}");
        steps
    }

    /// With exact (f32) weights the forward pass is candle's quantized
    /// llama's, to float rounding.
    #[test]
    fn the_forward_pass_equals_candles_llama_with_exact_weights() {
        let mut file = smollm2();
        let content = gguf_file::Content::read(&mut file).unwrap();
        let (content, mut bytes) = widened(&content, &mut file);
        for (step, (worst, _, same)) in side_by_side(content, &mut bytes).into_iter().enumerate() {
            assert!(worst < 1e-5, "step {step}: a logit differs by {worst} of the spread");
            assert!(same, "step {step}");
        }
    }

    /// The shipped Q4_1 file as stored, against candle's scalar Q4_1
    /// kernel: the same token every step; the logits differ only by how
    /// each rounds the activations to 8 bits (measured: at most 4% of the
    /// logits' spread, 1.7% on average).
    #[test]
    fn the_shipped_file_decodes_as_candles_llama_decodes_it() {
        let mut file = smollm2();
        let content = gguf_file::Content::read(&mut file).unwrap();
        for (step, (worst, mean, same)) in side_by_side(content, &mut file).into_iter().enumerate() {
            assert!(worst < 0.08 && mean < 0.03, "step {step}: logits apart by {worst} at most, {mean} on average");
            assert!(same, "step {step}");
        }
    }
}
