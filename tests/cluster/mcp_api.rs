//! Tool servers replicated across a cluster.

use std::time::Duration;

use caxton_testing::*;
use serde_json::json;

/// Every node keeps its tool catalog in memory once it has called: a
/// removal or a redeploy, applied anywhere, is what every node serves next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_server_deployed_on_one_node_is_callable_on_every_node() {
    let cluster = TestCluster::start(3).await;
    let dir = repo_path("examples/mcp/json_query");
    let out = cluster.node(2).cli(&["mcp", "deploy", &dir.to_string_lossy()]);
    assert!(out.status.success(), "{}", stderr(&out));
    for (id, node) in cluster.running() {
        eventually(&format!("callable on node {id}"), Duration::from_secs(20), || async {
            let (s, r) = node
                .post_json("/v1/tools/json_query/call", json!({"arguments": {"json": {"k": id}, "path": "k"}}))
                .await;
            s == 200 && r["structuredContent"]["matches"] == json!([id])
        })
        .await;
    }

    let out = cluster.node(1).cli(&["mcp", "remove", "json_query"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for (id, node) in cluster.running() {
        eventually(&format!("gone from node {id}"), Duration::from_secs(20), || async {
            let (s, p) = node.post_json("/v1/tools/json_query/call", json!({"arguments": {}})).await;
            s == 404 && p["type"] == "https://caxton.dev/problems/tool-not-found"
        })
        .await;
    }
    let out = cluster.node(3).cli(&["mcp", "deploy", &dir.to_string_lossy()]);
    assert!(out.status.success(), "{}", stderr(&out));
    for (id, node) in cluster.running() {
        eventually(&format!("callable again on node {id}"), Duration::from_secs(20), || async {
            let (s, r) = node
                .post_json("/v1/tools/json_query/call", json!({"arguments": {"json": {"k": id}, "path": "k"}}))
                .await;
            s == 200 && r["structuredContent"]["matches"] == json!([id])
        })
        .await;
    }
}
