//! The official `openai` and `mcp` Python SDKs authenticate with a Caxton
//! key the way their users already configure them: `api_key=` for OpenAI,
//! an `Authorization: Bearer` header for MCP's streamable HTTP transport.
//! `make test` installs them (tests/clients/requirements.txt) into a venv
//! whose interpreter `CAXTON_TEST_PYTHON` names.

use caxton_testing::*;
use serde_json::{json, Value};

fn python() -> String {
    std::env::var("CAXTON_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_and_mcp_sdks_authenticate_with_a_key() {
    let node = TestNode::start_with(NodeOptions { admin_key: Some(TEST_ADMIN_KEY.into()), ..Default::default() }).await;
    assert_eq!(node.post_toml("/v1/agents", &echo_agent_toml("echo", &["echo"])).await.0, 201);
    let tool = repo_path("examples/mcp/json_query").display().to_string();
    let out = node.cli(&["mcp", "deploy", &tool]);
    assert!(out.status.success(), "{}", stderr(&out));
    let key = node.create_key(json!({"name": "sdk", "scopes": ["invoke"]})).await;

    let script = repo_path("tests/clients/sdk_clients.py");
    let out = tokio::process::Command::new(python())
        .arg(&script)
        .arg(node.url(""))
        .arg(&key)
        .output()
        .await
        .expect("run python (make test installs the SDKs and sets CAXTON_TEST_PYTHON)");
    assert!(
        out.status.success(),
        "{} failed (run `make test`, which installs tests/clients/requirements.txt):\n{}",
        script.display(),
        stderr(&out)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)));
    assert_eq!(seen["openai"]["completion"], "hello sdk", "{seen}");
    assert_eq!(seen["openai"]["streamed"], "streamed hello", "{seen}");
    assert_eq!(seen["openai"]["models"], json!(["echo"]), "{seen}");
    assert_eq!(seen["openai"]["wrong_key"], 401, "{seen}");
    assert_eq!(seen["mcp"]["tools"], json!(["json_query"]), "{seen}");
    assert_eq!(seen["mcp"]["call"]["matches"], json!([42]), "{seen}");
    assert_eq!(seen["mcp"]["no_key"], json!([401]), "{seen}");
}

/// Against a dev node (no admin key, loopback), the `openai` SDK works the
/// way it does against Ollama or vLLM: `api_key="anything"` is ignored; a
/// token shaped like a Caxton key is still checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_sdk_with_a_placeholder_key_works_against_a_dev_node() {
    let node = TestNode::start().await;
    assert_eq!(node.post_toml("/v1/agents", &echo_agent_toml("echo", &["echo"])).await.0, 201);
    let script = repo_path("tests/clients/openai_dev.py");
    let out = tokio::process::Command::new(python())
        .arg(&script)
        .arg(node.url(""))
        .output()
        .await
        .expect("run python (make test installs the SDKs and sets CAXTON_TEST_PYTHON)");
    assert!(out.status.success(), "{} failed:\n{}", script.display(), stderr(&out));
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)));
    assert_eq!(seen["completion"], "hello dev", "{seen}");
    assert_eq!(seen["models"], json!(["echo"]), "{seen}");
    assert_eq!(seen["wrong_caxton_key"], 401, "{seen}");
}

fn decode_vector(b64: &str) -> Vec<f32> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn close(a: &Value, b: &[f32]) -> bool {
    let a: Vec<f32> = a.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-4)
}

