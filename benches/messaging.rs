//! Messaging benchmarks on one node.
//!
//! (a) end to end through HTTP → Raft (accept) → owner's mailbox → agent
//!     (zero-latency `echo` provider) → Raft (reply) → the waiting caller;
//! (b) the in-memory routing step alone (name → mailbox) against a raw
//!     `tokio::sync::mpsc` channel measured in the same run;
//! (c) the local model: tokens/s and time to first token.
//!
//! Run: `cargo bench --bench messaging` (`-- --quick` for a short run,
//! `-- --local` for step (c) alone).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use caxton::llm::{ChatMessage, ChatRequest, LocalModel, LocalSettings};
use caxton::runtime::{Delivery, Mailboxes};
use caxton_testing::{echo_agent_toml, figures, models_dir, percentile, repo_path, InProcessNode};
use tokio::sync::mpsc;

fn ms(v: &mut [Duration], p: f64) -> f64 {
    percentile(v, p).as_secs_f64() * 1e3
}

async fn end_to_end(quick: bool) -> anyhow::Result<()> {
    let node = InProcessNode::start(|_| {}).await?;
    let base = node.base.clone();
    let http = reqwest::Client::builder().pool_max_idle_per_host(512).build()?;
    for i in 0..4 {
        let toml = echo_agent_toml(&format!("echo{i}"), &["echo"]);
        http.post(format!("{base}/v1/agents")).header("content-type", "application/toml").body(toml).send().await?;
    }
    let secs = if quick { 4 } else { 10 };
    for clients in [1usize, 64, 256] {
        let done = Arc::new(AtomicU64::new(0));
        let lat = Arc::new(Mutex::new(Vec::new()));
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut tasks = Vec::new();
        for c in 0..clients {
            let (http, base, done, lat) = (http.clone(), base.clone(), done.clone(), lat.clone());
            tasks.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                while Instant::now() < deadline {
                    let body =
                        serde_json::json!({"to": format!("echo{}", c % 4), "content": "ping", "timeout_ms": 30000});
                    let t = Instant::now();
                    let r = http.post(format!("{base}/v1/messages")).json(&body).send().await;
                    if matches!(r, Ok(ref r) if r.status() == 200) {
                        mine.push(t.elapsed());
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
                lat.lock().unwrap().extend(mine);
            }));
        }
        for t in tasks {
            t.await?;
        }
        let mut lat = lat.lock().unwrap().clone();
        let n = done.load(Ordering::Relaxed);
        println!(
            "(a) answered messages/s with {clients:>3} sync clients: {:>6.0}  p50 {:.2} ms  p99 {:.2} ms",
            n as f64 / secs as f64,
            ms(&mut lat, 0.5),
            ms(&mut lat, 0.99)
        );
    }
    node.shutdown().await;
    Ok(())
}

/// Receives until the channel closes; yields how many messages came.
fn count_all<T: Send + 'static>(mut rx: mpsc::Receiver<T>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut c = 0u64;
        while rx.recv().await.is_some() {
            c += 1;
        }
        c
    })
}

async fn routing_vs_mpsc(quick: bool) {
    let n: u64 = if quick { 500_000 } else { 2_000_000 };
    // Raw channel: send + receive, nothing else.
    let (tx, rx) = mpsc::channel::<String>(1024);
    let consumer = count_all(rx);
    let t = Instant::now();
    for i in 0..n {
        let id = i.to_string();
        tx.send(id).await.unwrap();
    }
    drop(tx);
    assert_eq!(consumer.await.unwrap(), n);
    let raw = n as f64 / t.elapsed().as_secs_f64();

    // Routing: name lookup among 100 agents, then the agent's mailbox.
    let boxes = Arc::new(Mailboxes::default());
    let (tx, rx) = mpsc::channel::<Delivery>(1024);
    for a in 0..100 {
        let (other, _keep) = mpsc::channel::<Delivery>(1);
        std::mem::forget(_keep);
        boxes.insert(format!("agent-{a}"), other);
    }
    boxes.insert("target".into(), tx);
    let consumer = count_all(rx);
    let t = Instant::now();
    for i in 0..n {
        // Same backpressure rule as the runtime: a full mailbox is retried later.
        while boxes.deliver("target", Delivery { id: i.to_string(), retry: false }).is_err() {
            tokio::task::yield_now().await;
        }
    }
    boxes.remove("target");
    assert_eq!(consumer.await.unwrap(), n);
    let routed = n as f64 / t.elapsed().as_secs_f64();
    println!("(b) raw mpsc: {raw:.0} msgs/s; routing step: {routed:.0} msgs/s; ratio {:.2}", routed / raw);
}

