//! The embedded local model (SmolLM2-135M-Instruct, GGUF) with real weights.

use std::time::Duration;

use caxton::llm::{ChatMessage, ChatRequest, LocalModel, LocalSettings};
use caxton::testing::models_dir;

fn model() -> LocalModel {
    LocalModel::new(
        "local",
        LocalSettings {
            model_path: models_dir().join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
            temperature: 0.0,
            max_tokens: 64,
            concurrency: 1,
            context_tokens: 2048,
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
