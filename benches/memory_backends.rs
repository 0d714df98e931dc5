//! Embedded memory against PostgreSQL + pgvector (HNSW), side by side in
//! one run, through the `MemoryBackend` trait of a real in-process node:
//! insert throughput (one entity per observation, 32 writes in flight) and
//! search latency (p50/p99 of `search_vector`, the query already embedded),
//! with recall@10 of each against an exact scan of the same vectors.
//!
//! Vectors are synthetic but clustered like sentence embeddings (unit
//! vectors around 1,000 topic centroids), so HNSW sees structure as it does
//! with real text; embedding 1M texts with MiniLM would take hours here.
//!
//! Run: `cargo bench --bench memory_backends -- [SIZES...]` (default
//! `100000 1000000`); PostgreSQL comes from `make postgres`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use caxton::config::MemoryBackendKind;
use caxton::memory::types::{NewObservation, Place, Vector, Viewer};
use caxton::memory::{dot, MemoryBackend, SearchQuery, DIMENSIONS};
use caxton_testing::{percentile, InProcessNode, TestPostgres};
use futures::StreamExt;
use rand::{Rng, SeedableRng};

const TOPICS: usize = 1000;
const QUERIES: usize = 200;
const IN_FLIGHT: usize = 32;

fn normalise(v: Vec<f32>) -> Vec<f32> {
    let n = dot(&v, &v).sqrt();
    v.into_iter().map(|x| x / n).collect()
}

fn gaussian(rng: &mut impl Rng) -> f32 {
    // Box-Muller.
    let (u, v): (f32, f32) = (rng.gen_range(1e-7..1.0), rng.gen_range(0.0..1.0));
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f32::consts::PI * v).cos()
}

/// `n` unit vectors around `TOPICS` centroids, and `QUERIES` more from the same mixture.
fn dataset(n: usize) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let centroids: Vec<Vec<f32>> =
        (0..TOPICS).map(|_| normalise((0..DIMENSIONS).map(|_| gaussian(&mut rng)).collect())).collect();
    let sample = |rng: &mut rand::rngs::StdRng| {
        let c = &centroids[rng.gen_range(0..TOPICS)];
        normalise(c.iter().map(|x| x + 0.06 * gaussian(rng)).collect())
    };
    let data = (0..n).map(|_| sample(&mut rng)).collect();
    let queries = (0..QUERIES).map(|_| sample(&mut rng)).collect();
    (data, queries)
}

/// The exact top 10 (entity names) of each query.
fn truth(data: &[Vec<f32>], queries: &[Vec<f32>]) -> Vec<Vec<String>> {
    queries
        .iter()
        .map(|q| {
            let mut scored: Vec<(usize, f32)> = data.iter().enumerate().map(|(i, v)| (i, dot(q, v))).collect();
            scored.select_nth_unstable_by(10, |a, b| b.1.partial_cmp(&a.1).unwrap());
            scored[..10].iter().map(|(i, _)| format!("e{i}")).collect()
        })
        .collect()
}

struct Row {
    backend: &'static str,
    n: usize,
    inserts_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    recall: f64,
}

async fn measure(
    backend: &'static str,
    memory: Arc<dyn MemoryBackend>,
    data: &[Vec<f32>],
    queries: &[Vec<f32>],
    truth: &[Vec<String>],
) -> Row {
    let place = Place::global();
    let started = Instant::now();
    let results: Vec<bool> = futures::stream::iter(data.iter().enumerate())
        .map(|(i, v)| {
            let (memory, place) = (memory.clone(), place.clone());
            let obs = vec![NewObservation { text: format!("observation {i}"), embedding: Vector(v.clone()) }];
            async move { memory.store_vectors(&place, &format!("e{i}"), "fact", obs).await.is_ok() }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let insert = started.elapsed();
    assert!(results.iter().all(|ok| *ok), "every insert succeeds");
    // Let the node settle (the embedded index catching up, a Raft snapshot
    // of the new rows) and warm the caches before timing searches.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let query = |_: ()| SearchQuery {
        text: String::new(),
        viewer: Viewer::default(),
        scope: None,
        entity_type: None,
        limit: 10,
        min_similarity: 0.0,
    };
    for q in queries.iter().take(20) {
        memory.search_vector(q.clone(), &query(())).await.expect("search");
    }
    let mut latencies = Vec::with_capacity(queries.len());
    let mut found = 0usize;
    for (q, want) in queries.iter().zip(truth) {
        let t = Instant::now();
        let hits = memory.search_vector(q.clone(), &query(())).await.expect("search");
        latencies.push(t.elapsed());
        found += hits.iter().filter(|h| want.contains(&h.name)).count();
    }
    let ms = |l: &mut [Duration], p| percentile(l, p).as_secs_f64() * 1e3;
    Row {
        backend,
        n: data.len(),
        inserts_per_s: data.len() as f64 / insert.as_secs_f64(),
        p50_ms: ms(&mut latencies, 0.5),
        p99_ms: ms(&mut latencies, 0.99),
        recall: found as f64 / (10 * queries.len()) as f64,
    }
}

fn main() -> anyhow::Result<()> {
    let sizes: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() { vec![100_000, 1_000_000] } else { sizes };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut rows = Vec::new();
    for n in sizes {
        let (data, queries) = dataset(n);
        let truth = truth(&data, &queries);
        rows.push(rt.block_on(async {
            let node = InProcessNode::start(|_| {}).await?;
            let row = measure("embedded", node.node.memory.clone(), &data, &queries, &truth).await;
            node.shutdown().await;
            anyhow::Ok(row)
        })?);
        println!("{}", line(rows.last().unwrap()));
        let pg = TestPostgres::start();
        pg.create_database("bench");
        let url = pg.url("bench");
        rows.push(rt.block_on(async {
            let node = InProcessNode::start(|c| {
                c.memory.backend = MemoryBackendKind::Postgres;
                c.memory.postgres.tls = caxton::config::PgTlsMode::Disable;
                c.memory_url = Some(caxton::config::Secret::new(url));
            })
            .await?;
            let row = measure("postgres", node.node.memory.clone(), &data, &queries, &truth).await;
            node.shutdown().await;
            anyhow::Ok(row)
        })?);
        println!("{}", line(rows.last().unwrap()));
    }
    println!("\n| backend | observations | inserts/s | search p50 | search p99 | recall@10 |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for r in &rows {
        println!(
            "| {} | {} | {:.0} | {:.2} ms | {:.2} ms | {:.3} |",
            r.backend, r.n, r.inserts_per_s, r.p50_ms, r.p99_ms, r.recall
        );
    }
    Ok(())
}

fn line(r: &Row) -> String {
    format!(
        "{:<8} {:>8} observations: {:>7.0} inserts/s, search p50 {:.2} ms p99 {:.2} ms, recall@10 {:.3}",
        r.backend, r.n, r.inserts_per_s, r.p50_ms, r.p99_ms, r.recall
    )
}
