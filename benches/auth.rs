//! What authentication and rate limiting cost: deploy and sync-message p50
//! on two in-process nodes side by side, one in dev mode (no key sent) and
//! one requiring keys (a created key with `deploy,invoke`, checked on every
//! request, its rate limit high enough never to refuse but counted). Rounds
//! alternate between the two so drift on a shared machine hits both alike.
//!
//! Run: `cargo bench --profile dev --bench auth` (add `-- --quick`, or
//! `-- --mode dev` / `-- --mode keys` for one node alone).
//! The same file measures older code: lines between the KEYS markers are
//! all that needs keys (docs/benchmarks.md shows the command).

use std::time::{Duration, Instant};

use caxton_testing::{agent_toml, echo_agent_toml, percentile, InProcessNode};

struct Target {
    label: &'static str,
    node: InProcessNode,
    http: reqwest::Client,
    deploys: Vec<Duration>,
    messages: Vec<Duration>,
}

impl Target {
    async fn deploy(&mut self, i: usize) -> anyhow::Result<()> {
        let t = Instant::now();
        let r = self
            .http
            .post(self.node.url("/v1/agents"))
            .header("content-type", "application/toml")
            .body(agent_toml(&format!("bench-{i}"), "x"))
            .send()
            .await?;
        anyhow::ensure!(r.status() == 201, "{}: deploy answered {}", self.label, r.status());
        self.deploys.push(t.elapsed());
        Ok(())
    }

    async fn message(&mut self, i: usize) -> anyhow::Result<()> {
        let t = Instant::now();
        let body = serde_json::json!({"to": "echo", "content": format!("hello {i}")});
        let r = self.http.post(self.node.url("/v1/messages")).json(&body).send().await?;
        anyhow::ensure!(r.status() == 200, "{}: message answered {}", self.label, r.status());
        self.messages.push(t.elapsed());
        Ok(())
    }
}

fn plain() -> reqwest::Client {
    reqwest::Client::builder().pool_max_idle_per_host(16).build().unwrap()
}

async fn dev_target() -> anyhow::Result<Target> {
    let node = InProcessNode::start(|c| c.log.level = "warn".into()).await?;
    Ok(Target { label: "dev mode", node, http: plain(), deploys: Vec::new(), messages: Vec::new() })
}

// KEYS-BEGIN
async fn keyed_target() -> anyhow::Result<Target> {
    const ADMIN: &str = "bench-admin-key-0123456789abcdef";
    let node = InProcessNode::start(|c| {
        c.log.level = "warn".into();
        c.admin_key = Some(caxton::config::Secret::new(ADMIN));
        c.server.rate_limit_per_second = 1e9;
        c.server.rate_limit_burst = 1_000_000_000;
    })
    .await?;
    let created: serde_json::Value = plain()
        .post(node.url("/v1/keys"))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({"name": "bench", "scopes": ["deploy", "invoke"]}))
        .send()
        .await?
        .json()
        .await?;
    let token = created["token"].as_str().unwrap();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse()?);
    let http = reqwest::Client::builder().pool_max_idle_per_host(16).default_headers(headers).build()?;
    Ok(Target { label: "API key", node, http, deploys: Vec::new(), messages: Vec::new() })
}
// KEYS-END

// KEYS-BEGIN
/// The CPU work the gate adds to a request with a key, without the HTTP
/// round trip around it: the bootstrap check (a hash, compared in constant
/// time), parsing the token, checking its hash, and a rate-limit bucket.
fn gate_work_per_request() -> Duration {
    use caxton::auth::{token, RateLimiter};
    let minted = token::mint();
    let admin = token::digest("bench-admin-key-0123456789abcdef");
    let limiter = RateLimiter::new(Some(caxton::state::RateLimit { per_second: 1e9, burst: 1_000_000_000 }));
    let name: std::sync::Arc<str> = "bench".into();
    let n = 200_000u32;
    let t = Instant::now();
    for _ in 0..n {
        let presented = std::hint::black_box(minted.token.as_str());
        assert!(!token::same_digest(&admin, &token::digest(presented)));
        assert!(token::key_id(presented).is_some());
        assert!(token::matches(presented, &minted.hash));
        limiter.take(&name, None, Instant::now()).unwrap();
    }
    t.elapsed() / n
}
// KEYS-END

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let (rounds, per_round) = if quick { (4, 100) } else { (10, 200) };
    // `--mode dev` or `--mode keys`: one node alone (to compare with a run
    // of older code, which has only dev mode); default both, interleaved.
    let args: Vec<String> = std::env::args().collect();
    let mode = args.iter().position(|a| a == "--mode").and_then(|i| args.get(i + 1)).map_or("both", |m| m.as_str());
    let mut targets = Vec::new();
    if mode != "keys" {
        targets.push(dev_target().await?);
    }
    // KEYS-BEGIN
    if mode != "dev" {
        targets.push(keyed_target().await?);
    }
    // KEYS-END
    for t in &targets {
        let r = t
            .http
            .post(t.node.url("/v1/agents"))
            .header("content-type", "application/toml")
            .body(echo_agent_toml("echo", &["echo"]))
            .send()
            .await?;
        anyhow::ensure!(r.status() == 201, "{}: echo agent: {}", t.label, r.status());
    }
    // Warm-up: connections, caches, the key ring.
    for t in targets.iter_mut() {
        for i in 0..50 {
            t.message(i).await?;
        }
        t.messages.clear();
    }
    let mut n = 0;
    for _ in 0..rounds {
        for t in targets.iter_mut() {
            for i in 0..per_round {
                t.deploy(n + i).await?;
            }
            for i in 0..per_round {
                t.message(n + i).await?;
            }
        }
        n += per_round;
    }
    for t in targets.iter_mut() {
        let count = t.deploys.len();
        println!(
            "{:<9} deploy p50 {:.3} ms p99 {:.3} ms | sync message p50 {:.3} ms p99 {:.3} ms (n={count} each)",
            t.label,
            percentile(&mut t.deploys, 0.50).as_secs_f64() * 1e3,
            percentile(&mut t.deploys, 0.99).as_secs_f64() * 1e3,
            percentile(&mut t.messages, 0.50).as_secs_f64() * 1e3,
            percentile(&mut t.messages, 0.99).as_secs_f64() * 1e3,
        );
    }
    for t in targets {
        t.node.shutdown().await;
    }
    // KEYS-BEGIN
    if mode != "dev" {
        println!("gate work per keyed request (hash, token check, rate bucket): {:?}", gate_work_per_request());
    }
    // KEYS-END
    Ok(())
}
