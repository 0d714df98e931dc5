//! Memory across a cluster: embedded (replicated through Raft, searchable
//! on every node once applied) and PostgreSQL (one database every node
//! shares, searchable from any node as soon as the write is acknowledged).

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
