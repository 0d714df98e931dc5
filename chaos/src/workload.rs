//! Clients driving the public REST API, each recording every attempt.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::history::{Event, LeaderSample, Op, Outcome};

pub const KEYS: usize = 5;
pub const ECHO_AGENTS: usize = 3;
/// The topic the subscriber agent (`subscriber_toml`) listens on.
pub const TOPIC: &str = "chaos.orders";

pub fn subscriber_toml() -> String {
    "name = \"subscriber\"\nprovider = \"echo\"\nsystem_prompt = \"echo\"\nsubscriptions = [\"chaos.*\"]\n".to_owned()
}

/// What every client shares.
pub struct Shared {
    pub start: Instant,
    /// API base URL of node N at index N-1.
    pub nodes: Vec<String>,
    pub events: Mutex<Vec<Event>>,
    pub leaders: Mutex<Vec<LeaderSample>>,
    pub stop: AtomicBool,
}

impl Shared {
    pub fn ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }
}

/// The agent definition a registry write deploys: its text's hash is
/// what the revision history is checked against.
pub fn register_toml(key: &str, value: &str) -> String {
    format!(
        "name = \"{key}\"\nprovider = \"echo\"\nsystem_prompt = \"register\"\n\n[parameters]\nvalue = \"{value}\"\n"
    )
}

/// SHA-256 of the definition a registry write of `value` deploys, as the
/// server's revision history names it.
pub fn register_hash(key: &str, value: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(register_toml(key, value).as_bytes()))
}

pub fn echo_toml(name: &str) -> String {
    format!("name = \"{name}\"\nprovider = \"echo\"\nsystem_prompt = \"echo\"\n")
}

/// How an HTTP answer (or its absence) classifies a write.
async fn classify(result: Result<reqwest::Response, reqwest::Error>, ok: &[u16]) -> (Outcome, Option<Value>) {
    match result {
        Err(e) if e.is_connect() => (Outcome::Fail { why: format!("connect: {e}") }, None),
        Err(e) => (Outcome::Unknown { why: format!("{e}") }, None),
        Ok(r) => {
            let status = r.status().as_u16();
            let body: Option<Value> = r.json().await.ok();
            if ok.contains(&status) {
                return (Outcome::Ok { value: None }, body);
            }
            let detail = body.as_ref().and_then(|b| b["detail"].as_str()).unwrap_or("").to_owned();
            let why = format!("{status}: {detail}");
            let kind = body.as_ref().and_then(|b| b["type"].as_str()).unwrap_or("");
            let outcome = match body.as_ref().and_then(|b| b["write_outcome"].as_str()) {
                Some("not_applied") => Outcome::Fail { why },
                // Shed before anything was proposed.
                None if kind.ends_with("/overloaded") || kind.ends_with("/insufficient-storage") => {
                    Outcome::Fail { why }
                }
                // 4xx other than a cluster state: refused at the edge.
                None if (400..500).contains(&status) && status != 408 => Outcome::Fail { why },
                _ => Outcome::Unknown { why },
            };
            (outcome, body)
        }
    }
}

