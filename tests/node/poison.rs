//! A message whose processing never finishes (it kills its node, or hangs
//! until the node is restarted) is not run forever: after
//! `server.max_message_attempts` deliveries it is dead-lettered, answered
//! with an error, counted, and the node serves on.

use std::time::Duration;

use caxton_testing::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_never_finishes_is_dead_lettered_after_its_attempts() {
    // The provider never answers: each delivery hangs until the node dies.
    let stub = OpenAiStub::start().await;
    stub.respond_with(|_| StubReply::text("too late").after(Duration::from_secs(3600)));
    let mut node = TestNode::start_with(NodeOptions {
        tables: stub.provider_config("stub", "timeout_ms = 3600000"),
        ..Default::default()
    })
    .await;
    let agent = "name = \"stuck\"\nprovider = \"stub\"\nsystem_prompt = \"x\"\ntimeout = \"1h\"\n";
    assert_eq!(node.post_toml("/v1/agents", agent).await.0, 201);
    assert_eq!(node.post_toml("/v1/agents", &echo_agent_toml("echo", &[])).await.0, 201);
    let (s, v) = node.post_json("/v1/messages", json!({"to": "stuck", "content": "poison", "mode": "async"})).await;
    assert_eq!(s, 202, "{v}");
    let id = v["message"]["id"].as_str().unwrap().to_owned();

    // Three deliveries (the default), each ended by a crash of the node.
    for attempt in 1..=3 {
        eventually(&format!("delivery {attempt} reaches the provider"), Duration::from_secs(30), || async {
            stub.requests().len() >= attempt
        })
        .await;
        node.kill();
        node.restart().await;
    }
    // The fourth start does not run it again: it is answered as dead-lettered.
    let exchange = eventually_some("the message is dead-lettered", Duration::from_secs(30), || async {
        let (_, e) = node.get(&format!("/v1/messages/{id}")).await;
        (e["message"]["status"] == "dead_lettered").then_some(e)
    })
    .await;
    assert_eq!(exchange["message"]["attempts"], 3, "{exchange}");
    assert_eq!(exchange["reply"]["kind"], "error", "{exchange}");
    let why = exchange["reply"]["content"].as_str().unwrap();
    assert!(why.contains("dead-lettered") && why.contains("server.max_message_attempts = 3"), "{why}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(stub.requests().len(), 3, "never delivered again");
    let metrics =
        reqwest::get(format!("http://127.0.0.1:{}/metrics", node.metrics_port)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("caxton_messages_total{outcome=\"dead_lettered\"} 1"), "{metrics}");
    assert!(node.log().contains("message dead-lettered"));

    // The node serves on.
    let (s, answer) = node.post_json("/v1/messages", json!({"to": "echo", "content": "still here?"})).await;
    assert_eq!((s, &answer["reply"]["kind"]), (200, &json!("response")), "{answer}");
}

/// A backlog is not a crash: requests that found their agent's mailbox
/// full are delivered by the sweep for the first time, not counted as
/// retried, and none is dead-lettered however long it waited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_beyond_the_mailbox_is_not_counted_as_retries() {
    let stub = OpenAiStub::start().await;
    stub.respond_with(|_| StubReply::text("done").after(Duration::from_millis(100)));
    let node = TestNode::start_with(NodeOptions {
        tables: stub.provider_config("stub", ""),
        extra_config: "max_message_attempts = 1".into(),
        ..Default::default()
    })
    .await;
    let agent = "name = \"busy\"\nprovider = \"stub\"\nsystem_prompt = \"x\"\n";
    assert_eq!(node.post_toml("/v1/agents", agent).await.0, 201);
    // More than a mailbox (1024) at once.
    use futures::StreamExt;
    let ids: Vec<String> = futures::stream::iter(0..1300)
        .map(|i| {
            let node = &node;
            async move {
                let body = json!({"to": "busy", "content": format!("job {i}"), "mode": "async"});
                let (s, v) = node.post_json("/v1/messages", body).await;
                assert_eq!(s, 202, "{v}");
                v["message"]["id"].as_str().unwrap().to_owned()
            }
        })
        .buffered(64)
        .collect()
        .await;
    eventually("the backlog is worked off", Duration::from_secs(120), || async { stub.requests().len() >= 1300 }).await;
    // The last sent waited longest behind the full mailbox.
    for id in ids.iter().rev().take(200) {
        let e = eventually_some("answered", Duration::from_secs(30), || async {
            let (_, e) = node.get(&format!("/v1/messages/{id}")).await;
            (e["message"]["status"] != "accepted").then_some(e)
        })
        .await;
        assert_eq!(e["message"]["status"], "answered", "{e}");
        assert!(e["message"].get("attempts").is_none(), "a first delivery counted as a retry: {e}");
    }
}
