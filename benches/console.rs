//! The web console's cold load, measured in a real browser: bytes
//! transferred (page, scripts, styles, the API calls of the first page) and
//! the time from navigation to the first page on screen (the console's
//! `caxton:first-page` mark) and to the first contentful paint. Each round
//! starts a fresh chromium profile, so nothing is cached.
//!
//! Run: `cargo bench --bench console` (`-- --rounds N`, default 10).
//! Needs chromium and chromedriver (`make chromium`).

use std::time::Duration;

use caxton_testing::{echo_agent_toml, percentile, Browser, TestNode};
use serde_json::json;

const MEASURE: &str = "
const nav = performance.getEntriesByType('navigation')[0];
const resources = performance.getEntriesByType('resource');
const fcp = performance.getEntriesByName('first-contentful-paint')[0];
const page = performance.getEntriesByName('caxton:first-page')[0];
const bytes = nav.transferSize + resources.reduce((n, r) => n + r.transferSize, 0);
const files = resources.filter((r) => r.name.includes('/ui/')).reduce((n, r) => n + r.transferSize, 0) + nav.transferSize;
return [bytes, files, fcp ? fcp.startTime : -1, page ? page.startTime : -1, resources.length];
";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rounds: usize = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(10);
    let node = TestNode::start().await;
    for i in 0..20 {
        let (s, _) = node.post_toml("/v1/agents", &echo_agent_toml(&format!("agent-{i}"), &["bench"])).await;
        assert!(s == 201 || s == 200);
    }
    let (mut fcps, mut pages) = (Vec::new(), Vec::new());
    let (mut bytes, mut files, mut requests) = (0, 0, 0);
    for _ in 0..rounds {
        let browser = Browser::start().await;
        browser.goto(&node.url("/ui#/agents")).await;
        browser.wait_for("the first page", "return performance.getEntriesByName('caxton:first-page').length").await;
        // Paint entries are written a frame after the paint.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let m = browser.eval(MEASURE, json!([])).await;
        bytes = m[0].as_f64().unwrap() as u64;
        files = m[1].as_f64().unwrap() as u64;
        requests = m[4].as_u64().unwrap();
        fcps.push(Duration::from_secs_f64(m[2].as_f64().unwrap() / 1000.0));
        pages.push(Duration::from_secs_f64(m[3].as_f64().unwrap() / 1000.0));
        browser.assert_clean_log("bench").await;
    }
    println!("console cold load, {rounds} rounds, loopback, page: Agents (20 agents)");
    println!(
        "  transferred: {bytes} bytes in all ({files} bytes of console files, {requests} requests after the page)"
    );
    for (what, samples) in [("first contentful paint", &mut fcps), ("first page on screen", &mut pages)] {
        println!(
            "  {what}: p50 {:.0} ms, max {:.0} ms",
            percentile(samples, 0.5).as_secs_f64() * 1000.0,
            samples.iter().max().unwrap().as_secs_f64() * 1000.0
        );
    }
}