pub async fn client(shared: Arc<Shared>, id: usize, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed ^ (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().expect("http client");
    let mut n = 0u64;
    let mut node = id % shared.nodes.len();
    // Messages whose outcome is unknown are retried with the same id.
    let mut retry: Vec<(String, String, bool, u32)> = Vec::new();
    while !shared.stop.load(Ordering::Relaxed) {
        n += 1;
        let base = shared.nodes[node].clone();
        let invoke_ms = shared.ms();
        let roll: f64 = rng.gen();
        let (op, outcome) = if let Some((msg, agent, sync, tries)) = retry.pop().filter(|_| roll < 0.3) {
            let (op, outcome) = send(&http, &base, &msg, &agent, sync).await;
            if matches!(outcome, Outcome::Unknown { .. }) && tries < 5 {
                retry.push((msg, agent, sync, tries + 1));
            }
            (op, outcome)
        } else if roll < 0.35 {
            let key = format!("kv-{}", rng.gen_range(0..KEYS));
            let value = format!("c{id}-{n}");
            let r = http
                .post(format!("{base}/v1/agents"))
                .header("content-type", "application/toml")
                .body(register_toml(&key, &value))
                .send()
                .await;
            (Op::Write { key, value }, classify(r, &[200, 201]).await.0)
        } else if roll < 0.65 {
            let key = format!("kv-{}", rng.gen_range(0..KEYS));
            (Op::Read { key: key.clone() }, read(&http, &base, &key).await)
        } else if roll < 0.90 {
            let (msg, agent, sync) =
                (format!("m-{id}-{n}"), format!("echo-{}", rng.gen_range(0..ECHO_AGENTS)), rng.gen());
            let (op, outcome) = send(&http, &base, &msg, &agent, sync).await;
            if matches!(outcome, Outcome::Unknown { .. }) {
                retry.push((msg, agent, sync, 1));
            }
            (op, outcome)
        } else if roll < 0.93 {
            let id = format!("p-{id}-{n}");
            let r = http
                .post(format!("{base}/v1/topics/{TOPIC}/publications"))
                .json(&json!({"content": format!("order {id}"), "id": id}))
                .send()
                .await;
            (Op::Publish { id }, classify(r, &[200, 201]).await.0)
        } else if roll < 0.94 {
            let id = format!("a-{id}-{n}");
            let bidders: Vec<String> = (0..ECHO_AGENTS).map(|i| format!("echo-{i}")).collect();
            let body =
                json!({"kind": "sealed_bid", "item": "a crate", "bidders": bidders, "deadline_ms": 3000, "id": id});
            let r = http.post(format!("{base}/v1/auctions")).json(&body).send().await;
            (Op::Auction { id }, classify(r, &[201]).await.0)
        } else if roll < 0.96 {
            let query = format!("c{}", rng.gen_range(0..8));
            let r = http.get(format!("{base}/v1/memory/search")).query(&[("q", query.as_str())]).send().await;
            let outcome = match r {
                Ok(r) if r.status().is_success() => Outcome::Ok { value: None },
                Ok(r) => Outcome::Fail { why: r.status().to_string() },
                Err(e) => Outcome::Fail { why: e.to_string() },
            };
            (Op::Search { query }, outcome)
        } else {
            let key = format!("mem-{}", rng.gen_range(0..KEYS));
            let value = format!("c{id}-{n}");
            let r = http
                .post(format!("{base}/v1/memory/entities"))
                .json(&json!({"name": key, "entity_type": "fact", "observations": [value]}))
                .send()
                .await;
            (Op::Remember { key, value }, classify(r, &[200, 201]).await.0)
        };
        let failed = !matches!(outcome, Outcome::Ok { .. });
        let event = Event { client: id, invoke_ms, complete_ms: shared.ms(), node: node as u64 + 1, op, outcome };
        shared.events.lock().unwrap().push(event);
        if failed {
            // Another node may be alive; do not hammer a dead one.
            node = (node + 1) % shared.nodes.len();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub async fn read(http: &reqwest::Client, base: &str, key: &str) -> Outcome {
    match http.get(format!("{base}/v1/agents/{key}?consistency=linearizable")).send().await {
        Err(e) => Outcome::Fail { why: e.to_string() },
        Ok(r) if r.status() == 404 => Outcome::Ok { value: None },
        Ok(r) if r.status() == 200 => match r.json::<Value>().await {
            Ok(v) => Outcome::Ok { value: v["spec"]["parameters"]["value"].as_str().map(str::to_owned) },
            Err(e) => Outcome::Fail { why: e.to_string() },
        },
        Ok(r) => Outcome::Fail { why: r.status().to_string() },
    }
}

async fn send(http: &reqwest::Client, base: &str, id: &str, agent: &str, sync: bool) -> (Op, Outcome) {
    let body = json!({
        "id": id, "to": agent, "content": format!("ping {id}"), "conversation_id": format!("conv-{id}"),
        "mode": if sync { "sync" } else { "async" }, "timeout_ms": 8000
    });
    let r = http.post(format!("{base}/v1/messages")).json(&body).send().await;
    // A sync send that timed out waiting for the reply was committed (504).
    let outcome = classify(r, &[200, 202, 504]).await.0;
    (Op::Send { id: id.to_owned(), agent: agent.to_owned(), sync }, outcome)
}

/// Samples every node's own view of Raft until stopped.
pub async fn sample_leaders(shared: Arc<Shared>) {
    let http = reqwest::Client::builder().timeout(Duration::from_millis(800)).build().expect("http client");
    while !shared.stop.load(Ordering::Relaxed) {
        for base in shared.nodes.clone() {
            if let Ok(r) = http.get(format!("{base}/v1/cluster/status")).send().await {
                if let Ok(s) = r.json::<Value>().await {
                    let sample = LeaderSample {
                        at_ms: shared.ms(),
                        node: s["node_id"].as_u64().unwrap_or(0),
                        term: s["term"].as_u64().unwrap_or(0),
                        leading: s["state"] == "leader",
                    };
                    shared.leaders.lock().unwrap().push(sample);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
