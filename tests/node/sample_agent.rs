//! `make run`'s setup: the sample agents on embedded defaults, answering
//! with the real local model (no key, no network).

use std::time::Duration;

use caxton_testing::*;
use futures::StreamExt;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_agent_answers_with_the_local_model_and_streams_tokens() {
    let examples = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/agents"));
    let tools = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/mcp");
    let node = TestNode::start_with(NodeOptions {
        agents_dir: Some(examples),
        extra_config: format!("tools_dir = \"{tools}\""),
        ..Default::default()
    })
    .await;
    let names = node.agent_names().await;
    assert!(names.contains(&"assistant".to_owned()) && names.contains(&"DataAnalyzer".to_owned()), "{names:?}");

    let v = ask(&node, "assistant", "What is the capital of France? One word.").await;
    assert_eq!(v["reply"]["kind"], "response", "{v}");
    let answer = v["reply"]["content"].as_str().unwrap();
    assert!(!answer.trim().is_empty());
    assert!(!answer.contains("<|im_end|>") && !answer.contains("<|im_start|>"), "stopped at end of turn: {answer:?}");

    // Streaming: tokens arrive as separate events before the reply.
    let body = json!({"to": "assistant", "content": "Name three colours.", "mode": "async"});
    let (_, sent) = node.send(reqwest::Method::POST, "/v1/messages", "application/json", body.to_string()).await;
    let id = sent["message"]["id"].as_str().unwrap();
    let resp = node.http.get(node.url(&format!("/v1/messages/{id}/stream"))).send().await.unwrap();
    let mut stream = resp.bytes_stream();
    let mut text = String::new();
    while let Ok(Some(chunk)) = tokio::time::timeout(Duration::from_secs(120), stream.next()).await {
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        if text.contains("event: reply") {
            break;
        }
    }
    let tokens = text.matches("event: token").count();
    assert!(tokens >= 3, "expected incremental tokens, got {tokens}:\n{text}");
    let token_pos = text.find("event: token").unwrap();
    assert!(token_pos < text.find("event: reply").unwrap());
}
