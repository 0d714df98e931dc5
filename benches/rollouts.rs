//! What a weighted split costs a message: the same traffic to an agent
//! served by one revision, and to one in a canary at 50 % (every request's
//! revision chosen at commit from the rollout, half of them served by the
//! candidate's definition). Rounds alternate, on one in-process node with
//! the zero-latency `echo` provider, so routing is most of what is left.
//!
//! Run: `cargo bench --bench rollouts` (`-- --quick` for one short round).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use caxton_testing::{percentile, InProcessNode};

const CLIENTS: usize = 32;

async fn deploy(http: &reqwest::Client, base: &str, toml: String) {
    let r = http.post(format!("{base}/v1/agents")).header("content-type", "application/toml").body(toml).send().await;
    assert!(r.is_ok_and(|r| r.status().is_success()));
}

/// Messages/s and p50 ms against `agent` for `secs`.
async fn load(http: &reqwest::Client, base: &str, agent: &str, secs: u64) -> (f64, f64, [u64; 2]) {
    let done = Arc::new(AtomicU64::new(0));
    let by_revision = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let lat = Arc::new(Mutex::new(Vec::new()));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (http, url, done, lat, by_revision) =
            (http.clone(), format!("{base}/v1/messages"), done.clone(), lat.clone(), by_revision.clone());
        let agent = agent.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            let mut n = 0;
            while Instant::now() < deadline {
                n += 1;
                let body = serde_json::json!({"to": agent, "content": "ping", "conversation_id": format!("c{c}-{n}")});
                let t = Instant::now();
                let Ok(r) = http.post(&url).json(&body).send().await else { continue };
                let Ok(v) = r.json::<serde_json::Value>().await else { continue };
                mine.push(t.elapsed());
                done.fetch_add(1, Ordering::Relaxed);
                let side = usize::from(v["reply"]["revision"].as_u64() == Some(2));
                by_revision[side].fetch_add(1, Ordering::Relaxed);
            }
            lat.lock().unwrap().extend(mine);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut lat = lat.lock().unwrap().clone();
    let split = [by_revision[0].load(Ordering::Relaxed), by_revision[1].load(Ordering::Relaxed)];
    (done.load(Ordering::Relaxed) as f64 / secs as f64, percentile(&mut lat, 0.5).as_secs_f64() * 1e3, split)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let (secs, rounds) = if quick { (3, 1) } else { (6, 3) };
    let node = InProcessNode::start(|_| {}).await?;
    let base = node.base.clone();
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;
    let agent = |name: &str, prompt: &str, extra: &str| {
        format!("name = \"{name}\"\nprovider = \"echo\"\nsystem_prompt = \"{prompt}\"\n{extra}")
    };
    deploy(&http, &base, agent("single", "one", "")).await;
    deploy(&http, &base, agent("split", "one", "")).await;
    // Judged never (the minimum is out of reach), paused never: a split that holds.
    let canary = "[rollout]\nsteps = [{ weight = 50, pause = \"1h\" }]\n[rollout.analysis]\nmin_requests = 100000\n";
    deploy(&http, &base, agent("split", "two", canary)).await;
    let mut ratios = Vec::new();
    for round in 1..=rounds {
        let (r1, p1, _) = load(&http, &base, "single", secs).await;
        let (r2, p2, split) = load(&http, &base, "split", secs).await;
        println!(
            "round {round}: one revision {r1:.0} msg/s, p50 {p1:.2} ms | 50 % split {r2:.0} msg/s, p50 {p2:.2} ms (stable {}, canary {})",
            split[0], split[1]
        );
        ratios.push((r2 / r1 - 1.0) * 100.0);
    }
    ratios.sort_by(f64::total_cmp);
    println!("weighted split against one revision, median of {rounds}: throughput {:+.1} %", ratios[ratios.len() / 2]);
    Ok(())
}
