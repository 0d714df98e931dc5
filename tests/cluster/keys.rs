//! Keys are replicated state: created on one node they work on every node,
//! revoked on one they stop everywhere; a node relaying another node's
//! token stream presents the caller's own key there.

use std::time::Duration;

use caxton::testing::{eventually, keyed_client, OpenAiStub, StubReply, TEST_ADMIN_KEY};
use serde_json::json;

use crate::token_streams::{completion_chunks_as, storyteller_cluster_with, CHUNKS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_works_on_every_node_and_its_revocation_reaches_them_all() {
    let stub = OpenAiStub::start().await;
    stub.respond_with(|_| StubReply::streamed(&CHUNKS, Duration::from_millis(100)));
    let cluster = storyteller_cluster_with(&stub, Some(TEST_ADMIN_KEY)).await;
    let body = json!({"name": "storyteller-app", "scopes": ["invoke", "read"], "agents": ["story*"]});
    let token = cluster.node(1).create_key(body).await;
    let app = keyed_client(&token);
    for id in 1..=3 {
        let url = cluster.node(id).url("/v1/agents/storyteller");
        eventually(&format!("the key works on node {id}"), Duration::from_secs(10), || async {
            app.get(&url).send().await.unwrap().status() == 200
        })
        .await;
    }
    // Streaming through a node that does not run the agent relays the owner's
    // stream, authenticated there with the same (limited) key.
    let owner = cluster.node(1).get("/v1/agents/storyteller").await.1["owner_node"].as_u64().unwrap();
    let relay = (1..=3).find(|n| *n != owner).unwrap();
    let chunks = completion_chunks_as(&app, cluster.node(relay), "a story").await;
    assert_eq!(chunks, CHUNKS, "node {relay} relayed node {owner}'s tokens");

    assert_eq!(cluster.node(2).delete("/v1/keys/storyteller-app").await.0, 204);
    let r = app.get(cluster.node(2).url("/v1/agents")).send().await.unwrap();
    assert_eq!(r.status(), 401, "refused on the revoking node at once");
    for id in 1..=3 {
        let url = cluster.node(id).url("/v1/agents");
        eventually(&format!("the revoked key is refused on node {id}"), Duration::from_secs(10), || async {
            app.get(&url).send().await.unwrap().status() == 401
        })
        .await;
    }
}