/// The `openai` SDK's parameters are honoured, streaming and not:
/// `max_tokens` / `max_completion_tokens` cut the answer (`finish_reason:
/// "length"`), `stop` ends it early, `seed` repeats a sampled answer,
/// `top_p` narrows sampling, `usage` is reported (in a last chunk with
/// `include_usage`); `n > 1` and features an agent cannot give are refused
/// with OpenAI's 400 naming the parameter. `/v1/embeddings` gives the
/// vectors `caxton memory` stores; `/v1/models` names each agent's revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_sdk_parameters_are_honoured() {
    let small = "[llm.providers.small]\nkind = \"local\"\nmodel_path = \"smollm2/SmolLM2-135M-Instruct.Q4_1.gguf\"\ncontext_tokens = 512\nmax_tokens = 64\n";
    let node = TestNode::start_with(NodeOptions {
        admin_key: Some(TEST_ADMIN_KEY.into()),
        tables: small.into(),
        ..Default::default()
    })
    .await;
    assert_eq!(node.post_toml("/v1/agents", &echo_agent_toml("echo", &["echo"])).await.0, 201);
    let changed = echo_agent_toml("echo", &["echo", "again"]);
    assert_eq!(node.send(reqwest::Method::PUT, "/v1/agents/echo", "application/toml", changed).await.0, 200);
    let small_agent = "name = \"small\"\nprovider = \"small\"\nsystem_prompt = \"You are a storyteller.\"\n";
    assert_eq!(node.post_toml("/v1/agents", small_agent).await.0, 201);
    let out = node.cli(&["memory", "add", "cat", "the cat sat on the mat"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let key = node.create_key(json!({"name": "sdk", "scopes": ["invoke"]})).await;

    let script = repo_path("tests/clients/openai_params.py");
    let out = tokio::process::Command::new(python()).arg(&script).arg(node.url("")).arg(&key).output().await.unwrap();
    assert!(out.status.success(), "{} failed:\n{}", script.display(), stderr(&out));
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)));

    let echo = &seen["echo"];
    assert_eq!(echo["max_tokens"]["content"], "one two three ", "{echo}");
    assert_eq!(echo["max_tokens"]["finish_reason"], "length", "{echo}");
    let usage = &echo["max_tokens"]["usage"];
    assert_eq!(usage[1], 3, "{echo}");
    assert!(usage[0].as_u64().unwrap() >= 7, "the prompt's words: {echo}");
    assert_eq!(usage[2].as_u64(), Some(usage[0].as_u64().unwrap() + 3), "{echo}");
    assert_eq!(echo["max_completion_tokens"]["content"], "one two ", "it wins over max_tokens: {echo}");
    assert_eq!(echo["stop"]["content"], "one two three ", "{echo}");
    assert_eq!(echo["stop"]["finish_reason"], "stop", "{echo}");
    assert_eq!(echo["plain"]["content"], "one two three four five six seven", "{echo}");
    assert_eq!(echo["plain"]["finish_reason"], "stop", "{echo}");
    let stream = &echo["stream_max_tokens"];
    // Four tokens, streamed as they come, or (when the echo provider is done
    // before the stream starts) carried whole by the reply.
    assert_eq!(stream["content"], "one two three four ", "{stream}");
    assert!((1..=4).contains(&stream["content_chunks"].as_u64().unwrap()), "{stream}");
    assert_eq!(stream["finish"], json!(["length"]), "{stream}");
    assert_eq!(stream["usage"], json!([[usage[0], 4]]), "one usage chunk: {stream}");
    assert_eq!(stream["last_has_choices"], false, "the usage chunk has no choices: {stream}");
    assert_eq!(echo["stream_stop"]["content"], "one two ", "{echo}");
    assert_eq!(echo["stream_stop"]["usage"], json!([]), "no usage unless asked: {echo}");
    for (param, name) in [
        ("n", "n"),
        ("tools", "tools"),
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("json_mode", "response_format"),
        ("logprobs", "logprobs"),
        ("too_many_stops", "stop"),
    ] {
        assert_eq!(echo[param], json!([400, name]), "{param}: {echo}");
    }
    assert_eq!(echo["n_one"], "accepted", "{echo}");
    assert_eq!(echo["models"], json!({"echo": 2, "small": 1}), "{echo}");

    let small = &seen["small"];
    let greedy = small["greedy"]["content"].as_str().unwrap();
    assert_eq!(small["greedy"]["finish_reason"], "length", "{small}");
    assert_eq!(small["greedy"]["usage"][1], 12, "{small}");
    let stream = &small["stream_length"];
    assert!(stream["content_chunks"].as_u64().unwrap() <= 5, "{stream}");
    assert_eq!(stream["finish"], json!(["length"]), "{stream}");
    assert_eq!(stream["usage"][0][1], 5, "{stream}");
    let stop = small["stop_word"].as_str().unwrap();
    let before = &greedy[..greedy.find(stop).unwrap()];
    assert_eq!(small["stop"]["content"].as_str().unwrap(), before.trim(), "{small}");
    assert_eq!(small["stop"]["finish_reason"], "stop", "{small}");
    let seeded = small["seeded"].as_array().unwrap();
    assert_eq!(seeded[0], seeded[1], "one seed, one answer: {small}");
    assert!(seeded[1] != seeded[2] || seeded[2] != seeded[3], "seeds sample differently: {small}");
    assert_eq!(small["top_p"].as_str().unwrap(), greedy, "{small}");

    let embeddings = &seen["embeddings"];
    let export: Value = serde_json::from_str(&stdout(&node.cli(&["memory", "export"]))).unwrap();
    let stored = export["entities"][0]["observations"][0]["embedding"].as_str().unwrap();
    let stored = decode_vector(stored);
    assert_eq!(stored.len(), 384);
    assert!(close(&embeddings["floats"][0], &stored), "the memory's vector for the same text");
    assert!(close(&embeddings["base64_first"], &stored), "base64 decodes to it too");
    assert!(!close(&embeddings["floats"][1], &stored));
    let usage = embeddings["usage"].as_array().unwrap();
    assert!(usage[0].as_u64().unwrap() >= 8 && usage[0] == usage[1], "word pieces read: {embeddings}");
    assert_eq!(embeddings["wrong_model"], 404, "{embeddings}");
}
