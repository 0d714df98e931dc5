//! The embedded local model (SmolLM2-135M-Instruct, GGUF) with real weights.

use std::time::Duration;

use caxton::llm::{ChatMessage, ChatRequest, LocalModel, LocalSettings};
use caxton_testing::models_dir;

fn model() -> LocalModel {
    model_with_context(2048)
}

fn model_with_context(context_tokens: usize) -> LocalModel {
    LocalModel::new(
        "local",
        LocalSettings {
            model_path: models_dir().join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
            temperature: 0.0,
            max_tokens: 64,
            concurrency: 1,
            context_tokens,
            seed: 1,
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_and_stops_at_end_of_turn() {
    let m = model();
    let req = ChatRequest {
        messages: vec![
            ChatMessage::system("You are a helpful assistant. Answer briefly."),
            ChatMessage::user("What is the capital of France?"),
        ],
        ..Default::default()
    };
    let g = m.generate(&req, None).await.unwrap();
    println!(
        "answer: {:?} ({} tokens, ttft {:?}, total {:?})",
        g.text, g.completion_tokens, g.time_to_first_token, g.total
    );
    assert!(!g.text.is_empty());
    assert!(g.stopped_at_end_of_turn, "generation ran to the token limit: {:?}", g.text);
    assert!(g.text.contains("Paris"), "{:?}", g.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_tokens_incrementally() {
    let m = model();
    // Loaded first: the comparison below is of the generation alone.
    m.warm_up().await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let req =
        ChatRequest { messages: vec![ChatMessage::user("Count from one to five in words.")], ..Default::default() };
    let gen = tokio::spawn(async move { m.generate(&req, Some(tx)).await });
    let mut pieces = Vec::new();
    let mut first_at = None;
    let started = std::time::Instant::now();
    while let Ok(Some(p)) = tokio::time::timeout(Duration::from_secs(120), rx.recv()).await {
        first_at.get_or_insert(started.elapsed());
        pieces.push(p);
    }
    let g = gen.await.unwrap().unwrap();
    assert!(pieces.len() > 3, "expected several streamed pieces, got {pieces:?}");
    assert_eq!(pieces.concat().trim(), g.text);
    // The first piece arrived well before the whole answer was done.
    assert!(first_at.unwrap() < g.total, "first token at {first_at:?}, total {:?}", g.total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_model_file_is_a_clear_error() {
    let m = LocalModel::new(
        "local",
        LocalSettings {
            model_path: "/nonexistent/model.gguf".into(),
            temperature: 0.0,
            max_tokens: 8,
            concurrency: 1,
            context_tokens: 512,
            seed: 1,
        },
    );
    let err = m
        .generate(&ChatRequest { messages: vec![ChatMessage::user("hi")], ..Default::default() }, None)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("/nonexistent/model.gguf") && msg.contains("make models"), "{msg}");
}

/// Peak resident memory of process `pid` so far, in MiB (`VmHWM`).
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kb / 1024
}

/// A prompt longer than the model's context is cut (oldest turns first)
/// or refused before the model sees it: the attention mask grows with the
/// square of the prompt, so nothing else bounds what a message costs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_beyond_the_context_is_cut_or_refused_before_the_model_runs() {
    let m = model_with_context(256);
    // Old turns beyond the budget are dropped; the question still gets an answer.
    let mut messages = vec![ChatMessage::system("Answer briefly.")];
    for i in 0..40 {
        messages.push(ChatMessage::user(format!("Earlier remark {i}: {}", "lorem ipsum dolor ".repeat(20))));
        messages.push(ChatMessage::assistant("Noted.", vec![]));
    }
    messages.push(ChatMessage::user("What is 2 + 2?"));
    let req = ChatRequest { messages, max_tokens: Some(8), ..Default::default() };
    let g = m.generate(&req, None).await.unwrap();
    assert!(
        (100..=256).contains(&g.prompt_tokens),
        "{} prompt tokens: older turns kept up to the budget",
        g.prompt_tokens
    );
    // The newest message alone over the budget: refused, naming the limit,
    // whether it is tokenized (100 KB) or too long to bother (2 MiB).
    for size in [100_000, 2 << 20] {
        let req = ChatRequest { messages: vec![ChatMessage::user("word ".repeat(size / 5))], ..Default::default() };
        let started = std::time::Instant::now();
        let e = m.generate(&req, None).await.unwrap_err().to_string();
        assert!(e.contains("256") && e.contains("context_tokens"), "{size} bytes: {e}");
        assert!(started.elapsed() < Duration::from_secs(30), "{size} bytes took {:?}", started.elapsed());
    }
}

/// The whole path. A 2 MiB message to an agent on the local model is
/// refused before it is committed: over the body limit (413), over the
/// message limit (413), or, with both raised, over what the model can ever
/// take (422 prompt-too-long, naming `context_tokens`), and the node's peak
/// memory stays within a fixed bound. A long chat history under the limits
/// is cut to the model's context and answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_mib_message_to_a_local_model_agent_costs_a_bounded_amount_of_memory() {
    use caxton_testing::{NodeOptions, TestNode};
    use serde_json::json;
    let small = "[llm.providers.small]\nkind = \"local\"\nmodel_path = \"smollm2/SmolLM2-135M-Instruct.Q4_1.gguf\"\ncontext_tokens = 512\nmax_tokens = 16\ntemperature = 0.0\n";
    let agent = "name = \"local-bot\"\nprovider = \"small\"\nsystem_prompt = \"Answer briefly.\"\n";
    let huge = "word ".repeat((2 << 20) / 5);
    let node = TestNode::start_with(NodeOptions { tables: small.into(), ..Default::default() }).await;
    assert_eq!(node.post_toml("/v1/agents", agent).await.0, 201);
    let send =
        |content: &str| node.post_json("/v1/messages", json!({"to": "local-bot", "content": content, "mode": "async"}));
    for (content, status, kind, names) in [
        (huge.as_str(), 413, "payload-too-large", "server.max_body_bytes"),
        (&huge[..1 << 20], 413, "message-too-large", "server.max_message_bytes"),
        (&huge[..100_000], 422, "prompt-too-long", "context_tokens"),
    ] {
        let (s, body) = send(content).await;
        assert_eq!(s, status, "{body}");
        assert_eq!(body["type"], format!("https://caxton.dev/problems/{kind}"), "{body}");
        assert!(body["detail"].as_str().unwrap().contains(names), "{body}");
    }

    // Both limits raised: the model's own limit still refuses it, at once.
    let node = TestNode::start_with(NodeOptions {
        tables: small.into(),
        extra_config: "max_body_bytes = 4194304\nmax_message_bytes = 3145728".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(node.post_toml("/v1/agents", agent).await.0, 201);
    let (s, body) =
        node.post_json("/v1/messages", json!({"to": "local-bot", "content": huge, "timeout_ms": 60000})).await;
    assert_eq!((s, body["type"].as_str()), (422, Some("https://caxton.dev/problems/prompt-too-long")), "{body}");
    // A long conversation (160 KB of history) is cut to the context and answered.
    let mut messages = vec![json!({"role": "system", "content": "Answer briefly."})];
    for i in 0..100 {
        messages.push(
            json!({"role": "user", "content": format!("Remark {i}: {}", "lorem ipsum dolor sit amet ".repeat(60))}),
        );
        messages.push(json!({"role": "assistant", "content": "Noted."}));
    }
    messages.push(json!({"role": "user", "content": "Say hi."}));
    let r = node
        .http
        .post(node.url("/v1/chat/completions"))
        .json(&json!({"model": "local-bot", "messages": messages}))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let completion: serde_json::Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{completion}");
    assert!(completion["choices"][0]["message"]["content"].is_string(), "{completion}");
    let peak = peak_rss_mib(node.pid());
    eprintln!("peak RSS of the node: {peak} MiB");
    assert!(peak < 1536, "peak RSS {peak} MiB after a 2 MiB message and a 160 KB conversation");
}
