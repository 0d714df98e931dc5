//! What is acknowledged survives: restarts, snapshots with log compaction,
//! SIGTERM under load, kill -9, and concurrent deploys.

use std::sync::Arc;
use std::time::Duration;

use caxton_testing::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_restores_every_agent() {
    let mut node = TestNode::start().await;
    for i in 0..20 {
        let (s, _) = node.post_toml("/v1/agents", &agent_toml(&format!("keep-{i:02}"), "x")).await;
        assert_eq!(s, 201);
    }
    let v2 = agent_toml("keep-00", "updated").replace("1.0.0", "1.1.0");
    assert_eq!(node.send(reqwest::Method::PUT, "/v1/agents/keep-00", "application/toml", v2).await.0, 200);
    assert_eq!(node.delete("/v1/agents/keep-19").await.0, 200);

    assert!(node.terminate().await.success());
    node.restart().await;
    let names = node.agent_names().await;
    assert_eq!(names.len(), 19);
    assert!(!names.contains(&"keep-19".to_owned()));
    let (_, a) = node.get("/v1/agents/keep-00").await;
    assert_eq!((a["revision"].as_u64(), a["version"].as_str()), (Some(2), Some("1.1.0")));
    assert_eq!(a["state"], "running", "agents owned by this node are started again");

    // kill -9 too: acknowledged writes are in the log before the answer.
    let (s, _) = node.post_toml("/v1/agents", &agent_toml("after-kill", "x")).await;
    assert_eq!(s, 201);
    node.kill();
    node.restart().await;
    assert_eq!(node.agent_names().await.len(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_and_compaction_then_restart() {
    // Keep no log behind a snapshot so compaction is visible.
    let mut node = TestNode::start_with(NodeOptions {
        env: vec![("CAXTON_CLUSTER_LOGS_TO_KEEP".into(), "0".into())],
        ..Default::default()
    })
    .await;
    for i in 0..50 {
        node.post_toml("/v1/agents", &agent_toml(&format!("snap-{i:02}"), "x")).await;
    }
    let (_, before) = node.get("/v1/cluster/status").await;
    let applied = before["applied_index"].as_u64().unwrap();
    assert!(before["stored_log_entries"].as_u64().unwrap() >= 50);

    let r = node.http.post(node.url("/v1/cluster/snapshot")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let snap: serde_json::Value = r.json().await.unwrap();
    assert!(snap["snapshot_index"].as_u64().unwrap() >= applied);
    eventually("log purged behind the snapshot", Duration::from_secs(10), || async {
        let (_, s) = node.get("/v1/cluster/status").await;
        s["purged_index"].as_u64().is_some_and(|p| p >= applied) && s["stored_log_entries"].as_u64() < Some(5)
    })
    .await;
    assert!(node.data_dir().join("snapshots/current.db").exists());
    // kill -9 right after the purge: the snapshot and the replica behind it
    // were made durable before the log was cut.
    node.kill();
    node.restart().await;
    assert_eq!(node.agent_names().await.len(), 50);

    // Writes after the snapshot live only in the log tail.
    for i in 0..5 {
        node.post_toml("/v1/agents", &agent_toml(&format!("tail-{i}"), "x")).await;
    }
    node.kill();
    node.restart().await;
    let names = node.agent_names().await;
    assert_eq!(names.len(), 55, "{names:?}");
    let (_, s) = node.get("/v1/cluster/status").await;
    assert!(s["snapshot_index"].as_u64().unwrap() >= applied);
    assert_eq!(s["failed_entries"], 0, "every entry applied: {s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_exits_cleanly_and_loses_nothing_acknowledged() {
    let mut node = TestNode::start().await;
    let acked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut writers = Vec::new();
    for w in 0..4 {
        let http = node.http.clone();
        let url = node.url("/v1/agents");
        let acked = acked.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..10_000 {
                let name = format!("load-{w}-{i}");
                let r = http
                    .post(&url)
                    .header("content-type", "application/toml")
                    .body(agent_toml(&name, "x"))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 201 => acked.lock().unwrap().push(name),
                    // Refused or cut off during shutdown: not acknowledged.
                    _ => break,
                }
            }
        }));
    }
    eventually("some writes acknowledged", Duration::from_secs(20), || {
        let n = acked.lock().unwrap().len();
        async move { n >= 100 }
    })
    .await;
    let status = node.terminate().await;
    assert!(status.success(), "exit status {status:?}; log:\n{}", node.log());
    for w in writers {
        w.await.unwrap();
    }
    assert!(node.log().contains("caxton node stopped"));
    node.restart().await;
    let present: std::collections::HashSet<String> = node.agent_names().await.into_iter().collect();
    let acked = acked.lock().unwrap();
    let lost: Vec<&String> = acked.iter().filter(|n| !present.contains(*n)).collect();
    assert!(lost.is_empty(), "{} acknowledged deploys lost: {:?}", lost.len(), &lost[..lost.len().min(10)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_deploys_all_present() {
    let node = TestNode::start().await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let http = node.http.clone();
        let url = node.url("/v1/agents");
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(&url)
                .header("content-type", "application/toml")
                .body(agent_toml(&format!("conc-{i:03}"), "x"))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<serde_json::Value>().await.unwrap())
        }));
    }
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!((status, body["revision"].as_u64()), (201, Some(1)), "{body}");
    }
    let names = node.agent_names().await;
    assert_eq!(names.len(), 200);
    // Concurrent deploys share entries (`DeployAgents`); all of them are applied.
    let (_, s) = node.get("/v1/cluster/status").await;
    assert!(s["applied_index"].as_u64().unwrap() >= 1, "{s}");
}

