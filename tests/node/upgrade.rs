//! A Raft log and a snapshot written by the first version (before `state/`
//! owned its vocabulary; `scripts/make-upgrade-fixture.sh`) are read and
//! applied by this one: the snapshot restores round `a` of writes, and the
//! log tail after it, holding every command kind, replays round `b`.

use std::path::PathBuf;
use std::time::Duration;

use caxton_testing::{eventually, NodeOptions, TestNode};
use serde_json::Value;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/upgrade-v1")
}

fn names(v: &Value, list: &str) -> Vec<String> {
    let mut names: Vec<String> =
        v[list].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap().to_owned()).collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_log_and_snapshot_written_by_v1_are_applied() {
    // The fixture's messages are as old as the fixture: keep history forever,
    // or the retention would prune them once they pass its age.
    let node = TestNode::start_with(NodeOptions {
        seed_data: Some(fixture()),
        extra_config: "history_retention_ms = 0".into(),
        ..Default::default()
    })
    .await;
    // Readiness means caught up; the tail is applied once the agents are there.
    eventually("the log tail is applied", Duration::from_secs(30), || async {
        node.get("/v1/agents/echo-b").await.0 == 200
    })
    .await;

    // Agents: deployed twice (revision 2), and removed ones stay removed.
    let (_, agents) = node.get("/v1/agents").await;
    assert_eq!(names(&agents, "agents"), ["echo-a", "echo-b"], "{agents}");
    for tag in ["a", "b"] {
        let (_, agent) = node.get(&format!("/v1/agents/echo-{tag}")).await;
        assert_eq!(agent["revision"], 2, "{agent}");
        assert_eq!(agent["version"], "1.1.0", "{agent}");
    }

    // Messages and their replies, from the snapshot and from the log.
    for tag in ["a", "b"] {
        let (status, exchange) = node.get(&format!("/v1/messages/msg-{tag}")).await;
        assert_eq!(status, 200, "{exchange}");
        assert_eq!(exchange["reply"]["content"], format!("hello {tag}"), "{exchange}");
    }

    // Memory: entities, relations, deletions and the vectors themselves.
    let (_, listed) = node.get("/v1/memory/entities?scope=workspace&workspace=team").await;
    assert_eq!(names(&listed, "entities"), ["Lisbon-a", "Lisbon-b", "Portugal-a", "Portugal-b"], "{listed}");
    let (_, near) = node.get("/v1/memory/entities/Lisbon-b/neighbours?scope=workspace&workspace=team").await;
    assert_eq!(near["neighbours"][0]["name"], "Portugal-b", "{near}");
    let (_, found) = node.get("/v1/memory/search?q=sunny&scope=workspace&workspace=team&limit=2").await;
    let mut hits = names(&found, "results");
    hits.sort();
    assert_eq!(hits, ["Lisbon-a", "Lisbon-b"], "the vectors of both rounds are searchable: {found}");

    // Tool servers: the module came through the log and still runs.
    let (_, servers) = node.get("/v1/mcp-servers").await;
    assert_eq!(names(&servers, "servers"), ["json_query"], "{servers}");
    let call = serde_json::json!({"arguments": {"json": {"a": [1, 2]}, "path": "a[1]"}});
    let (status, result) =
        node.send(reqwest::Method::POST, "/v1/tools/json_query/call", "application/json", call.to_string()).await;
    assert_eq!(status, 200, "{result}");
    assert!(result.to_string().contains('2'), "{result}");
}
