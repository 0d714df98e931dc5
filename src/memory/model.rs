//! The embedding model as a memory backend holds it: loaded on first use,
//! timed into the memory metrics. Every backend embeds here, in Caxton, so
//! a database needs only to store and compare vectors.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use super::embedder::{dot, EmbedError, Embedder};
use super::error::MemoryError;
use crate::observability::Metrics;

pub struct Model {
    embedder: tokio::sync::OnceCell<Embedder>,
    dir: PathBuf,
    metrics: Arc<Metrics>,
}

impl Model {
    pub fn new(dir: PathBuf, metrics: Arc<Metrics>) -> Self {
        Self { embedder: tokio::sync::OnceCell::new(), dir, metrics }
    }

    async fn embedder(&self) -> Result<&Embedder, MemoryError> {
        let dir = self.dir.clone();
        Ok(self
            .embedder
            .get_or_try_init(|| async move {
                tokio::task::spawn_blocking(move || Embedder::start(dir)).await.map_err(|_| EmbedError::Stopped)?
            })
            .await?)
    }

    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, MemoryError> {
        let started = Instant::now();
        let vectors = self.embedder().await?.embed(texts).await?;
        self.observe("embed", started);
        Ok(vectors)
    }

    pub async fn embed_one(&self, text: &str) -> Result<Vec<f32>, MemoryError> {
        let started = Instant::now();
        let vector = self.embedder().await?.embed_one(text).await?;
        self.observe("embed", started);
        Ok(vector)
    }

    /// Vectors with the word pieces each text was read as.
    pub async fn embed_counted(&self, texts: Vec<String>) -> Result<Vec<(Vec<f32>, u32)>, MemoryError> {
        let started = Instant::now();
        let out = self.embedder().await?.embed_counted(texts).await?;
        self.observe("embed", started);
        Ok(out)
    }

    /// Cosine similarity of two texts' embeddings.
    pub async fn similarity(&self, a: &str, b: &str) -> Result<f32, MemoryError> {
        let v = self.embed(vec![a.to_owned(), b.to_owned()]).await?;
        let norm = |x: &[f32]| dot(x, x).sqrt();
        let (na, nb) = (norm(&v[0]), norm(&v[1]));
        Ok(if na == 0.0 || nb == 0.0 { 0.0 } else { dot(&v[0], &v[1]) / (na * nb) })
    }

    /// Records how long a memory operation took.
    pub fn observe(&self, operation: &str, started: Instant) {
        let histogram = &self.metrics.memory_search_duration;
        histogram.with_label_values(&[operation]).observe(started.elapsed().as_secs_f64());
    }
}
