//! A canary survives the death of the leader that was driving it: the new
//! leader's controller reads the replicated rollout and continues from the
//! step it had reached.

use std::time::Duration;

use caxton_testing::*;
use serde_json::json;

const CANARY: &str = r#"
[rollout]
steps = [{ weight = 20, pause = "2s" }, { weight = 50, pause = "3s" }, { weight = 80, pause = "2s" }]
[rollout.analysis]
min_requests = 2
interval = "250ms"
"#;

/// One request through `node`, retried while an election runs.
async fn ask(node: &TestNode, i: usize) -> serde_json::Value {
    let body =
        json!({"to": "clerk", "content": format!("job {i}"), "conversation_id": format!("c-{i}"), "timeout_ms": 20000});
    eventually_some("an answer", Duration::from_secs(30), || async {
        let (status, v) = node.post_json("/v1/messages", body.clone()).await;
        (status == 200 && v["reply"].is_object()).then_some(v)
    })
    .await
}

async fn rollout(node: &TestNode) -> serde_json::Value {
    node.get("/v1/agents/clerk/rollout").await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_continues_on_the_new_leader_from_the_step_it_reached() {
    let mut cluster = TestCluster::start(3).await;
    let leader = cluster.wait_leader().await;
    let entry = (1..=3).find(|id| *id != leader).unwrap();
    let v1 = "name = \"clerk\"\nprovider = \"echo\"\nsystem_prompt = \"one\"\n";
    assert_eq!(cluster.node(entry).post_toml("/v1/agents", v1).await.0, 201);
    let v2 = format!("name = \"clerk\"\nprovider = \"echo\"\nsystem_prompt = \"two\"\n{CANARY}");
    assert_eq!(cluster.node(entry).post_toml("/v1/agents", &v2).await.1["revision"], 2);

    let mut i = 0;
    let reached = loop {
        ask(cluster.node(entry), i).await;
        i += 1;
        let r = rollout(cluster.node(entry)).await;
        if r["step"].as_u64() >= Some(1) {
            break r["step"].as_u64().unwrap();
        }
        assert!(i < 2000, "the canary never left its first step: {r}");
    };
    cluster.node_mut(leader).kill();
    let mut steps = Vec::new();
    let done = loop {
        ask(cluster.node(entry), i).await;
        i += 1;
        let r = rollout(cluster.node(entry)).await;
        if let Some(s) = r["step"].as_u64() {
            steps.push(s);
        }
        if r["state"] != "progressing" {
            break r;
        }
        assert!(i < 5000, "no end to the rollout: {r}");
    };
    assert_eq!(done["state"], "promoted", "{done}");
    assert!(steps.iter().all(|s| *s >= reached), "never back to an earlier step: reached {reached}, then {steps:?}");
    let new_leader = cluster.wait_leader().await;
    assert_ne!(new_leader, leader);
    assert!(cluster.node(new_leader).log().contains("rollout moved"), "the new leader drove the rest");
    let (_, a) = cluster.node(entry).get("/v1/agents/clerk").await;
    assert_eq!(a["revision"], 2);
}
