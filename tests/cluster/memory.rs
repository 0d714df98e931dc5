//! Embedded memory replicated across a cluster.

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