/// History does not grow forever: answered messages and finished
/// conversations older than the retention go, waiting requests stay, and
/// each agent keeps its newest revisions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_history_is_pruned_and_waiting_requests_are_kept() {
    let stub = OpenAiStub::start().await;
    stub.respond_with(|_| StubReply::text("late").after(Duration::from_secs(30)));
    let node = TestNode::start_with(NodeOptions {
        extra_config: "history_retention_ms = 1500\nagent_versions_kept = 2".into(),
        tables: stub.provider_config("stub", "timeout_ms = 60000"),
        ..Default::default()
    })
    .await;
    assert_eq!(node.post_toml("/v1/agents", &echo_agent_toml("echo", &["echo"])).await.0, 201);
    for v in ["1.1.0", "1.2.0", "1.3.0"] {
        let toml = echo_agent_toml("echo", &["echo"])
            .replace("name = \"echo\"", &format!("name = \"echo\"\nversion = \"{v}\""));
        assert_eq!(node.post_toml("/v1/agents", &toml).await.0, 200);
    }
    assert_eq!(
        node.post_toml("/v1/agents", "name = \"slow\"\nprovider = \"stub\"\nsystem_prompt = \"x\"\n").await.0,
        201
    );
    let (s, answered) =
        node.post_json("/v1/messages", serde_json::json!({"to": "echo", "content": "old news", "id": "old-1"})).await;
    assert_eq!(s, 200, "{answered}");
    let conversation = answered["message"]["conversation_id"].as_str().unwrap().to_owned();
    let (s, _) = node
        .post_json(
            "/v1/messages",
            serde_json::json!({"to": "slow", "content": "wait", "id": "waiting-1", "mode": "async"}),
        )
        .await;
    assert_eq!(s, 202);

    eventually("answered history is pruned", Duration::from_secs(20), || async {
        node.get("/v1/messages/old-1").await.0 == 404
    })
    .await;
    assert_eq!(node.get("/v1/messages/old-1-reply").await.0, 404);
    assert_eq!(node.get(&format!("/v1/conversations/{conversation}")).await.0, 404);
    let (s, waiting) = node.get("/v1/messages/waiting-1").await;
    assert_eq!((s, waiting["message"]["status"].as_str()), (200, Some("accepted")), "{waiting}");
    let (_, agent) = node.get("/v1/agents/echo").await;
    let revisions: Vec<u64> =
        agent["versions"].as_array().unwrap().iter().map(|v| v["revision"].as_u64().unwrap()).collect();
    assert_eq!(revisions.len(), 2, "{revisions:?}");
    assert!(revisions.contains(&4), "the current revision is kept: {revisions:?}");
    assert!(node.log().contains("pruned history"));
}

/// Snapshots built while many clients read and write: the replica is made
/// durable before the log is purged without blocking the applier (a
/// `wal_checkpoint(FULL)` once held the write lock until readers moved on,
/// the applier timed out on "database is locked", and Raft stopped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_under_read_and_write_load_never_stop_raft() {
    let node = TestNode::start_with(NodeOptions {
        cluster_extra: "snapshot_after_logs = 200\nlogs_to_keep = 50".into(),
        ..Default::default()
    })
    .await;
    for i in 0..4 {
        deploy(&node, &echo_agent_toml(&format!("busy{i}"), &[])).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    let mut clients = Vec::new();
    for c in 0..48 {
        let (http, url) = (node.http.clone(), node.url("/v1/messages"));
        clients.push(tokio::spawn(async move {
            let mut refused = Vec::new();
            while std::time::Instant::now() < deadline {
                let body = serde_json::json!({"to": format!("busy{}", c % 4), "content": "ping", "timeout_ms": 30000});
                let r = http.post(&url).json(&body).send().await.unwrap();
                if r.status() != 200 {
                    refused.push(format!("{} {}", r.status(), r.text().await.unwrap_or_default()));
                }
            }
            refused
        }));
    }
    let mut refused = Vec::new();
    for c in clients {
        refused.extend(c.await.unwrap());
    }
    assert!(refused.is_empty(), "{} refused, first: {:?}", refused.len(), refused.first());
    let (_, st) = node.get("/v1/cluster/status").await;
    assert!(st["snapshot_index"].as_u64() > Some(200), "snapshots were built under load: {st}");
    assert!(!node.log().contains("quit RaftCore"), "Raft stopped");
}
