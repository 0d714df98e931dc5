//! Tool-call benchmarks: a trivial tool through the full MCP path (fresh
//! instance, WASI stdio, JSON-RPC handshake and call) and through a warm
//! session (a server that declares itself stateless) against a bare
//! wasmtime function call in the same run; the first call of a newly
//! deployed server; resident memory per compiled (idle) server.
//!
//! Run: `cargo bench --bench tools` (after `make wasm`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use caxton::mcp::{Limits, McpHost, Sandbox};
use caxton_testing::{figures, percentile, repo_path, resident_kb};
use serde_json::json;

fn us(v: &mut [Duration], p: f64) -> f64 {
    percentile(v, p).as_secs_f64() * 1e6
}

fn bare_call_rate() -> f64 {
    let engine = wasmtime::Engine::default();
    let module = wasmtime::Module::new(
        &engine,
        r#"(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))"#,
    )
    .unwrap();
    let mut store = wasmtime::Store::new(&engine, ());
    let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
    let add = instance.get_typed_func::<(i32, i32), i32>(&mut store, "add").unwrap();
    let n = 2_000_000;
    let t = Instant::now();
    let mut acc = 0i32;
    for i in 0..n {
        acc = add.call(&mut store, (acc, i)).unwrap();
    }
    std::hint::black_box(acc);
    n as f64 / t.elapsed().as_secs_f64()
}

/// `n` calls of the trivial query, one after another: each one's latency.
async fn sequential<F, Fut>(n: usize, call: F) -> Vec<Duration>
where
    F: Fn(serde_json::Value) -> Fut,
    Fut: std::future::Future<Output = Result<serde_json::Value, caxton::mcp::ToolError>>,
{
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        call(json!({"json": {"n": i}, "path": "n"})).await.unwrap();
        lat.push(t.elapsed());
    }
    lat
}

/// `n` calls from `callers` tasks at once: calls/s and each call's latency.
async fn warm_concurrent(
    host: &Arc<McpHost>,
    server: &caxton::mcp::CompiledServer,
    n: usize,
    callers: usize,
) -> (f64, Vec<Duration>) {
    let t = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|c| {
            let (host, server) = (host.clone(), server.clone());
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(n / callers);
                for i in 0..n / callers {
                    let t = Instant::now();
                    let args = json!({"json": {"n": c * n + i}, "path": "n"});
                    host.call_stateless(&server, "json_query", args, Limits::default(), Sandbox::default())
                        .await
                        .unwrap();
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut lat = Vec::with_capacity(n);
    for task in tasks {
        lat.extend(task.await.unwrap());
    }
    (lat.len() as f64 / t.elapsed().as_secs_f64(), lat)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let bytes = std::fs::read(repo_path("examples/mcp/json_query/json_query.wasm")).expect("run `make wasm` first");
    let dir = tempfile::tempdir().unwrap();
    let host: Arc<McpHost> = McpHost::new(&dir.path().join("cache")).unwrap();

    // First call of a newly deployed server: compile (no cache) + instantiate + call.
    let t = Instant::now();
    let server = host.compile(&bytes).unwrap();
    let compiled = t.elapsed();
    host.call_tool(
        &server,
        "json_query",
        json!({"json": {"a": 1}, "path": "a"}),
        Limits::default(),
        Sandbox::default(),
    )
    .await
    .unwrap();
    println!(
        "first call of a new server: {:.1} ms (compile {:.1} ms)",
        t.elapsed().as_secs_f64() * 1e3,
        compiled.as_secs_f64() * 1e3
    );
    let fresh = McpHost::new(&dir.path().join("cache")).unwrap();
    let t = Instant::now();
    let cached = fresh.compile(&bytes).unwrap();
    fresh
        .call_tool(&cached, "json_query", json!({"json": {"a": 1}, "path": "a"}), Limits::default(), Sandbox::default())
        .await
        .unwrap();
    println!("first call after a restart (module from the disk cache): {:.1} ms", t.elapsed().as_secs_f64() * 1e3);

    // Latency, sequential.
    let mut lat = sequential(2000, |args| {
        let (host, server) = (host.clone(), server.clone());
        async move { host.call_tool(&server, "json_query", args, Limits::default(), Sandbox::default()).await }
    })
    .await;
    println!("full MCP path, sequential: p50 {:.0} us, p99 {:.0} us", us(&mut lat, 0.5), us(&mut lat, 0.99));

    // Throughput, concurrent.
    let n = 5000;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..n {
        let (host, server) = (host.clone(), server.clone());
        tasks.push(tokio::spawn(async move {
            host.call_tool(
                &server,
                "json_query",
                json!({"json": {"n": i}, "path": "n"}),
                Limits::default(),
                Sandbox::default(),
            )
            .await
            .unwrap();
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mcp_rate = n as f64 / t.elapsed().as_secs_f64();
    let bare = bare_call_rate();
    println!(
        "full MCP path: {mcp_rate:.0} calls/s; bare wasmtime function call: {bare:.0} calls/s; ratio {:.6}",
        mcp_rate / bare
    );

    // The same trivial tool on a server that declares itself stateless:
    // warm, initialised sessions reused, the call run on the caller's task.
    let mut lat = sequential(20_000, |args| {
        let (host, server) = (host.clone(), server.clone());
        async move { host.call_stateless(&server, "json_query", args, Limits::default(), Sandbox::default()).await }
    })
    .await;
    println!("warm session (stateless), sequential: p50 {:.1} us, p99 {:.1} us", us(&mut lat, 0.5), us(&mut lat, 0.99));
    let mut rounds = Vec::new();
    for round in 1..=3 {
        let (rate, mut lat) = warm_concurrent(&host, &server, 200_000, 64).await;
        let p99 = us(&mut lat, 0.99);
        println!(
            "warm session (stateless), 64 callers, round {round}: {rate:.0} calls/s, p50 {:.1} us, p99 {p99:.1} us ({} sessions); ratio to the bare call {:.6}",
            us(&mut lat, 0.5),
            host.warm_sessions(),
            rate / bare
        );
        rounds.push((rate, p99));
    }
    // The median round by rate, with its own p99.
    rounds.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (rate, p99) = rounds[1];
    figures::record("tools.warm.rate", rate);
    figures::record("tools.warm.p99_us", p99);
    figures::record("tools.bare_wasmtime.rate", bare);

    // Memory per idle (compiled, not running) server.
    let before = resident_kb(std::process::id());
    let mut keep = Vec::new();
    for i in 0..20u8 {
        let mut variant = bytes.clone();
        // A custom section makes each module distinct (new hash, new compile).
        variant.extend_from_slice(&[0, 3, 1, b'x', i]);
        keep.push(host.compile(&variant).unwrap());
    }
    println!(
        "resident memory per idle server: {:.0} KB (20 distinct compiled modules)",
        (resident_kb(std::process::id()) - before) / 20.0
    );
}
