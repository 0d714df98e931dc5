//! One token source per answer, on every node: OpenAI-style streams and
//! Caxton's own SSE stream read the same tokens wherever they are asked,
//! and a listener who arrives late still gets the first token.

use std::time::Duration;

use caxton_testing::{eventually, TestNode};
use caxton_testing::{ClusterOptions, TestCluster};
use caxton_testing::{OpenAiStub, StubReply};
use futures::StreamExt;
use serde_json::{json, Value};

pub const CHUNKS: [&str; 5] = ["Once", " upon", " a", " time", "."];

/// Every `data:` payload of an SSE body, until the stream ends or `stop`
/// says it has what it needs.
async fn sse_events(
    resp: reqwest::Response,
    stop: impl Fn(&caxton::sse::SseEvent) -> bool,
) -> Vec<caxton::sse::SseEvent> {
    assert_eq!(resp.status(), 200);
    let mut decoder = caxton::sse::SseDecoder::default();
    let mut events = Vec::new();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(60), body.next()).await.expect("stream stalled") {
        for e in decoder.feed(&chunk.unwrap()) {
            let done = stop(&e);
            events.push(e);
            if done {
                return events;
            }
        }
    }
    events
}

/// The content deltas of an OpenAI chat completion stream, in order.
pub async fn completion_chunks(node: &TestNode, prompt: &str) -> Vec<String> {
    completion_chunks_as(&node.http, node, prompt).await
}

/// The same, asked with `http`'s credentials.
pub async fn completion_chunks_as(http: &reqwest::Client, node: &TestNode, prompt: &str) -> Vec<String> {
    let body = json!({"model": "storyteller", "stream": true, "messages": [{"role": "user", "content": prompt}]});
    let resp = http.post(node.url("/v1/chat/completions")).json(&body).send().await.unwrap();
    let events = sse_events(resp, |e| e.data == "[DONE]").await;
    assert_eq!(events.last().map(|e| e.data.as_str()), Some("[DONE]"), "{events:?}");
    let chunks: Vec<Value> =
        events.iter().filter(|e| e.data != "[DONE]").map(|e| serde_json::from_str(&e.data).unwrap()).collect();
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "stop", "{chunks:?}");
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

async fn storyteller_cluster(stub: &OpenAiStub) -> TestCluster {
    storyteller_cluster_with(stub, None).await
}

pub async fn storyteller_cluster_with(stub: &OpenAiStub, admin_key: Option<&str>) -> TestCluster {
    let opts = ClusterOptions {
        voters: 3,
        tables: stub.provider_config("stub", ""),
        admin_key: admin_key.map(str::to_owned),
        ..Default::default()
    };
    let cluster = TestCluster::start_with(3, opts).await;
    let leader = cluster.wait_leader().await;
    let toml = "name = \"storyteller\"\nprovider = \"stub\"\nsystem_prompt = \"You tell stories.\"\n";
    assert_eq!(cluster.node(leader).post_toml("/v1/agents", toml).await.0, 201);
    for id in 1..=3 {
        eventually("every node knows the agent", Duration::from_secs(10), || async {
            cluster.node(id).get("/v1/agents/storyteller").await.0 == 200
        })
        .await;
    }
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_streams_the_same_chunks_of_an_openai_completion() {
    let stub = OpenAiStub::start().await;
    stub.respond_with(|_| StubReply::streamed(&CHUNKS, Duration::from_millis(150)));
    let cluster = storyteller_cluster(&stub).await;
    let owner = cluster.node(1).get("/v1/agents/storyteller").await.1["owner_node"].as_u64().unwrap();
    for id in 1..=3 {
        let chunks = completion_chunks(cluster.node(id), &format!("a story for node {id}")).await;
        assert_eq!(chunks, CHUNKS, "node {id} (the agent runs on node {owner}) streams every token as its own chunk");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_who_arrives_mid_answer_still_gets_the_first_token_on_every_node() {
    let stub = OpenAiStub::start().await;
    stub.respond_with(|_| StubReply::streamed(&CHUNKS, Duration::from_millis(400)));
    let cluster = storyteller_cluster(&stub).await;
    let body = json!({"to": "storyteller", "content": "go on", "mode": "async"});
    let (s, v) =
        cluster.node(1).send(reqwest::Method::POST, "/v1/messages", "application/json", body.to_string()).await;
    assert_eq!(s, 202, "{v}");
    let id = v["message"]["id"].as_str().unwrap().to_owned();
    eventually("generation is under way", Duration::from_secs(30), || async { stub.chunks_sent() >= 2 }).await;

    let listens = (1..=3).map(|n| {
        let node = cluster.node(n);
        let id = id.clone();
        async move {
            let resp = node.http.get(node.url(&format!("/v1/messages/{id}/stream"))).send().await.unwrap();
            (n, sse_events(resp, |e| e.event == "reply" || e.event == "error").await)
        }
    });
    for (n, events) in futures::future::join_all(listens).await {
        let tokens: Vec<&str> = events.iter().filter(|e| e.event == "token").map(|e| e.data.as_str()).collect();
        assert_eq!(tokens, CHUNKS, "node {n}: every token from the first, then the reply: {events:?}");
        let reply: Value = serde_json::from_str(&events.last().unwrap().data).unwrap();
        assert_eq!(events.last().unwrap().event, "reply");
        assert_eq!(reply["content"], CHUNKS.concat());
    }
}

#[tokio::test]
async fn a_stream_of_a_message_that_does_not_exist_is_not_found() {
    let node = TestNode::start().await;
    let (status, problem) = node.get("/v1/messages/no-such-message/stream").await;
    assert_eq!(status, 404, "{problem}");
    assert_eq!(problem["type"].as_str().unwrap().rsplit('/').next(), Some("message-not-found"));
}
