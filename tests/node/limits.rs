//! Per-agent limits, each reached once through the public API: its
//! problem type, the agent's `error` reply, the metric, and daily counters
//! that survive a restart.

use std::time::Duration;

use caxton_testing::*;
use serde_json::{json, Value};

async fn limit_hits(node: &TestNode, limit: &str) -> f64 {
    let text = node.http.get(node.url("/metrics")).send().await.unwrap().text().await.unwrap();
    metric_value(&text, "caxton_agent_limit_hits_total", &[("limit", limit)]).unwrap_or(0.0)
}

/// A sync send that a limit stopped: 429 naming it, with the error reply.
async fn refused(node: &TestNode, to: &str, content: &str, limit: &str) -> Value {
    let (s, p) = node.post_json("/v1/messages", json!({"to": to, "content": content, "timeout_ms": 30000})).await;
    assert_eq!(s, 429, "{p}");
    assert_eq!(p["type"], "https://caxton.dev/problems/agent-limit-reached", "{p}");
    assert_eq!(p["extra"]["limit"], limit, "{p}");
    p
}

fn agent(name: &str, limits: &str) -> String {
    format!("name = \"{name}\"\nprovider = \"stub\"\ntools = [\"ask_agent\"]\nsystem_prompt = \"{name}\"\n\n[limits]\n{limits}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_limit_is_reached_once_with_its_problem_metric_and_reply() {
    let stub = OpenAiStub::start().await;
    stub.respond_with(|req| {
        let system = req["messages"][0]["content"].as_str().unwrap_or("");
        let called = req["messages"].as_array().unwrap().iter().any(|m| m["role"] == "tool");
        match system {
            "chatty" => StubReply::text("many words").with_usage(600, 500),
            "looper" => StubReply::tool_call("ask_agent", json!({"agent": "plain", "message": "again"})),
            "slow" => StubReply::text("late").after(Duration::from_secs(3)),
            "pricey" => StubReply::text("costly").with_usage(400_000, 100_000),
            _ if called => StubReply::text("done"),
            _ => StubReply::text("ok").with_usage(10, 10),
        }
    });
    let tables = stub.provider_config("stub", "input_price_per_mtok = 1.0\noutput_price_per_mtok = 4.0");
    let node = TestNode::start_with(NodeOptions { tables, ..Default::default() }).await;
    deploy(&node, &agent("plain", "")).await;
    deploy(&node, &agent("chatty", "tokens_per_turn = 1000")).await;
    deploy(&node, &agent("looper", "tool_calls_per_turn = 2")).await;
    deploy(&node, &agent("slow", "turn_time_ms = 500")).await;
    deploy(&node, &agent("small", "max_message_bytes = 64")).await;
    deploy(&node, &agent("pricey", "spend_per_day_usd = 0.5")).await;

    // Tokens per turn: 1,100 used, at most 1,000.
    let p = refused(&node, "chatty", "talk", "tokens_per_turn").await;
    assert_eq!(p["extra"]["reply"]["kind"], "error", "the agent's reply is an error: {p}");
    assert!(p["detail"].as_str().unwrap().contains("1100 tokens used, at most 1000"), "{p}");
    // Tool calls per turn: the third call is refused.
    let p = refused(&node, "looper", "loop", "tool_calls_per_turn").await;
    assert!(p["detail"].as_str().unwrap().contains("call 3 of at most 2"), "{p}");
    // Wall time per turn.
    refused(&node, "slow", "hurry", "turn_time_ms").await;
    // Message size: refused before it is committed.
    let (s, p) = node.post_json("/v1/messages", json!({"to": "small", "content": "x".repeat(65)})).await;
    assert_eq!((s, p["extra"]["limit"].as_str()), (429, Some("max_message_bytes")), "{p}");
    assert_eq!(ask(&node, "small", "short").await["reply"]["kind"], "response");
    // Spend per day: 0.4 + 0.4 USD by the provider's prices; the first
    // turn passes the half dollar, the next message is refused up front.
    let (s, first) = node.post_json("/v1/messages", json!({"to": "pricey", "content": "buy"})).await;
    assert_eq!(s, 429, "{first}");
    let (s, p) = node.post_json("/v1/messages", json!({"to": "pricey", "content": "buy more"})).await;
    assert_eq!((s, p["extra"]["limit"].as_str()), (429, Some("spend_per_day_usd")), "{p}");
    let (_, a) = node.get("/v1/agents/pricey").await;
    assert!((a["usage"]["spend_usd"].as_f64().unwrap() - 0.8).abs() < 1e-9, "{a}");
    assert_eq!(a["limits"]["spend_per_day_usd"], 0.5);

    for limit in ["tokens_per_turn", "tool_calls_per_turn", "turn_time_ms", "max_message_bytes", "spend_per_day_usd"] {
        assert!(limit_hits(&node, limit).await >= 1.0, "{limit} counted");
    }
    // An invalid limit names its line.
    let (s, p) = node.post_toml("/v1/agents", &agent("bad", "concurrency = 0")).await;
    assert_eq!(s, 422, "{p}");
    assert_eq!(
        (p["errors"][0]["field"].as_str(), p["errors"][0]["line"].as_u64()),
        (Some("limits.concurrency"), Some(7)),
        "{p}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_tokens_run_out_and_stay_spent_across_a_restart() {
    let stub = OpenAiStub::start().await;
    stub.respond_with(|_| StubReply::text("fine").with_usage(300, 100));
    let tables = stub.provider_config("stub", "");
    let mut node = TestNode::start_with(NodeOptions { tables, ..Default::default() }).await;
    deploy(&node, &agent("thrifty", "tokens_per_day = 1000")).await;
    for i in 0..2 {
        assert_eq!(ask(&node, "thrifty", &format!("q{i}")).await["reply"]["kind"], "response");
    }
    // 800 used: the third turn passes 1,000 and is stopped; the day is spent.
    refused(&node, "thrifty", "q2", "tokens_per_day").await;
    let (s, p) = node.post_json("/v1/messages", json!({"to": "thrifty", "content": "q3", "mode": "async"})).await;
    assert_eq!((s, p["extra"]["limit"].as_str()), (429, Some("tokens_per_day")), "refused before commit: {p}");
    let (_, before) = node.get("/v1/agents/thrifty").await;
    assert_eq!(before["usage"]["tokens"], 1200, "{before}");
    assert_eq!(before["usage"]["turns"], 3);

    node.terminate().await;
    node.restart().await;
    let (_, after) = node.get("/v1/agents/thrifty").await;
    assert_eq!(after["usage"], before["usage"], "usage is replicated state");
    let (s, _) = node.post_json("/v1/messages", json!({"to": "thrifty", "content": "q4"})).await;
    assert_eq!(s, 429, "still spent after the restart");
    let (_, agent) = node.get("/v1/agents/thrifty").await;
    assert_eq!(agent["limits"]["tokens_per_day"], 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_reached_is_an_event_on_the_feed() {
    use futures::StreamExt;
    let stub = OpenAiStub::start().await;
    stub.respond_with(|_| StubReply::text("long").with_usage(50, 60));
    let node =
        TestNode::start_with(NodeOptions { tables: stub.provider_config("stub", ""), ..Default::default() }).await;
    deploy(&node, &agent("brief", "tokens_per_turn = 100")).await;
    let feed = node.http.get(node.url("/v1/events")).send().await.unwrap();
    assert_eq!(feed.status(), 200);
    refused(&node, "brief", "say a lot", "tokens_per_turn").await;
    let mut decoder = caxton::sse::SseDecoder::default();
    let mut body = feed.bytes_stream();
    loop {
        let chunk =
            tokio::time::timeout(Duration::from_secs(20), body.next()).await.expect("no event").unwrap().unwrap();
        if let Some(e) = decoder.feed(&chunk).into_iter().find(|e| e.event == "agent_limit_reached") {
            let v: Value = serde_json::from_str(&e.data).unwrap();
            assert_eq!((v["agent"].as_str(), v["limit"].as_str()), (Some("brief"), Some("tokens_per_turn")), "{v}");
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_keeps_turns_of_one_agent_in_line() {
    let stub = OpenAiStub::start().await;
    stub.respond_with(|_| StubReply::text("one at a time").after(Duration::from_millis(400)));
    let tables = stub.provider_config("stub", "");
    let node = TestNode::start_with(NodeOptions {
        tables,
        extra_config: "agent_concurrency = 8".into(),
        ..Default::default()
    })
    .await;
    deploy(&node, &agent("single", "concurrency = 1")).await;
    let sends = (0..3).map(|i| node.post_json("/v1/messages", json!({"to": "single", "content": format!("q{i}")})));
    for (s, v) in futures::future::join_all(sends).await {
        assert_eq!(s, 200, "{v}");
    }
    let times = stub.request_times();
    assert_eq!(times.len(), 3);
    let mut sorted = times.clone();
    sorted.sort();
    for pair in sorted.windows(2) {
        assert!(pair[1] - pair[0] >= Duration::from_millis(350), "turns overlapped: {sorted:?}");
    }
    assert!(limit_hits(&node, "concurrency").await >= 1.0);
    let (_, a) = node.get("/v1/agents/single").await;
    assert_eq!(a["limits"]["concurrency"], 1, "{a}");
}
