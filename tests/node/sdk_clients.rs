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
