//! A2A v1.0, driven by the official Python SDK (`a2a-sdk`) against a node
//! that does not own the agents it talks to: cards, sends (JSON-RPC and
//! HTTP+JSON, streaming and not), tasks got, listed, canceled and
//! subscribed to, the router card routing by skill, and keys required.

use std::time::Duration;

use caxton_testing::*;
use serde_json::{json, Value};

fn python() -> String {
    std::env::var("CAXTON_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// The node that owns `agent`, from the placement view.
async fn owner_of(node: &TestNode, agent: &str) -> Option<u64> {
    let (_, p) = node.get("/v1/cluster/placement").await;
    p["nodes"]
        .as_array()?
        .iter()
        .find_map(|n| n["agents"].as_array()?.iter().any(|a| a == agent).then(|| n["node"].as_u64()).flatten())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_a2a_sdk_talks_to_agents_owned_by_another_node() {
    let stub = OpenAiStub::start().await;
    stub.respond_with(|_| StubReply::text("finally done").after(Duration::from_secs(5)));
    let opts = ClusterOptions {
        voters: 3,
        admin_key: Some(TEST_ADMIN_KEY.into()),
        tables: stub.provider_config("stub", ""),
        ..Default::default()
    };
    let cluster = TestCluster::start_with(3, opts).await;
    let leader = cluster.wait_leader().await;
    let admin = cluster.node(leader);
    assert_eq!(admin.post_toml("/v1/agents", &echo_agent_toml("echo", &["echo"])).await.0, 201);
    let slow = "name = \"slow\"\nprovider = \"stub\"\nsystem_prompt = \"Take your time.\"\n";
    assert_eq!(admin.post_toml("/v1/agents", slow).await.0, 201);
    eventually("both agents placed", Duration::from_secs(30), || async {
        owner_of(admin, "echo").await.is_some() && owner_of(admin, "slow").await.is_some()
    })
    .await;
    let owner = owner_of(admin, "echo").await.unwrap();
    let (via, node) = cluster.running().find(|(id, _)| *id != owner).unwrap();
    let key = admin.create_key(json!({"name": "a2a-client", "scopes": ["invoke"]})).await;

    let script = repo_path("tests/clients/a2a_client.py");
    let out = tokio::process::Command::new(python()).arg(&script).arg(node.url("")).arg(&key).output().await.unwrap();
    assert!(out.status.success(), "{} failed (via node {via}, owner {owner}):\n{}", script.display(), stderr(&out));
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)));

    assert_eq!(seen["card_without_key"], 401, "{seen}");
    let card = &seen["card"];
    assert_eq!(card["name"], "echo", "{card}");
    let interfaces = card["supportedInterfaces"].as_array().unwrap();
    let url = node.url("/a2a/agents/echo");
    for binding in ["JSONRPC", "HTTP+JSON"] {
        assert!(
            interfaces
                .iter()
                .any(|i| i["protocolBinding"] == binding && i["url"] == url && i["protocolVersion"] == "1.0"),
            "{binding} at {url}: {card}"
        );
    }
    assert_eq!(card["skills"][0]["id"], "echo", "{card}");
    assert_eq!(card["capabilities"]["streaming"], true, "{card}");
    assert!(card["securitySchemes"]["caxtonKey"]["httpAuthSecurityScheme"]["scheme"] == "Bearer", "{card}");

    assert_eq!(seen["send"]["state"], "TASK_STATE_COMPLETED", "{seen}");
    assert_eq!(seen["send"]["answer"], "hello over a2a", "{seen}");
    assert_eq!(seen["send_state_2"], "TASK_STATE_COMPLETED", "{seen}");
    assert_eq!(seen["get"], json!({"state": "TASK_STATE_COMPLETED", "history": 1, "history_role": "ROLE_AGENT"}));
    assert_eq!(seen["cancel_done"], "not cancelable", "{seen}");
    assert_eq!(seen["get_unknown"], "not found", "{seen}");

    for stream in [&seen["stream"], &seen["rest_stream"]] {
        let events = stream.as_array().unwrap();
        assert_eq!(events[0][0], "task", "starts with the task: {stream}");
        assert_eq!(events.last().unwrap(), &json!(["status", "TASK_STATE_COMPLETED"]), "{stream}");
        let text: String = events.iter().filter(|e| e[0] == "artifact").map(|e| e[1].as_str().unwrap()).collect();
        assert!(text == "streamed over a2a" || text == "streamed over rest", "{stream}");
    }
    assert_eq!(seen["rest"], json!({"state": "TASK_STATE_COMPLETED", "answer": "hello over rest"}));

    let list = &seen["list"];
    assert_eq!(list["first"].as_array().unwrap().len(), 2, "{list}");
    assert_eq!(list["total"], 5, "five sends to echo by this key: {list}");
    assert_eq!(list["next"], true, "{list}");
    assert!(list["first"][0] != list["second"][0], "pages do not repeat: {list}");

    assert_eq!(seen["router_skills"], json!(["echo"]), "{seen}");
    assert_eq!(seen["routed"], json!({"state": "TASK_STATE_COMPLETED", "answer": "routed by skill", "agent": "echo"}));

    assert_eq!(seen["slow_started"], "TASK_STATE_SUBMITTED", "{seen}");
    assert_eq!(seen["canceled"], "TASK_STATE_CANCELED", "{seen}");
    let saw = seen["subscriber_saw"].as_array().unwrap();
    assert_eq!(saw[0][0], "task", "{seen}");
    assert_eq!(saw.last().unwrap(), &json!(["status", "TASK_STATE_CANCELED"]), "{seen}");
    assert_eq!(seen["canceled_later"], "TASK_STATE_CANCELED", "{seen}");
    assert_eq!(seen["send_without_key"], 401, "{seen}");
}
