//! Cluster identity: StatefulSet-style formation from pod ordinals, and two
//! clusters that meet through gossip staying two clusters.

use std::collections::HashSet;
use std::time::Duration;

use caxton_testing::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_pods_form_one_cluster_from_their_ordinals() {
    let opts = ClusterOptions { voters: 3, statefulset: true, ..Default::default() };
    let cluster = TestCluster::start_with(3, opts).await;
    let mut cluster_ids = HashSet::new();
    for (id, node) in cluster.running() {
        let (_, st) = node.get("/v1/cluster/status").await;
        assert_eq!(st["node_id"], id, "pod caxton-{} is node {id}", id - 1);
        cluster_ids.insert(st["cluster_id"].as_str().expect("a member knows its cluster id").to_owned());
    }
    assert_eq!(cluster_ids.len(), 1, "one cluster: {cluster_ids:?}");
    let founders: Vec<u64> =
        cluster.running().filter(|(_, n)| n.log().contains("initialising a new cluster")).map(|(id, _)| id).collect();
    assert_eq!(founders, vec![1], "only pod 0 founds the cluster");
    let out = cluster.node(3).cli(&["cluster", "status"]);
    assert!(stdout(&out).contains(cluster_ids.iter().next().unwrap()), "{}", stdout(&out));
}

/// A node that founds its own cluster (bootstrap, gossip on `gossip`).
fn founder(node_id: u64, gossip: u16, seeds: &[u16]) -> NodeOptions {
    let seeds: Vec<String> = seeds.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
    NodeOptions {
        cluster_extra: format!(
            "node_id = {node_id}\nbootstrap = \"true\"\nvoters = 1\ngossip_interval_ms = 100\ndead_grace_ms = 1500\ngossip_listen = \"127.0.0.1:{gossip}\"\nseeds = [{}]\n",
            seeds.join(", ")
        ),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clusters_that_meet_through_gossip_stay_apart() {
    let (gossip_a, gossip_b) = (free_udp_port(), free_udp_port());
    let a = TestNode::start_with(founder(1, gossip_a, &[gossip_a])).await;
    let mut b = TestNode::start_with(founder(2, gossip_b, &[gossip_b])).await;
    assert_eq!(a.post_toml("/v1/agents", &agent_toml("only-in-a", "x")).await.0, 201);
    assert_eq!(b.post_toml("/v1/agents", &agent_toml("only-in-b", "x")).await.0, 201);
    let id_of = |st: &serde_json::Value| st["cluster_id"].as_str().unwrap().to_owned();
    let id_a = id_of(&a.get("/v1/cluster/status").await.1);
    let id_b = id_of(&b.get("/v1/cluster/status").await.1);
    assert_ne!(id_a, id_b);

    // B comes back with a seed list that reaches A: the two now gossip.
    assert!(b.terminate().await.success());
    b.reconfigure(|o| *o = founder(2, gossip_b, &[gossip_a, gossip_b]));
    b.restart().await;
    eventually("A hears of B through gossip", Duration::from_secs(20), || async {
        let (_, m) = a.get("/v1/cluster/members").await;
        m["members"].as_array().is_some_and(|m| m.iter().any(|m| m["id"] == 2 && m["alive"] == true))
    })
    .await;
    eventually("A's leader notices B belongs elsewhere", Duration::from_secs(20), || async {
        a.log().contains("ignoring a node of another cluster")
    })
    .await;
    // Neither adopted the other: each still a one-member cluster with its own data.
    for (node, id, own, other) in [(&a, &id_a, "only-in-a", "only-in-b"), (&b, &id_b, "only-in-b", "only-in-a")] {
        let (_, st) = node.get("/v1/cluster/status").await;
        assert_eq!(&id_of(&st), id);
        assert_eq!(st["members"].as_array().unwrap().len(), 1, "{st}");
        assert_eq!(node.get(&format!("/v1/agents/{own}")).await.0, 200);
        assert_eq!(node.get(&format!("/v1/agents/{other}")).await.0, 404);
    }

    // And the RPC port itself refuses a peer of another cluster, naming both.
    let rpc = format!("http://127.0.0.1:{}/raft/vote", a.rpc_port);
    let peer = |cluster: &str| {
        a.http
            .post(&rpc)
            .header("x-caxton-cluster-id", cluster)
            .header("x-caxton-node-id", "9")
            .header("content-type", "application/x-caxton-rpc")
            .body(vec![0u8; 4])
    };
    let r = peer(&id_b).send().await.unwrap();
    assert_eq!(r.status(), 409);
    let text = r.text().await.unwrap();
    assert!(text.contains(&id_a) && text.contains(&id_b), "{text}");
    let r = peer(&id_a).send().await.unwrap();
    assert_eq!(r.status(), 400, "its own cluster gets past the check (and fails decoding garbage)");
}

/// A joining node (bootstrap false, gossip on `gossip`, seeded with `seed`).
fn joiner(node_id: u64, gossip: u16, seed: u16) -> NodeOptions {
    NodeOptions {
        cluster_extra: format!(
            "node_id = {node_id}\nbootstrap = \"false\"\nvoters = 3\ngossip_interval_ms = 100\ndead_grace_ms = 1500\ngossip_listen = \"127.0.0.1:{gossip}\"\nseeds = [\"127.0.0.1:{seed}\"]\n"
        ),
        ..Default::default()
    }
}

/// Gossip is sealed with the cluster secret: a node with another secret (or
/// none) that gossips to a member is never seen, never made a learner, and
/// gets no log entry; one with the secret joins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_admits_only_nodes_that_hold_the_cluster_secret() {
    let secret = |s: &str| vec![("CAXTON_CLUSTER_SECRET".to_owned(), s.to_owned())];
    let (gossip_a, gossip_x, gossip_y, gossip_b) = (free_udp_port(), free_udp_port(), free_udp_port(), free_udp_port());
    let a =
        TestNode::start_with(NodeOptions { env: secret("right-secret"), ..founder(1, gossip_a, &[gossip_a]) }).await;
    assert_eq!(a.post_toml("/v1/agents", &agent_toml("members-only", "x")).await.0, 201);
    let stranger = TestNode::spawn_with(NodeOptions { env: secret("wrong-secret"), ..joiner(2, gossip_x, gossip_a) });
    let plain = TestNode::spawn_with(joiner(3, gossip_y, gossip_a));
    eventually("the member drops the strangers' gossip", Duration::from_secs(20), || async {
        a.log().contains("dropped gossip datagrams that did not open")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, members) = a.get("/v1/cluster/members").await;
    let ids: Vec<u64> = members["members"].as_array().unwrap().iter().map(|m| m["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [1], "the strangers are not members, not even as gossip peers: {members}");
    let quick = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
    for s in [&stranger, &plain] {
        let seen = quick.get(s.url("/v1/agents/members-only")).send().await.map(|r| r.status().as_u16());
        assert!(!matches!(seen, Ok(200)), "a stranger holds the cluster's log: {seen:?}");
    }

    // The same node with the secret joins and gets the log.
    let member =
        TestNode::start_with(NodeOptions { env: secret("right-secret"), ..joiner(4, gossip_b, gossip_a) }).await;
    eventually("the node with the secret joins and applies the log", Duration::from_secs(30), || async {
        member.get("/v1/agents/members-only").await.0 == 200
    })
    .await;
}
