//! Memory benchmarks: vector search at 10K and 100K entries (synthetic
//! unit vectors; recall@10 against an exact scan), store-entity latency and
//! bytes per entity through a real node, embedding throughput with the real
//! MiniLM model (single and batched), and resident memory with it loaded.
//!
//! Run: `cargo bench --bench memory`.

use std::time::{Duration, Instant};

use caxton::memory::types::{Place, Viewer};
use caxton::memory::{dot, Embedder, Filter, IndexedRow, VectorIndex, DIMENSIONS};
use caxton_testing::{models_dir, percentile, resident_kb, InProcessNode};
use rand::{Rng, SeedableRng};

fn ms(v: &mut [Duration], p: f64) -> f64 {
    percentile(v, p).as_secs_f64() * 1e3
}

fn unit_vector(rng: &mut impl Rng) -> Vec<f32> {
    let v: Vec<f32> = (0..DIMENSIONS).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
    let n = dot(&v, &v).sqrt();
    v.into_iter().map(|x| x / n).collect()
}

fn search_bench(n: usize) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let index = VectorIndex::default();
    let mut all = Vec::with_capacity(n);
    let t = Instant::now();
    for i in 0..n {
        let v = unit_vector(&mut rng);
        index.insert(
            IndexedRow {
                observation_id: i as i64,
                entity_id: i as i64,
                place: Place::global(),
                entity_type: "fact".into(),
            },
            &v,
        );
        all.push(v);
    }
    let build = t.elapsed();
    let viewer = Viewer::default();
    let filter = Filter { viewer: &viewer, scope: None, entity_type: None, min_similarity: -1.0 };
    let mut lat = Vec::new();
    let mut recall_sum = 0.0;
    let queries = 200;
    for _ in 0..queries {
        let q = unit_vector(&mut rng);
        let t = Instant::now();
        let hits = index.search(&q, &filter, 10);
        lat.push(t.elapsed());
        // Exact top-10 by brute force, for recall.
        let mut scored: Vec<(usize, f32)> = all.iter().enumerate().map(|(i, v)| (i, dot(&q, v))).collect();
        scored.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap());
        let truth: std::collections::HashSet<i64> = scored[..10].iter().map(|(i, _)| *i as i64).collect();
        recall_sum += hits.iter().filter(|h| truth.contains(&h.0.observation_id)).count() as f64 / 10.0;
    }
    println!(
        "search {n:>6} vectors: p50 {:.2} ms, p99 {:.2} ms, recall@10 {:.3} (index load {:.0} ms)",
        ms(&mut lat, 0.5),
        ms(&mut lat, 0.99),
        recall_sum / queries as f64,
        build.as_secs_f64() * 1e3
    );
}

async fn embedding_bench(dir: &std::path::Path) {
    let before = resident_kb(std::process::id()) / 1024.0;
    let e = Embedder::start(dir.to_path_buf()).unwrap();
    let sentences: Vec<String> = (0..256)
        .map(|i| {
            format!("Observation number {i}: the service handled a request about topic {} without errors.", i % 17)
        })
        .collect();
    e.embed(sentences[..8].to_vec()).await.unwrap();
    println!(
        "resident memory: {before:.0} MB before the model, {:.0} MB with MiniLM loaded",
        resident_kb(std::process::id()) / 1024.0
    );
    let t = Instant::now();
    for s in &sentences[..64] {
        e.embed_one(s).await.unwrap();
    }
    println!("embeddings/s, one at a time: {:.0}", 64.0 / t.elapsed().as_secs_f64());
    let t = Instant::now();
    e.embed(sentences.clone()).await.unwrap();
    println!("embeddings/s, batched (256 sentences): {:.0}", 256.0 / t.elapsed().as_secs_f64());
}

async fn store_bench(models: &std::path::Path) -> anyhow::Result<()> {
    let node = InProcessNode::start(|c| c.models.dir = models.to_path_buf()).await?;
    let base = node.base.clone();
    let http = reqwest::Client::new();
    let db = node.data_dir().join("state.db");
    let wal = node.data_dir().join("state.db-wal");
    let size =
        || std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0) + std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    // Warm the model.
    http.post(format!("{base}/v1/memory/entities"))
        .json(&serde_json::json!({"name": "warm", "entity_type": "fact", "observations": ["warm up"]}))
        .send()
        .await?;
    let n = 300;
    // Baseline: the same database without the entities, compacted the same way.
    let before_vacuumed = {
        let copy = node.dir().join("baseline.db");
        let conn = rusqlite::Connection::open(&db)?;
        conn.execute("VACUUM INTO ?1", [copy.to_string_lossy()])?;
        std::fs::metadata(&copy)?.len()
    };
    let mut lat = Vec::new();
    for i in 0..n {
        let body = serde_json::json!({"name": format!("entity-{i}"), "entity_type": "fact", "observations": [format!("Entity {i} is a customer account created in region {} with plan {}.", i % 7, i % 3)]});
        let t = Instant::now();
        let r = http.post(format!("{base}/v1/memory/entities")).json(&body).send().await?;
        anyhow::ensure!(r.status() == 201);
        lat.push(t.elapsed());
    }
    println!(
        "store entity (embed + Raft commit + apply): p50 {:.2} ms, p99 {:.2} ms",
        ms(&mut lat, 0.5),
        ms(&mut lat, 0.99)
    );
    let _dir = node.shutdown().await;
    // Fold the WAL into the database so the file holds exactly the data.
    let conn = rusqlite::Connection::open(&db)?;
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); VACUUM;")?;
    drop(conn);
    let after = size();
    println!(
        "bytes per entity on disk (state.db after checkpoint + vacuum): {:.0}",
        (after.saturating_sub(before_vacuumed)) as f64 / n as f64
    );
    Ok(())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let models = models_dir();
    search_bench(10_000);
    search_bench(100_000);
    embedding_bench(&models.join("all-minilm-l6-v2")).await;
    store_bench(&models).await?;
    Ok(())
}
