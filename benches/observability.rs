//! What observability costs a message.
//!
//! (a) End to end, one node process, echo agents, 1 and 64 clients: trace
//!     export off (no OTEL variables) versus on (OTLP/HTTP to a receiver in
//!     this process that accepts and drops the batches). Metrics are always
//!     on, so (a) measures the export on top of them.
//! (b) The metrics a message records (HTTP histogram, message histogram and
//!     counter, one LLM call with tokens, a commit), timed in a loop: the
//!     cost of metrics per message, to set against (a)'s latency.
//!
//! Run: `cargo bench --bench observability` (`-- --quick` for one short round).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use caxton::observability::{Metrics, Outcome};
use caxton::testing::{echo_agent_toml, percentile, NodeOptions, TestNode};

fn ms(v: &mut [Duration], p: f64) -> f64 {
    percentile(v, p).as_secs_f64() * 1e3
}

/// An OTLP/HTTP endpoint that accepts every export; counts the bytes.
async fn otlp_sink() -> (String, Arc<AtomicU64>) {
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(body.len() as u64, Ordering::Relaxed);
                ""
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

/// Per phase: clients, messages/s, p50 ms, p99 ms.
type Row = (usize, f64, f64, f64);

async fn echo_node(env: Vec<(String, String)>) -> TestNode {
    let node = TestNode::start_with(NodeOptions { env, ..Default::default() }).await;
    for i in 0..4 {
        let r = node
            .http
            .post(node.url("/v1/agents"))
            .header("content-type", "application/toml")
            .body(echo_agent_toml(&format!("echo{i}"), &[]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    node
}

/// `clients` concurrent senders for `secs`; every refusal is reported, so
/// a node that falls over cannot pass for a slow one.
async fn phase(node: &TestNode, label: &str, clients: usize, secs: u64) -> Row {
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build().unwrap();
    let done = Arc::new(AtomicU64::new(0));
    let lat = Arc::new(Mutex::new(Vec::new()));
    let failed: Arc<Mutex<std::collections::BTreeMap<String, u64>>> = Default::default();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (http, url, done, lat) = (http.clone(), node.url("/v1/messages"), done.clone(), lat.clone());
        let failed = failed.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while Instant::now() < deadline {
                let body = serde_json::json!({"to": format!("echo{}", c % 4), "content": "ping", "timeout_ms": 30000});
                let t = Instant::now();
                match http.post(&url).json(&body).send().await {
                    Ok(r) if r.status() == 200 => {
                        mine.push(t.elapsed());
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => {
                        let status = r.status().to_string();
                        let body = r.text().await.unwrap_or_default();
                        let mut failed = failed.lock().unwrap();
                        if failed.is_empty() {
                            println!("first refusal: {}", body.chars().take(300).collect::<String>());
                        }
                        *failed.entry(status).or_insert(0) += 1;
                    }
                    Err(e) => *failed.lock().unwrap().entry(format!("error: {e}")).or_insert(0) += 1,
                }
            }
            lat.lock().unwrap().extend(mine);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut lat = lat.lock().unwrap().clone();
    let rate = done.load(Ordering::Relaxed) as f64 / secs as f64;
    let (p50, p99) = (ms(&mut lat, 0.5), ms(&mut lat, 0.99));
    println!("{label:<24} {clients:>3} clients: {rate:>7.0} messages/s, p50 {p50:.2} ms, p99 {p99:.2} ms");
    let failed = failed.lock().unwrap();
    if !failed.is_empty() {
        println!("{:<24} not answered with 200: {failed:?}", "");
        let log = node.log();
        let tail: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).take(3).collect();
        println!("node errors:\n{}", tail.join("\n"));
    }
    (clients, rate, p50, p99)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn metrics_cost_per_message() {
    let m = Metrics::new();
    let n = 200_000u32;
    let t = Instant::now();
    for i in 0..n {
        let took = Duration::from_micros(u64::from(i % 5000));
        m.http_duration.with_label_values(&["/v1/messages", "POST", "200"]).observe(took.as_secs_f64());
        m.message_accepted();
        m.message_done("echo0", "request", Outcome::Ok, took);
        m.llm_call("openai", "gpt", took, Ok((120, 40)));
        caxton_cluster::WriteObserver::proposed(&m);
        caxton_cluster::WriteObserver::finished(&m, took, Ok(()));
    }
    let per = t.elapsed() / n;
    println!("metrics recorded per message (6 instruments, labels looked up each time): {per:?}");
}

/// Export off and on alternate, round after round, each on a fresh node,
/// and the per-round differences are summarised by their median: on two
/// shared cores a single pair of runs drifts by as much as the effect.
#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (secs, rounds) = if quick { (4, 1) } else { (6, 5) };
    metrics_cost_per_message();
    let (endpoint, received) = otlp_sink().await;
    let var = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    let on_env = vec![var("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint), var("OTEL_BSP_SCHEDULE_DELAY", "500")];
    let mut sampled_env = on_env.clone();
    sampled_env.extend([var("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"), var("OTEL_TRACES_SAMPLER_ARG", "0.1")]);
    let configs =
        [("trace export off", Vec::new()), ("trace export on (OTLP)", on_env), ("export on, 10% sampled", sampled_env)];
    // (config, clients) -> per-round differences against export off.
    let mut deltas: std::collections::BTreeMap<(usize, usize), (Vec<f64>, Vec<f64>)> = Default::default();
    for round in 1..=rounds {
        println!("round {round} of {rounds}");
        let mut rows: Vec<Vec<Row>> = Vec::new();
        for (label, env) in &configs {
            let node = echo_node(env.clone()).await;
            let mut mine = Vec::new();
            for clients in [1usize, 64] {
                mine.push(phase(&node, label, clients, secs).await);
            }
            rows.push(mine);
        }
        for (config, on) in rows.iter().enumerate().skip(1) {
            for ((clients, r0, p0, _), (_, r1, p1, _)) in rows[0].iter().zip(on) {
                let d = deltas.entry((config, *clients)).or_default();
                d.0.push((r1 / r0 - 1.0) * 100.0);
                d.1.push((p1 / p0 - 1.0) * 100.0);
            }
        }
    }
    for ((config, clients), (rate, p50)) in deltas {
        println!(
            "{} against off, {clients} clients, median of {rounds} rounds: throughput {:+.1} %, p50 latency {:+.1} % (throughput per round: {})",
            configs[config].0,
            median(rate.clone()),
            median(p50),
            rate.iter().map(|d| format!("{d:+.1}")).collect::<Vec<_>>().join(", ")
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!("OTLP bytes received: {}", received.load(Ordering::Relaxed));
}