async fn local_model() -> anyhow::Result<()> {
    let model_path = models_dir().join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    let model = LocalModel::new(
        "local",
        LocalSettings {
            model_path: model_path.clone(),
            temperature: 0.0,
            max_tokens: 128,
            concurrency: 1,
            context_tokens: 2048,
            seed: 7,
        },
    );
    let t = Instant::now();
    model.warm_up().await?;
    println!("(c) local model loaded in {:.0} ms (weights as stored)", t.elapsed().as_secs_f64() * 1e3);
    let req = ChatRequest {
        messages: vec![
            ChatMessage::system("You are a helpful assistant."),
            ChatMessage::user("Write a short paragraph about the sea."),
        ],
        max_tokens: Some(128),
        ..Default::default()
    };
    let mut ttft = Vec::new();
    let mut tps = Vec::new();
    for _ in 0..3 {
        let g = model.generate(&req, None).await?;
        let decode = g.total - g.time_to_first_token;
        ttft.push(g.time_to_first_token.as_secs_f64() * 1e3);
        tps.push(g.completion_tokens.saturating_sub(1) as f64 / decode.as_secs_f64());
        println!("    prompt {} tokens, {} generated", g.prompt_tokens, g.completion_tokens);
    }
    let (tps, ttft) = (median(&mut tps), median(&mut ttft));
    println!(
        "(c) local model (ours, candle kernels + our Q4_1 kernel): decode {tps:.1} tokens/s (median of 3), time to first token {ttft:.0} ms (median)"
    );
    figures::record("llm.candle.decode_tps", tps);
    figures::record("llm.candle.ttft_ms", ttft);
    match llama_cpp(&model_path, 128) {
        Ok((ref_tps, ref_ttft)) => {
            println!(
                "    llama.cpp, same file, same run: decode {ref_tps:.1} tokens/s, time to first token {ref_ttft:.0} ms; ours/llama.cpp decode {:.2}x",
                tps / ref_tps
            );
            figures::record("llm.llamacpp.decode_tps", ref_tps);
            figures::record("llm.llamacpp.ttft_ms", ref_ttft);
        }
        Err(e) => println!("    llama.cpp reference not run: {e:#}"),
    }
    Ok(())
}

/// llama.cpp (`llama-cpp-python`) on the same file: (decode tokens/s, time
/// to first token in ms), from `benches/llama_cpp_reference.py` run with
/// `CAXTON_TEST_PYTHON` (the venv `make bench` installs it into).
fn llama_cpp(model: &std::path::Path, max_tokens: u32) -> anyhow::Result<(f64, f64)> {
    let python = std::env::var("CAXTON_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(&python)
        .arg(repo_path("benches/llama_cpp_reference.py"))
        .arg(model)
        .arg(max_tokens.to_string())
        .output()
        .with_context(|| format!("run {python}"))?;
    anyhow::ensure!(
        out.status.success(),
        "{python} benches/llama_cpp_reference.py failed (is llama-cpp-python installed? `make bench` installs it): {}",
        String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or_default()
    );
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).context("the reference's JSON line")?;
    let field = |k: &str| line[k].as_f64().with_context(|| format!("`{k}` in {line}"));
    Ok((field("decode_tps")?, field("ttft_ms")?))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    if std::env::args().any(|a| a == "--local") {
        return local_model().await;
    }
    routing_vs_mpsc(quick).await;
    end_to_end(quick).await?;
    local_model().await?;
    Ok(())
}
