//! Sentence embeddings with All-MiniLM-L6-v2 run by candle's BERT: the
//! model's own tokenizer.json, mean pooling over the attention mask, L2
//! normalisation — what sentence-transformers does for this model.
//!
//! One model instance lives on a dedicated thread behind a queue; texts
//! that arrive while it is busy are embedded together in the next batch,
//! each batch padded only to its longest text.

use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};
use tokio::sync::oneshot;

pub const DIMENSIONS: usize = 384;
/// MiniLM was trained on sequences up to 256 word pieces.
const MAX_TOKENS: usize = 256;
const MAX_BATCH: usize = 64;

#[derive(Debug, Clone, thiserror::Error)]
pub enum EmbedError {
    #[error("embedding model in {dir}: {reason} (run `make models`, or set models.dir)")]
    Load { dir: String, reason: String },
    #[error("embedding failed: {0}")]
    Compute(String),
    #[error("the embedding worker stopped")]
    Stopped,
}

struct Model {
    bert: BertModel,
    tokenizer: Tokenizer,
}

impl Model {
    fn load(dir: &Path) -> Result<Self, EmbedError> {
        let fail = |reason: String| EmbedError::Load { dir: dir.display().to_string(), reason };
        let config: Config = serde_json::from_str(
            &std::fs::read_to_string(dir.join("config.json")).map_err(|e| fail(format!("config.json: {e}")))?,
        )
        .map_err(|e| fail(format!("config.json: {e}")))?;
        let mut tokenizer =
            Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| fail(format!("tokenizer.json: {e}")))?;
        tokenizer.with_padding(Some(PaddingParams { strategy: PaddingStrategy::BatchLongest, ..Default::default() }));
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: MAX_TOKENS, ..Default::default() }))
            .map_err(|e| fail(e.to_string()))?;
        let weights = dir.join("model.safetensors");
        // SAFETY: the weights file is memory-mapped read-only and not modified while mapped.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, &Device::Cpu) }
            .map_err(|e| fail(format!("model.safetensors: {e}")))?;
        let bert = BertModel::load(vb, &config).map_err(|e| fail(e.to_string()))?;
        Ok(Self { bert, tokenizer })
    }

    /// Each text's vector and the word pieces it was read as.
    fn embed(&self, texts: &[String]) -> Result<Vec<(Vec<f32>, u32)>, EmbedError> {
        let err = |e: candle_core::Error| EmbedError::Compute(e.to_string());
        let enc = self.tokenizer.encode_batch(texts.to_vec(), true).map_err(|e| EmbedError::Compute(e.to_string()))?;
        let ids: Vec<Tensor> =
            enc.iter().map(|e| Tensor::new(e.get_ids(), &Device::Cpu)).collect::<Result<_, _>>().map_err(err)?;
        let masks: Vec<Tensor> = enc
            .iter()
            .map(|e| Tensor::new(e.get_attention_mask(), &Device::Cpu))
            .collect::<Result<_, _>>()
            .map_err(err)?;
        let ids = Tensor::stack(&ids, 0).map_err(err)?;
        let mask = Tensor::stack(&masks, 0).map_err(err)?;
        let types = ids.zeros_like().map_err(err)?;
        let hidden = self.bert.forward(&ids, &types, Some(&mask)).map_err(err)?;
        // Mean over real tokens only.
        let mask_f = mask.to_dtype(DType::F32).map_err(err)?.unsqueeze(2).map_err(err)?;
        let summed = hidden.broadcast_mul(&mask_f).map_err(err)?.sum(1).map_err(err)?;
        let counts = mask_f.sum(1).map_err(err)?;
        let mean = summed.broadcast_div(&counts).map_err(err)?;
        let norm = mean.sqr().map_err(err)?.sum_keepdim(1).map_err(err)?.sqrt().map_err(err)?;
        let normalized = mean.broadcast_div(&norm).map_err(err)?;
        let tokens = counts.squeeze(1).map_err(err)?.to_vec1::<f32>().map_err(err)?;
        Ok(normalized.to_vec2::<f32>().map_err(err)?.into_iter().zip(tokens.into_iter().map(|n| n as u32)).collect())
    }
}

type Job = (Vec<String>, oneshot::Sender<Result<Vec<(Vec<f32>, u32)>, EmbedError>>);

/// A handle to the embedding worker. Cheap to clone.
#[derive(Clone)]
pub struct Embedder {
    jobs: std_mpsc::SyncSender<Job>,
}

impl Embedder {
    /// Loads the model (on its own thread) and starts the batching worker.
    pub fn start(dir: PathBuf) -> Result<Self, EmbedError> {
        let (jobs, rx) = std_mpsc::sync_channel::<Job>(1024);
        let (ready_tx, ready_rx) = std_mpsc::channel();
        std::thread::Builder::new()
            .name("embedder".into())
            .spawn(move || {
                let model = match Model::load(&dir) {
                    Ok(m) => {
                        let _ = ready_tx.send(Ok(()));
                        m
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                worker(model, rx);
            })
            .map_err(|e| EmbedError::Compute(e.to_string()))?;
        ready_rx.recv().map_err(|_| EmbedError::Stopped)??;
        Ok(Self { jobs })
    }

    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        Ok(self.embed_counted(texts).await?.into_iter().map(|(v, _)| v).collect())
    }

    /// Each text's vector and how many word pieces of it the model read
    /// (at most 256: longer texts are cut).
    pub async fn embed_counted(&self, texts: Vec<String>) -> Result<Vec<(Vec<f32>, u32)>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let (tx, rx) = oneshot::channel();
        let jobs = self.jobs.clone();
        // A full queue blocks the sender: do that off the async threads.
        tokio::task::spawn_blocking(move || jobs.send((texts, tx)))
            .await
            .map_err(|_| EmbedError::Stopped)?
            .map_err(|_| EmbedError::Stopped)?;
        rx.await.map_err(|_| EmbedError::Stopped)?
    }

    pub async fn embed_one(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        Ok(self.embed(vec![text.to_owned()]).await?.pop().unwrap_or_default())
    }
}

fn worker(model: Model, rx: std_mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        let mut count = jobs[0].0.len();
        while count < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => {
                    count += job.0.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let texts: Vec<String> = jobs.iter().flat_map(|(t, _)| t.iter().cloned()).collect();
        // Sort by length so each chunk pads little; map results back after.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|i| texts[*i].len());
        let mut out: Vec<(Vec<f32>, u32)> = vec![(Vec::new(), 0); texts.len()];
        let mut failure = None;
        for chunk in order.chunks(MAX_BATCH) {
            let batch: Vec<String> = chunk.iter().map(|i| texts[*i].clone()).collect();
            match model.embed(&batch) {
                Ok(vectors) => {
                    for (i, v) in chunk.iter().zip(vectors) {
                        out[*i] = v;
                    }
                }
                Err(e) => failure = Some(e),
            }
        }
        let mut offset = 0;
        for (t, reply) in jobs {
            let n = t.len();
            let result = match &failure {
                Some(e) => Err(e.clone()),
                None => Ok(out[offset..offset + n].to_vec()),
            };
            offset += n;
            let _ = reply.send(result);
        }
    }
}

/// Cosine similarity of two L2-normalised vectors is their dot product.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Sixteen independent accumulators over exact chunks: the compiler turns
    // this into packed multiply-adds without needing -C target-cpu.
    const LANES: usize = 16;
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; LANES];
    let mut ca = a.chunks_exact(LANES);
    let mut cb = b.chunks_exact(LANES);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for k in 0..LANES {
            acc[k] += x[k] * y[k];
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        sum += x * y;
    }
    sum
}
