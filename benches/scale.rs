//! Many agents on one node: the release binary with its data on disk, an
//! echo agent per name, deployed over HTTP by 32 writers. Reports resident
//! memory, the deploy rate, the time to list every agent a page at a time,
//! the latency of a sync message to a random agent, and the time from a
//! restart to ready (and to the first answered message).
//!
//! Run: `cargo bench --bench scale` (100,000 agents; `-- --agents N` for
//! another count).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use caxton_testing::{echo_agent_toml, figures, percentile, resident_kb, TestNode};
use rand::Rng;
use serde_json::json;

const WRITERS: u64 = 32;

fn name(i: u64) -> String {
    format!("a{i:06}")
}

/// Deploys agents `0..n`, each writer taking every 32nd; returns the
/// failures (each printed).
async fn deploy_all(node: &TestNode, n: u64) -> u64 {
    let failures = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (http, url, failures) = (node.http.clone(), node.url("/v1/agents"), failures.clone());
        tasks.push(tokio::spawn(async move {
            for i in (w..n).step_by(WRITERS as usize) {
                let body = echo_agent_toml(&name(i), &[]);
                let r = http.post(&url).header("content-type", "application/toml").body(body).send().await;
                match r {
                    Ok(r) if r.status() == 201 => {}
                    Ok(r) => {
                        failures.fetch_add(1, Ordering::Relaxed);
                        eprintln!("deploy {}: {} {}", name(i), r.status(), r.text().await.unwrap_or_default());
                    }
                    Err(e) => {
                        failures.fetch_add(1, Ordering::Relaxed);
                        eprintln!("deploy {}: {e}", name(i));
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    failures.load(Ordering::Relaxed)
}

/// Every agent, 500 a page; returns (how many, the slowest page).
async fn list_all(node: &TestNode) -> (u64, Duration) {
    let (mut after, mut seen, mut slowest) = (None::<String>, 0u64, Duration::ZERO);
    loop {
        let mut url = node.url("/v1/agents?limit=500");
        if let Some(a) = &after {
            url.push_str(&format!("&after={a}"));
        }
        let t = Instant::now();
        let page: serde_json::Value = node.http.get(&url).send().await.unwrap().json().await.unwrap();
        slowest = slowest.max(t.elapsed());
        seen += page["agents"].as_array().expect("a page of agents").len() as u64;
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => return (seen, slowest),
        }
    }
}

/// Sync messages to `count` random agents, one at a time: (latencies, errors).
async fn message_random(node: &TestNode, n: u64, count: usize) -> (Vec<Duration>, u64) {
    let (mut lat, mut errors) = (Vec::new(), 0);
    for _ in 0..count {
        let to = name(rand::thread_rng().gen_range(0..n));
        let t = Instant::now();
        let r = node
            .http
            .post(node.url("/v1/messages"))
            .json(&json!({"to": to, "content": "ping", "timeout_ms": 30000}))
            .send()
            .await;
        match r {
            Ok(r) if r.status() == 200 => lat.push(t.elapsed()),
            Ok(r) => {
                errors += 1;
                eprintln!("message to {to}: {} {}", r.status(), r.text().await.unwrap_or_default());
            }
            Err(e) => {
                errors += 1;
                eprintln!("message to {to}: {e}");
            }
        }
    }
    (lat, errors)
}

/// Starts the stopped node again: (time to `/ready`, time to the first
/// answered message).
async fn restart(node: &mut TestNode, n: u64) -> (Duration, Duration) {
    let t = Instant::now();
    node.relaunch();
    let deadline = t + Duration::from_secs(600);
    while !matches!(node.http.get(node.url("/ready")).send().await, Ok(r) if r.status().is_success()) {
        assert!(Instant::now() < deadline, "not ready 10 minutes after a restart; log:\n{}", node.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ready = t.elapsed();
    while message_random(node, n, 1).await.1 > 0 {
        assert!(Instant::now() < deadline, "no answer 10 minutes after a restart");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (ready, t.elapsed())
}

fn ms(v: &mut [Duration], p: f64) -> f64 {
    percentile(v, p).as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() {
    let n: u64 =
        std::env::args().skip_while(|a| a != "--agents").nth(1).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let mut node = TestNode::start().await;
    let empty = resident_kb(node.pid()) / 1024.0;
    println!("{n} echo agents on one node (data on disk, fsync on), {WRITERS} writers over HTTP");
    println!("resident memory with no agent: {empty:.0} MB");

    let t = Instant::now();
    let failures = deploy_all(&node, n).await;
    let rate = n as f64 / t.elapsed().as_secs_f64();
    println!("deployed in {:.1} s: {rate:.0} deploys/s, {failures} failures", t.elapsed().as_secs_f64());
    assert_eq!(failures, 0, "every deploy must succeed");

    let t = Instant::now();
    let (listed, slowest) = list_all(&node).await;
    let list_s = t.elapsed().as_secs_f64();
    println!(
        "listed {listed} agents in {list_s:.2} s ({} pages of 500; slowest page {:.1} ms)",
        n.div_ceil(500),
        slowest.as_secs_f64() * 1e3
    );
    assert_eq!(listed, n, "every agent is listed once");

    let (mut lat, errors) = message_random(&node, n, 1000).await;
    println!(
        "1,000 sync messages to random agents: p50 {:.2} ms, p99 {:.2} ms, {errors} errors",
        ms(&mut lat, 0.5),
        ms(&mut lat, 0.99)
    );
    let rss = resident_kb(node.pid()) / 1024.0;
    println!(
        "resident memory with {n} agents: {rss:.0} MB ({:.1} KB per agent above the empty node)",
        (rss - empty) * 1024.0 / n as f64
    );

    node.terminate().await;
    let (ready, answered) = restart(&mut node, n).await;
    println!(
        "restart with {n} agents: ready after {:.2} s, first message answered after {:.2} s",
        ready.as_secs_f64(),
        answered.as_secs_f64()
    );
    let (mut after, errors_after) = message_random(&node, n, 1000).await;
    let rss_after = resident_kb(node.pid()) / 1024.0;
    println!(
        "after the restart: 1,000 messages p50 {:.2} ms, {errors_after} errors; resident memory {rss_after:.0} MB",
        ms(&mut after, 0.5)
    );

    figures::record("scale.rss_mb", rss.max(rss_after));
    figures::record("scale.deploy.rate", rate);
    figures::record("scale.list_all_s", list_s);
    figures::record("scale.restart_ready_s", ready.as_secs_f64());
    figures::record("scale.message.p50_ms", ms(&mut lat, 0.5));
    figures::record("scale.message.errors", (errors + errors_after) as f64);
}
