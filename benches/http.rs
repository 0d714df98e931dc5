//! The node's HTTP paths measured from outside, side by side in one run:
//! `wrk` (Debian's package) against one `caxton` process built in this
//! profile, data on disk, fsync on, default settings. `GET /health` is the
//! ceiling of the run; every other figure is also given as a ratio to it.
//!
//! Run: `cargo bench --bench http` (`-- --seconds N` per step, default 10).

use std::process::Command;
use std::time::Duration;

use caxton_testing::{echo_agent_toml, figures, repo_path, TestNode};
use serde_json::json;

/// One `wrk` run: requests/s, latency p50 and p99 (µs), and failures
/// (non-2xx answers and socket errors).
struct Run {
    rate: f64,
    p50_us: f64,
    p99_us: f64,
    failures: u64,
}

fn micros(text: &str) -> f64 {
    let (number, unit) = text.split_at(text.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(text.len()));
    let n: f64 = number.parse().unwrap_or(f64::NAN);
    n * match unit {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        _ => f64::NAN,
    }
}

fn parse(out: &str) -> Run {
    let field = |prefix: &str| {
        out.lines().find_map(|l| l.trim().strip_prefix(prefix).map(|rest| rest.trim().to_owned())).unwrap_or_default()
    };
    let failures = field("Non-2xx or 3xx responses:").parse::<u64>().unwrap_or(0)
        + field("Socket errors:")
            .split(',')
            .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
            .sum::<u64>();
    Run {
        rate: field("Requests/sec:").parse().unwrap_or(0.0),
        p50_us: micros(&field("50%")),
        p99_us: micros(&field("99%")),
        failures,
    }
}

/// `wrk` with `connections` connections (and as many threads, up to two)
/// for `seconds`; a POST when `body` is given.
fn wrk(url: &str, body: Option<&serde_json::Value>, connections: u32, seconds: u64) -> Run {
    let script = tempfile::NamedTempFile::new().expect("a temp file");
    let mut cmd = Command::new("wrk");
    cmd.args(["--latency", "-t", &connections.min(2).to_string(), "-c", &connections.to_string()]).args([
        "-d",
        &format!("{seconds}s"),
        "--timeout",
        "30s",
    ]);
    if let Some(body) = body {
        let lua = format!(
            "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.body = [[{body}]]\n"
        );
        std::fs::write(script.path(), lua).expect("write the wrk script");
        cmd.arg("-s").arg(script.path());
    }
    let out = cmd.arg(url).output().expect("wrk (Debian's package `wrk`: `make bench` installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "wrk failed: {}{}", text, String::from_utf8_lossy(&out.stderr));
    parse(&text)
}

fn row(what: &str, run: &Run, ceiling: f64) {
    println!(
        "| {what} | {:.0}/s | {:.0} µs | {:.0} µs | {:.3}× | {} |",
        run.rate,
        run.p50_us,
        run.p99_us,
        run.rate / ceiling,
        run.failures
    );
}

#[tokio::main]
async fn main() {
    let seconds =
        std::env::args().skip_while(|a| a != "--seconds").nth(1).and_then(|s| s.parse().ok()).unwrap_or(10u64);
    let node = TestNode::start().await;
    for i in 0..4 {
        let (status, body) = node.post_toml("/v1/agents", &echo_agent_toml(&format!("echo{i}"), &["echo"])).await;
        assert!(status < 300, "{body}");
    }
    let out = node.cli(&["mcp", "deploy", &repo_path("examples/mcp/json_query").to_string_lossy()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Warm up the paths (tool compiled, sessions started, connections open).
    wrk(&node.url("/health"), None, 8, 1);

    let health = wrk(&node.url("/health"), None, 64, seconds);
    // The tool call before the messages: tens of thousands of committed
    // messages leave the node compacting its log for a while after.
    let call = json!({"arguments": {"json": {"a": 1}, "path": "a"}});
    let tool_64 = wrk(&node.url("/v1/tools/json_query/call"), Some(&call), 64, seconds);
    let message = json!({"to": "echo0", "content": "ping", "timeout_ms": 30000});
    let sync_64 = wrk(&node.url("/v1/messages"), Some(&message), 64, seconds);
    let sync_1 = wrk(&node.url("/v1/messages"), Some(&message), 1, seconds);
    let health_after = wrk(&node.url("/health"), None, 64, seconds);

    let ceiling = health.rate.max(health_after.rate);
    let profile = if cfg!(debug_assertions) { "dev" } else { "release" };
    println!("\n{seconds} s per step, one node ({profile} build), wrk on the same machine");
    println!("| path | rate | p50 | p99 | ratio to /health | failures |");
    println!("| --- | --- | --- | --- | --- | --- |");
    row("`GET /health`, 64 connections", &health, ceiling);
    row("sync message to an echo agent, 64 connections", &sync_64, ceiling);
    row("sync message to an echo agent, 1 connection", &sync_1, ceiling);
    row("`POST /v1/tools/json_query/call` (stateless), 64 connections", &tool_64, ceiling);
    row("`GET /health` again, 64 connections", &health_after, ceiling);
    figures::record("http.health.rate", ceiling);
    figures::record("http.message_64.rate", sync_64.rate);
    figures::record("http.message_1.p50_us", sync_1.p50_us);
    figures::record("http.tool_64.rate", tool_64.rate);
    drop(node);
    tokio::time::sleep(Duration::from_millis(100)).await;
}
