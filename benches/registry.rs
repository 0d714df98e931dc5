//! Registry benchmarks on one node, through the real HTTP API:
//! deploy latency (p50/p99, sequential) and committed writes per second
//! with many writers in flight (openraft batches them into shared appends).
//!
//! Run: `cargo bench --bench registry` (add `-- --quick` for a short run).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use caxton_testing::{agent_toml, percentile, InProcessNode};

fn agent(name: &str) -> String {
    agent_toml(name, &format!("You are {name}."))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let node = InProcessNode::start(|c| c.log.level = "warn".into()).await?;
    let base = node.base.clone();
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;

    // 1. Deploy latency, one at a time: validate + Raft commit + fsync + apply + agent start.
    let n = if quick { 200 } else { 1000 };
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        let r = http
            .post(format!("{base}/v1/agents"))
            .header("content-type", "application/toml")
            .body(agent(&format!("lat-{i}")))
            .send()
            .await?;
        anyhow::ensure!(r.status() == 201, "deploy failed: {}", r.status());
        lat.push(t.elapsed());
    }
    println!(
        "deploy latency (sequential, n={n}): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&mut lat, 0.50).as_secs_f64() * 1e3,
        percentile(&mut lat, 0.99).as_secs_f64() * 1e3,
        lat.last().unwrap().as_secs_f64() * 1e3
    );

    // 2. Committed writes/s with concurrent writers.
    let secs = if quick { 3 } else { 10 };
    for writers in [1usize, 16, 64, 256] {
        let done = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut tasks = Vec::new();
        for w in 0..writers {
            let (http, base, done) = (http.clone(), base.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = 0u64;
                while Instant::now() < deadline {
                    let r = http
                        .post(format!("{base}/v1/agents"))
                        .header("content-type", "application/toml")
                        .body(agent(&format!("tp-{writers}-{w}-{i}")))
                        .send()
                        .await;
                    if matches!(r, Ok(ref r) if r.status() == 201) {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    i += 1;
                }
            }));
        }
        for t in tasks {
            t.await?;
        }
        let total = done.load(Ordering::Relaxed);
        println!(
            "committed deploys/s with {writers:>3} writers: {:.0} ({total} in {secs}s)",
            total as f64 / secs as f64
        );
    }
    node.shutdown().await;
    Ok(())
}
