//! Interaction protocol benchmarks on one node.
//!
//! (a) publish/subscribe: publications committed per second by concurrent
//!     publishers, each fanned out to 100 subscribers (echo agents), and
//!     how long until every notification was processed (end to end);
//! (b) a sealed-bid auction among 10 bidders (echo provider, answering at
//!     once), from `POST /v1/auctions` to its result.
//!
//! Run: `cargo bench --bench protocols` (`-- --quick` for a short run).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use caxton_testing::{percentile, InProcessNode};
use serde_json::{json, Value};

const SUBSCRIBERS: usize = 100;

async fn deploy(http: &reqwest::Client, base: &str, toml: String) -> anyhow::Result<()> {
    let r = http.post(format!("{base}/v1/agents")).header("content-type", "application/toml").body(toml).send().await?;
    anyhow::ensure!(r.status().is_success(), "deploy: {}", r.text().await?);
    Ok(())
}

async fn processed(http: &reqwest::Client, base: &str, id: &str) -> bool {
    let r = http.get(format!("{base}/v1/messages/{id}")).send().await;
    match r {
        Ok(r) => r.json::<Value>().await.is_ok_and(|v| v["message"]["status"] == "processed"),
        Err(_) => false,
    }
}

async fn fan_out(quick: bool) -> anyhow::Result<()> {
    let node = InProcessNode::start(|_| {}).await?;
    let base = node.base.clone();
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;
    for i in 0..SUBSCRIBERS {
        let toml = format!(
            "name = \"sub{i}\"\nprovider = \"echo\"\nsystem_prompt = \"Echo.\"\nsubscriptions = [\"bench.*\"]\n"
        );
        deploy(&http, &base, toml).await?;
    }
    let secs = if quick { 4 } else { 10 };
    for publishers in [1usize, 16] {
        let done = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let deadline = started + Duration::from_secs(secs);
        let mut tasks = Vec::new();
        for p in 0..publishers {
            let (http, base, done) = (http.clone(), base.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                let mut n = 0;
                let mut last = None;
                while Instant::now() < deadline {
                    let id = format!("b{publishers}-{p}-{n}");
                    let body = json!({"content": "order", "id": id});
                    let r = http.post(format!("{base}/v1/topics/bench.orders/publications")).json(&body).send().await;
                    if matches!(r, Ok(ref r) if r.status() == 201) {
                        done.fetch_add(1, Ordering::Relaxed);
                        last = Some(id);
                    }
                    n += 1;
                }
                last
            }));
        }
        let mut lasts = Vec::new();
        for t in tasks {
            lasts.extend(t.await?);
        }
        let committed = done.load(Ordering::Relaxed);
        let publish_secs = started.elapsed().as_secs_f64();
        // Every notification of the last publications processed: the fan-out caught up.
        for id in &lasts {
            for k in [0, SUBSCRIBERS - 1] {
                while !processed(&http, &base, &format!("{id}.{k}")).await {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        let all_secs = started.elapsed().as_secs_f64();
        println!(
            "(a) {publishers:>2} publishers: {:>6.0} publications/s committed ({:>7.0} notifications/s); all {} notifications processed after {:.1} s ({:.0} processed/s)",
            committed as f64 / publish_secs,
            committed as f64 * SUBSCRIBERS as f64 / publish_secs,
            committed * SUBSCRIBERS as u64,
            all_secs,
            committed as f64 * SUBSCRIBERS as f64 / all_secs
        );
    }
    node.shutdown().await;
    Ok(())
}

/// A bidder that answers every call for bids with `bid: N` at once.
fn bidder(i: usize) -> String {
    format!(
        "name = \"bidder{i}\"\nprovider = \"echo\"\ncapabilities = [\"bench-bidding\"]\nsystem_prompt = \"x\"\nuser_prompt_template = \"bid: {}\"\n",
        10 + i
    )
}

async fn auction(quick: bool) -> anyhow::Result<()> {
    let node = InProcessNode::start(|_| {}).await?;
    let base = node.base.clone();
    let http = reqwest::Client::new();
    for i in 0..10 {
        deploy(&http, &base, bidder(i)).await?;
    }
    let runs = if quick { 5 } else { 20 };
    let mut took = Vec::new();
    for n in 0..runs {
        let t = Instant::now();
        let body = json!({"kind": "sealed_bid", "item": "a crate", "capability": "bench-bidding", "deadline_ms": 30000, "id": format!("bench-{n}")});
        let r: Value = http.post(format!("{base}/v1/auctions")).json(&body).send().await?.json().await?;
        anyhow::ensure!(r["state"] == "open", "{r}");
        let done: Value = http.get(format!("{base}/v1/auctions/bench-{n}?wait_ms=60000")).send().await?.json().await?;
        anyhow::ensure!(done["state"] == "sold" && done["result"]["winner"] == "bidder9", "{done}");
        took.push(t.elapsed());
    }
    println!(
        "(b) sealed-bid auction, 10 bidders, start to result: p50 {:.0} ms  p99 {:.0} ms ({runs} auctions)",
        percentile(&mut took, 0.5).as_secs_f64() * 1e3,
        percentile(&mut took, 0.99).as_secs_f64() * 1e3
    );
    node.shutdown().await;
    Ok(())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    fan_out(quick).await?;
    auction(quick).await?;
    Ok(())
}
