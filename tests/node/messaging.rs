//! Messages end to end: async and sync sends, idempotency, capability
//! routing, contract-net, SSE streams, the OpenAI-compatible front door,
//! and exactly-once answers across a kill -9.

use std::collections::HashMap;
use std::time::Duration;

use caxton_testing::*;
use futures::StreamExt;
use serde_json::{json, Value};

/// Reads an SSE body into (event, data) pairs until it ends or `stop` says so.
async fn sse(resp: reqwest::Response, stop: impl Fn(&str, &str) -> bool) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut decoder = caxton::sse::SseDecoder::default();
    let mut body = resp.bytes_stream();
    while let Ok(Some(chunk)) = tokio::time::timeout(Duration::from_secs(60), body.next()).await {
        for ev in decoder.feed(&chunk.unwrap()) {
            let done = stop(&ev.event, &ev.data);
            out.push((ev.event, ev.data));
            if done {
                return out;
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_send_then_poll_and_idempotent_retries() {
    let node = TestNode::start().await;
    deploy(&node, &echo_agent_toml("echo", &["echoing"])).await;
    let (s, v) = node
        .post_json(
            "/v1/messages",
            json!({"to": "echo", "content": "later please", "mode": "async", "id": "client-id-1"}),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["message"]["id"], "client-id-1");
    assert_eq!(v["message"]["kind"], "request");
    assert!(v["message"]["trace_id"].as_str().unwrap().len() > 8);
    eventually("reply recorded", Duration::from_secs(10), || async {
        node.get("/v1/messages/client-id-1").await.1["reply"]["content"] == "later please"
    })
    .await;
    // Retrying with the same id does not create a second message or answer.
    let (s, again) =
        node.post_json("/v1/messages", json!({"to": "echo", "content": "later please", "id": "client-id-1"})).await;
    assert_eq!(s, 200);
    assert_eq!(again["reply"]["id"], "client-id-1-reply");
    let conv = v["message"]["conversation_id"].as_str().unwrap();
    let (_, c) = node.get(&format!("/v1/conversations/{conv}")).await;
    assert_eq!(c["messages"].as_array().unwrap().len(), 2);
    assert_eq!(c["state"], "completed");

    let (s, p) = node.post_json("/v1/messages", json!({"to": "ghost", "content": "hi"})).await;
    assert_eq!((s, p["type"].as_str()), (404, Some("https://caxton.dev/problems/agent-not-found")));
    let (s, p) = node.post_json("/v1/messages", json!({"capability": "astrology", "content": "hi"})).await;
    assert_eq!((s, p["type"].as_str()), (404, Some("https://caxton.dev/problems/no-agent-for-capability")));
    assert_eq!(p["extra"]["capabilities"], json!(["echoing"]));
    assert!(p["detail"].as_str().unwrap().contains("capabilities that exist: echoing"));
    let (s, _) = node.post_json("/v1/messages", json!({"to": "echo", "capability": "echoing", "content": "hi"})).await;
    assert_eq!(s, 400);
    let (s, _) = node.get("/v1/messages/nope").await;
    assert_eq!(s, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capability_routing_spreads_load() {
    let node = TestNode::start().await;
    for n in ["w1", "w2", "w3"] {
        deploy(&node, &echo_agent_toml(n, &["work"])).await;
    }
    deploy(&node, &echo_agent_toml("bystander", &["other"])).await;
    let mut counts: HashMap<String, u32> = HashMap::new();
    for i in 0..30 {
        let (s, v) = node.post_json("/v1/messages", json!({"capability": "work", "content": format!("job {i}")})).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["message"]["capability"], "work");
        *counts.entry(v["reply"]["sender"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(counts.values().all(|c| *c >= 8), "uneven spread: {counts:?}");
    assert!(!counts.contains_key("bystander"));

    // CLI, by capability.
    let out = node.cli(&["message", "send", "--capability", "work", "via the cli"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "via the cli");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_net_across_three_agents_awards_the_cheapest() {
    let stub = OpenAiStub::start().await;
    stub.respond_with(|req| {
        let me = req["messages"][0]["content"]
            .as_str()
            .unwrap_or("")
            .trim_start_matches("You are ")
            .trim_end_matches('.')
            .to_owned();
        let cost = match me.as_str() {
            "bidder-a" => 7,
            "bidder-b" => 3,
            _ => 5,
        };
        let task = last_of_role(req, "user").unwrap()["content"].as_str().unwrap().to_owned();
        if task.starts_with("CALL FOR PROPOSALS") {
            StubReply::text(&format!("{me} can do it. cost: {cost}"))
        } else {
            StubReply::text(&format!("{me} delivered the report"))
        }
    });
    let node =
        TestNode::start_with(NodeOptions { tables: stub.provider_config("stub", ""), ..Default::default() }).await;
    for b in ["bidder-a", "bidder-b", "bidder-c"] {
        deploy(
            &node,
            &format!(
                "name = \"{b}\"\nprovider = \"stub\"\ncapabilities = [\"reports\"]\nsystem_prompt = \"You are {b}.\"\n"
            ),
        )
        .await;
    }
    let (s, out) = node
        .post_json(
            "/v1/contract-net",
            json!({"capability": "reports", "task": "write the Q3 report", "deadline_ms": 20000}),
        )
        .await;
    assert_eq!(s, 200, "{out}");
    assert_eq!(out["state"], "completed");
    assert_eq!(out["proposals"].as_array().unwrap().len(), 3);
    assert_eq!(out["awarded_to"], "bidder-b");
    assert_eq!(out["result"]["content"], "bidder-b delivered the report");
    let conv = out["conversation_id"].as_str().unwrap();
    let (_, c) = node.get(&format!("/v1/conversations/{conv}")).await;
    assert_eq!(c["protocol"], "contract_net");
    assert_eq!(c["state"], "completed");
    let kinds: Vec<&str> = c["messages"].as_array().unwrap().iter().map(|m| m["kind"].as_str().unwrap()).collect();
    // 3 calls for proposals + 3 proposals + 2 rejections + award + result.
    assert_eq!(kinds.len(), 10, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "notification").count(), 2);

    // No agent with the capability: a clear error; nobody answers in time: Expired.
    let (s, p) = node.post_json("/v1/contract-net", json!({"capability": "poetry", "task": "a sonnet"})).await;
    assert_eq!((s, p["type"].as_str()), (404, Some("https://caxton.dev/problems/no-agent-for-capability")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_net_with_no_proposal_in_time_expires() {
    let stub = OpenAiStub::start().await;
    stub.respond_with(|_| StubReply::text("too slow").after(Duration::from_secs(5)));
    let node =
        TestNode::start_with(NodeOptions { tables: stub.provider_config("stub", ""), ..Default::default() }).await;
    deploy(
        &node,
        "name = \"sloth\"\nprovider = \"stub\"\ncapabilities = [\"naps\"]\nsystem_prompt = \"You are slow.\"\n",
    )
    .await;
    let (s, out) =
        node.post_json("/v1/contract-net", json!({"capability": "naps", "task": "nap", "deadline_ms": 500})).await;
    assert_eq!(s, 200, "{out}");
    assert_eq!(out["state"], "expired");
    assert!(out["awarded_to"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_streams_conversation_messages_and_answer_tokens() {
    let node = TestNode::start().await;
    deploy(&node, &echo_agent_toml("echo", &[])).await;
    let (_, v) =
        node.post_json("/v1/messages", json!({"to": "echo", "content": "one two three four", "mode": "async"})).await;
    let id = v["message"]["id"].as_str().unwrap().to_owned();
    let conv = v["message"]["conversation_id"].as_str().unwrap().to_owned();

    let resp = node.http.get(node.url(&format!("/v1/messages/{id}/stream"))).send().await.unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let events = sse(resp, |e, _| e == "reply" || e == "error").await;
    let (last_event, last_data) = events.last().unwrap();
    assert_eq!(last_event, "reply");
    let reply: Value = serde_json::from_str(last_data).unwrap();
    assert_eq!(reply["content"], "one two three four");

    // The conversation stream replays what exists, then follows new messages.
    let resp = node.http.get(node.url(&format!("/v1/conversations/{conv}/stream"))).send().await.unwrap();
    let node2 = node.url("/v1/messages");
    let http = node.http.clone();
    let conv2 = conv.clone();
    // The follow-up is sent once the stream has replayed the two existing
    // messages, so it can only arrive by being followed.
    let replayed = std::sync::Arc::new(tokio::sync::Notify::new());
    let seen = std::sync::atomic::AtomicUsize::new(0);
    let wait_replay = replayed.clone();
    tokio::spawn(async move {
        wait_replay.notified().await;
        let body = json!({"to": "echo", "content": "follow-up", "conversation_id": conv2});
        http.post(node2).json(&body).send().await.unwrap();
    });
    let events = sse(resp, |e, d| {
        if e == "message" && seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == 2 {
            replayed.notify_one();
        }
        d.contains("follow-up") && d.contains("\"response\"")
    })
    .await;
    let contents: Vec<String> = events
        .iter()
        .filter(|(e, _)| e == "message")
        .map(|(_, d)| serde_json::from_str::<Value>(d).unwrap()["content"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(contents, ["one two three four", "one two three four", "follow-up", "follow-up"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_compatible_front_door_plain_and_streamed() {
    let node = TestNode::start().await;
    deploy(&node, &echo_agent_toml("echo", &[])).await;

    let (s, models) = node.get("/v1/models").await;
    assert_eq!(s, 200);
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "echo");
    assert_eq!(models["data"][0]["object"], "model");

    // What the official SDKs send.
    let request = json!({
        "model": "echo",
        "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "earlier question"},
            {"role": "assistant", "content": "earlier answer"},
            {"role": "user", "content": [{"type": "text", "text": "hello caxton"}]}
        ],
        "temperature": 0.2
    });
    let (s, c) = node.post_json("/v1/chat/completions", request.clone()).await;
    assert_eq!(s, 200, "{c}");
    assert_eq!(c["object"], "chat.completion");
    assert!(c["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(c["model"], "echo");
    assert_eq!(c["choices"][0]["message"]["role"], "assistant");
    assert_eq!(c["choices"][0]["message"]["content"], "hello caxton");
    assert_eq!(c["choices"][0]["finish_reason"], "stop");

    let mut streamed = request;
    streamed["stream"] = json!(true);
    let resp = node.http.post(node.url("/v1/chat/completions")).json(&streamed).send().await.unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let events = sse(resp, |_, d| d == "[DONE]").await;
    assert_eq!(events.last().unwrap().1, "[DONE]");
    let chunks: Vec<Value> =
        events.iter().filter(|(_, d)| d != "[DONE]").map(|(_, d)| serde_json::from_str(d).unwrap()).collect();
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, "hello caxton");
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "stop");

    // Errors in OpenAI's shape, which SDKs surface.
    let (s, e) = node
        .post_json("/v1/chat/completions", json!({"model": "nobody", "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!(s, 404);
    assert!(e["error"]["message"].as_str().unwrap().contains("nobody"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_an_llm_call_then_restart_answers_exactly_once() {
    let stub = OpenAiStub::start().await;
    // The first call hangs (the node dies during it); later calls answer.
    stub.script([StubReply::text("never delivered").after(Duration::from_secs(3600))]);
    stub.respond_with(|_| StubReply::text("answered after restart"));
    let mut node = TestNode::start_with(NodeOptions {
        tables: stub.provider_config("stub", "timeout_ms = 3600000"),
        ..Default::default()
    })
    .await;
    deploy(&node, "name = \"durable\"\nprovider = \"stub\"\nsystem_prompt = \"You are durable.\"\n").await;
    let (s, v) =
        node.post_json("/v1/messages", json!({"to": "durable", "content": "survive this", "mode": "async"})).await;
    assert_eq!(s, 202);
    let id = v["message"]["id"].as_str().unwrap().to_owned();
    eventually("the LLM call is in flight", Duration::from_secs(10), || async { !stub.requests().is_empty() }).await;

    node.kill();
    node.restart().await;
    eventually("answered after restart", Duration::from_secs(20), || async {
        node.get(&format!("/v1/messages/{id}")).await.1["reply"]["content"] == "answered after restart"
    })
    .await;
    // Deliberate pause, not a wait for a condition: a duplicate answer
    // would be an event that never comes if all is well, so give it time
    // to show itself, then count.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let conv = v["message"]["conversation_id"].as_str().unwrap();
    let (_, c) = node.get(&format!("/v1/conversations/{conv}")).await;
    let replies = c["messages"].as_array().unwrap().iter().filter(|m| m["reply_to"] == id.as_str()).count();
    assert_eq!(replies, 1, "{c}");
    let (_, m) = node.get(&format!("/v1/messages/{id}")).await;
    assert_eq!(m["message"]["status"], "answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_chat_streams_answers_for_each_line() {
    use std::io::Write;
    let node = TestNode::start().await;
    deploy(&node, &echo_agent_toml("echo", &[])).await;
    let mut child = std::process::Command::new(caxton_bin())
        .args(["--server", &node.url(""), "chat", "echo"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"first line\nsecond line\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("first line") && text.contains("second line"), "{text}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("chatting with echo"));
}
