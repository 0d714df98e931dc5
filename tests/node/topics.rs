//! Publish/subscribe on one node, every way in: agent TOML `subscriptions`,
//! the REST routes, the CLI, the SSE stream of a topic (with resume), the
//! `publish` built-in tool an agent calls, and the refusals.

use std::time::Duration;

use caxton_testing::*;
use futures::StreamExt;
use serde_json::{json, Value};

fn stdout_of(o: &std::process::Output) -> String {
    assert!(o.status.success(), "CLI failed: {}", stderr(o));
    stdout(o)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_from_toml_api_and_cli_receive_publications() {
    let node = TestNode::start().await;
    deploy(
        &node,
        "name = \"shipping\"\nprovider = \"echo\"\nsystem_prompt = \"Echo.\"\nsubscriptions = [\"orders.*\"]\n",
    )
    .await;
    deploy(&node, &echo_agent_toml("audit", &[])).await;

    // A bad pattern names its file line and field.
    let (s, p) =
        node.post_toml("/v1/agents", "name = \"bad\"\nsystem_prompt = \"x\"\nsubscriptions = [\"orders.>.x\"]\n").await;
    assert_eq!(s, 422, "{p}");
    let err = &p["errors"][0];
    assert_eq!((err["field"].as_str(), err["line"].as_u64()), (Some("subscriptions"), Some(3)), "{p}");
    assert!(err["reason"].as_str().unwrap().contains("`>` may only be the last segment"), "{p}");

    // Through the CLI: subscribe `audit`, list both kinds.
    let out = stdout_of(&node.cli(&["agent", "subscriptions", "audit", "--add", "orders.>"]));
    assert!(out.contains("orders.>") && out.contains("api"), "{out}");
    let (_, subs) = node.get("/v1/agents/shipping/subscriptions").await;
    assert_eq!(subs[0]["source"], "definition", "{subs}");
    assert_eq!(subs[0]["pattern"], "orders.*");

    let out = stdout_of(&node.cli(&["topic", "publish", "orders.created", "order 7", "--id", "p-7"]));
    assert!(out.contains("2 subscription(s) notified"), "{out}");
    let out = stdout_of(&node.cli(&["topic", "publish", "orders.created", "order 7", "--id", "p-7"]));
    assert!(out.contains("already published"), "a retry publishes once: {out}");
    let (s, v) = node.post_json("/v1/topics/orders.eu.created/publications", json!({"content": "order 8"})).await;
    assert_eq!((s, v["recipients"].as_u64()), (201, Some(1)), "only `orders.>` matches two segments: {v}");

    for id in ["p-7.0", "p-7.1"] {
        eventually(&format!("{id} processed"), Duration::from_secs(15), || async {
            node.get(&format!("/v1/messages/{id}")).await.1["message"]["status"] == "processed"
        })
        .await;
    }
    let (_, m) = node.get("/v1/messages/p-7.0").await;
    assert_eq!(
        (m["message"]["receiver"].as_str(), m["message"]["topic"].as_str()),
        (Some("audit"), Some("orders.created"))
    );
    assert!(m["reply"].is_null());

    let out = stdout_of(&node.cli(&["topic", "list"]));
    assert!(out.contains("orders.created") && out.contains("orders.eu.created"), "{out}");
    let out = stdout_of(&node.cli(&["conversation", "list", "--protocol", "subscribe", "--participant", "audit"]));
    assert_eq!(out.lines().filter(|l| l.contains("subscribe")).count(), 1, "{out}");

    // Cancelling: the API one goes, its conversation completes; a
    // definition's cannot be cancelled here and the answer says why.
    let (_, subs) = node.get("/v1/agents/audit/subscriptions").await;
    let (id, conv) =
        (subs[0]["id"].as_str().unwrap().to_owned(), subs[0]["conversation_id"].as_str().unwrap().to_owned());
    assert_eq!(node.delete(&format!("/v1/agents/audit/subscriptions/{id}")).await.0, 204);
    let (s, p) = node.delete(&format!("/v1/agents/audit/subscriptions/{id}")).await;
    assert_eq!((s, p["type"].as_str()), (404, Some("https://caxton.dev/problems/subscription-not-found")));
    assert_eq!(node.get(&format!("/v1/conversations/{conv}")).await.1["state"], "completed");
    let (_, shipping) = node.get("/v1/agents/shipping/subscriptions").await;
    let (s, p) =
        node.delete(&format!("/v1/agents/shipping/subscriptions/{}", shipping[0]["id"].as_str().unwrap())).await;
    assert_eq!(s, 404);
    assert!(p["detail"].as_str().unwrap().contains("definition"), "{p}");

    // Refusals name what was wrong.
    let (s, p) = node.post_json("/v1/topics/orders.*/publications", json!({"content": "x"})).await;
    assert_eq!(s, 400, "{p}");
    assert!(p["detail"].as_str().unwrap().contains("wildcard"), "{p}");
    let (s, _) = node.post_json("/v1/agents/ghost/subscriptions", json!({"pattern": "a"})).await;
    assert_eq!(s, 404);
    let (s, p) = node.post_json("/v1/agents/audit/subscriptions", json!({"pattern": "a..b"})).await;
    assert_eq!(s, 400, "{p}");
}

/// `publication` events of an SSE body until `n` arrived.
async fn publications(resp: reqwest::Response, n: usize) -> Vec<(String, Value)> {
    assert_eq!(resp.status(), 200);
    let mut decoder = caxton::sse::SseDecoder::default();
    let mut out = Vec::new();
    let mut body = resp.bytes_stream();
    while out.len() < n {
        let chunk = tokio::time::timeout(Duration::from_secs(30), body.next()).await.expect("stream stalled");
        for e in decoder.feed(&chunk.expect("stream ended").unwrap()) {
            if e.event == "publication" {
                let p: Value = serde_json::from_str(&e.data).unwrap();
                out.push((p["position"].to_string(), p));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_streams_to_outside_clients_and_resumes_from_last_event_id() {
    let node = TestNode::start().await;
    let stream = node.http.get(node.url("/v1/topics/alerts.%3E/stream")).send().await.unwrap();
    // The stream starts at "now": give the handler its starting point first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (i, topic) in ["alerts.disk", "other.disk", "alerts.cpu.high"].iter().enumerate() {
        let (s, v) =
            node.post_json(&format!("/v1/topics/{topic}/publications"), json!({"content": format!("n{i}")})).await;
        assert_eq!(s, 201, "{v}");
        assert_eq!(v["recipients"], 0, "nobody subscribed: stored anyway");
    }
    let got = publications(stream, 2).await;
    let topics: Vec<&str> = got.iter().map(|(_, p)| p["topic"].as_str().unwrap()).collect();
    assert_eq!(topics, ["alerts.disk", "alerts.cpu.high"], "only what the pattern matches, in order");
    // Reconnecting after the first: only what came after it.
    let first = got[0].0.clone();
    let again =
        node.http.get(node.url("/v1/topics/alerts.%3E/stream")).header("last-event-id", first).send().await.unwrap();
    let resumed = publications(again, 1).await;
    assert_eq!(resumed[0].1["content"], "n2");
    let (s, p) = node.get("/v1/topics/a..b/stream").await;
    assert_eq!(s, 400, "{p}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_publishes_through_its_builtin_tool() {
    let stub = OpenAiStub::start().await;
    stub.respond_with(|req| {
        let tool_result = req["messages"].as_array().unwrap().iter().any(|m| m["role"] == "tool");
        if tool_result {
            StubReply::text("announced")
        } else {
            StubReply::tool_call("publish", json!({"topic": "news.launch", "content": "we launched"}))
        }
    });
    let node =
        TestNode::start_with(NodeOptions { tables: stub.provider_config("stub", ""), ..Default::default() }).await;
    deploy(&node, "name = \"herald\"\nprovider = \"stub\"\ntools = [\"publish\"]\nsystem_prompt = \"Announce.\"\n")
        .await;
    deploy(&node, "name = \"reader\"\nprovider = \"echo\"\nsystem_prompt = \"Echo.\"\nsubscriptions = [\"news.*\"]\n")
        .await;
    let answer = ask(&node, "herald", "announce the launch").await;
    assert_eq!(answer["reply"]["content"], "announced", "{answer}");
    let (_, subs) = node.get("/v1/agents/reader/subscriptions").await;
    let conv = subs[0]["conversation_id"].as_str().unwrap().to_owned();
    eventually("the reader processed the herald's publication", Duration::from_secs(15), || async {
        let (_, c) = node.get(&format!("/v1/conversations/{conv}")).await;
        c["messages"].as_array().is_some_and(|m| {
            m.len() == 1
                && m[0]["sender"] == "herald"
                && m[0]["content"] == "we launched"
                && m[0]["status"] == "processed"
        })
    })
    .await;
    let text = node.http.get(node.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let published =
        metric_value(&text, "caxton_protocol_events_total", &[("protocol", "subscribe"), ("event", "published")]);
    assert_eq!(published, Some(1.0), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_limited_to_some_agents_cannot_publish_or_stream() {
    let node = TestNode::start_with(NodeOptions { admin_key: Some(TEST_ADMIN_KEY.into()), ..Default::default() }).await;
    let token = node.create_key(json!({"name": "narrow", "scopes": ["invoke", "read"], "agents": ["support-*"]})).await;
    let http = keyed_client(&token);
    let r = http.post(node.url("/v1/topics/a.b/publications")).json(&json!({"content": "x"})).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["type"], "https://caxton.dev/problems/outside-key-grant", "{p}");
    let r = http.get(node.url("/v1/topics/a.b/stream")).send().await.unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_runs_an_auction_and_a_negotiation_through_its_tools() {
    let stub = OpenAiStub::start().await;
    stub.respond_with(|req| {
        let messages = req["messages"].as_array().unwrap();
        let tool_result = messages.iter().rev().find(|m| m["role"] == "tool").and_then(|m| m["content"].as_str());
        let asked = last_of_role(req, "user").unwrap()["content"].as_str().unwrap_or("").to_owned();
        match tool_result {
            Some(record) => {
                let v: Value = serde_json::from_str(record).unwrap_or(Value::Null);
                StubReply::text(&format!(
                    "outcome: {} {}",
                    v["state"].as_str().unwrap_or("?"),
                    v["result"]["winner"].as_str().or(v["terms"].as_str()).unwrap_or("-")
                ))
            }
            None if asked.contains("auction") => StubReply::tool_call(
                "start_auction",
                json!({"kind": "sealed_bid", "item": "a crate", "bidders": ["low", "high"], "deadline_ms": 10000}),
            ),
            None => {
                StubReply::tool_call("start_negotiation", json!({"subject": "a crate", "parties": ["low", "high"]}))
            }
        }
    });
    let node =
        TestNode::start_with(NodeOptions { tables: stub.provider_config("stub", ""), ..Default::default() }).await;
    deploy(&node, "name = \"boss\"\nprovider = \"stub\"\ntools = [\"start_auction\", \"start_negotiation\"]\nsystem_prompt = \"Run it.\"\n").await;
    // Echo agents whose every answer is their template: a bid, and moves.
    deploy(&node, "name = \"low\"\nprovider = \"echo\"\nsystem_prompt = \"x\"\nuser_prompt_template = \"bid: 10\\noffer: 10 EUR\"\n").await;
    deploy(
        &node,
        "name = \"high\"\nprovider = \"echo\"\nsystem_prompt = \"x\"\nuser_prompt_template = \"bid: 30\\naccept\"\n",
    )
    .await;
    let answer = ask(&node, "boss", "run an auction").await;
    assert_eq!(answer["reply"]["content"], "outcome: sold high", "{answer}");
    let (_, list) = node.get("/v1/auctions").await;
    assert_eq!(list[0]["initiator"], "boss", "{list}");
    let answer = ask(&node, "boss", "negotiate").await;
    assert_eq!(answer["reply"]["content"], "outcome: agreed 10 EUR", "{answer}");
}
