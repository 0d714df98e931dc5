//! Memory across a cluster: embedded (replicated through Raft, searchable
//! on every node once applied) and PostgreSQL (one database every node
//! shares, searchable from any node as soon as the write is acknowledged,
//! and a database outage under load that loses no acknowledged write).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use caxton_testing::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_written_on_one_node_is_searchable_on_the_others() {
    let cluster = TestCluster::start(3).await;
    let (s, v) = cluster.node(2).post_json("/v1/memory/entities", json!({"name": "replicated", "entity_type": "fact", "observations": ["The deployment window is Tuesday at noon."]})).await;
    assert_eq!(s, 201, "{v}");
    for (id, node) in cluster.running() {
        eventually(&format!("searchable on node {id}"), Duration::from_secs(20), || async {
            let (s, v) = node.get("/v1/memory/search?q=when%20can%20we%20deploy&limit=1").await;
            s == 200 && v["results"][0]["name"] == "replicated"
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_memory_written_through_node_1_is_searchable_from_node_3_at_once() {
    let pg = TestPostgres::start();
    pg.create_database("cluster");
    // Three nodes starting together against one empty database: the
    // schema is migrated once.
    let cluster = TestCluster::start_with(
        3,
        ClusterOptions { voters: 3, tables: pg.memory_config("cluster"), ..Default::default() },
    )
    .await;
    assert_eq!(pg.psql("cluster", "SELECT count(*) FROM caxton_memory_migrations"), "1");
    for i in 0..5 {
        let name = format!("release-{i}");
        let text = format!("Release {i} ships on day {} of the quarter.", 10 + i);
        let (s, v) = cluster
            .node(1)
            .post_json("/v1/memory/entities", json!({"name": name, "entity_type": "fact", "observations": [text]}))
            .await;
        assert_eq!(s, 201, "{v}");
        // No waiting for replication: the write is in the shared database.
        let (s, v) =
            cluster.node(3).get(&format!("/v1/memory/search?q=when%20does%20release%20{i}%20ship&limit=1")).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["results"][0]["name"], name.as_str(), "{v}");
    }
    let (s, v) = cluster.node(2).get("/v1/memory/entities/release-3").await;
    assert_eq!(s, 200, "{v}");
    // Memory writes do not go through Raft; the rest of Caxton still does.
    assert_eq!(pg.psql("cluster", "SELECT count(*) FROM caxton_memory_entities"), "5");
    let (_, status) = cluster.node(1).get("/v1/cluster/status").await;
    assert_eq!(status["members"].as_array().unwrap().len(), 3, "{status}");
}

/// Writers on every node keep storing while the database stops and comes
/// back: every write acknowledged (201) is there afterwards; meanwhile the
/// answers are 503 `memory-unavailable` with Retry-After, and `/ready` says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_stopping_under_load_gives_503s_and_loses_no_acknowledged_write() {
    let pg = TestPostgres::start();
    pg.create_database("outage");
    let cluster = Arc::new(
        TestCluster::start_with(
            3,
            ClusterOptions { voters: 3, tables: pg.memory_config("outage"), ..Default::default() },
        )
        .await,
    );
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let refused = Arc::new(Mutex::new(Vec::<(u16, String, Option<String>)>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..3 {
        let (cluster, acked, refused, stop) = (cluster.clone(), acked.clone(), refused.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let node = cluster.node(w + 1);
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let name = format!("w{w}-{i}");
                i += 1;
                let resp = node
                    .http
                    .post(node.url("/v1/memory/entities"))
                    .json(&json!({"name": name, "entity_type": "load", "observations": [format!("Record {name} of the load test.")]}))
                    .send()
                    .await
                    .unwrap();
                let status = resp.status().as_u16();
                let retry = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
                let body: serde_json::Value = resp.json().await.unwrap_or_default();
                if status == 201 {
                    acked.lock().unwrap().push(name);
                } else {
                    refused.lock().unwrap().push((status, body["type"].as_str().unwrap_or("").to_owned(), retry));
                }
            }
        }));
    }
    eventually("writes before the outage", Duration::from_secs(30), || async { acked.lock().unwrap().len() >= 20 })
        .await;
    pg.stop();
    eventually("503s during the outage", Duration::from_secs(30), || async { refused.lock().unwrap().len() >= 3 })
        .await;
    let node = cluster.node(2);
    let (s, ready) = node.get("/ready").await;
    assert_eq!(s, 503, "{ready}");
    assert_eq!(ready["memory"]["ready"], false, "{ready}");
    let (s, p) = node.get("/v1/memory/search?q=record").await;
    assert_eq!((s, p["type"].as_str()), (503, Some("https://caxton.dev/problems/memory-unavailable")), "{p}");
    let during = acked.lock().unwrap().len();
    pg.start_again();
    eventually("writes after the outage", Duration::from_secs(60), || async {
        acked.lock().unwrap().len() >= during + 20
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for w in writers {
        w.await.unwrap();
    }
    let refused = refused.lock().unwrap().clone();
    assert!(
        refused.iter().all(|(s, t, retry)| *s == 503 && t.ends_with("/memory-unavailable") && retry.is_some()),
        "only clear 503s with Retry-After: {refused:?}"
    );
    let acked = acked.lock().unwrap().clone();
    let stored: std::collections::HashSet<String> =
        pg.psql("outage", "SELECT name FROM caxton_memory_entities").lines().map(str::to_owned).collect();
    let lost: Vec<&String> = acked.iter().filter(|n| !stored.contains(*n)).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    eventually("ready again", Duration::from_secs(30), || async { node.get("/ready").await.0 == 200 }).await;
    let (s, v) = node.get("/v1/memory/search?q=record%20of%20the%20load%20test&limit=3").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["results"].as_array().unwrap().len(), 3);
}
