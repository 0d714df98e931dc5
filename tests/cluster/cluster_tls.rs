//! Mutual TLS between nodes: only certificates from the cluster's CA get a
//! node in, a certificate binds its node id, and a node id spoofed in gossip
//! moves nothing.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use caxton_testing::*;

const GOSSIP_SECRET: &str = "the-gossip-key-every-node-here-holds";

/// A node of a mutual-TLS cluster; `tls` is the `[cluster]` TLS lines (or
/// none, for a node without a certificate).
fn node(id: u64, gossip: u16, seed: u16, bootstrap: bool, tls: String) -> NodeOptions {
    NodeOptions {
        cluster_extra: format!(
            "node_id = {id}\nbootstrap = \"{bootstrap}\"\nvoters = 1\ngossip_interval_ms = 100\ndead_grace_ms = 1500\ngossip_listen = \"127.0.0.1:{gossip}\"\nseeds = [\"127.0.0.1:{seed}\"]\n{tls}"
        ),
        // Even the strangers hold the gossip key: what keeps them out is
        // the certificate, not the seal.
        env: vec![("CAXTON_CLUSTER_SECRET".into(), GOSSIP_SECRET.into())],
        ..Default::default()
    }
}

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(caxton_bin()).args(args).output().expect("run caxton")
}

/// The CA and certificates for nodes 1 and 2, made with the CLI.
fn pki_with_cli(dir: &Path) {
    let ca = dir.join("ca");
    let out = cli(&["cluster", "ca", "init", ca.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("ca.crt"), "{}", stdout(&out));
    for id in ["1", "2"] {
        let out = cli(&[
            "cluster",
            "cert",
            "issue",
            "--node-id",
            id,
            "--ip",
            "127.0.0.1",
            "--ca-dir",
            ca.to_str().unwrap(),
            "--out",
            dir.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    // --hostname alone: a StatefulSet pod's name gives the node id.
    let out = cli(&[
        "cluster",
        "cert",
        "issue",
        "--hostname",
        "caxton-4",
        "--ca-dir",
        ca.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success() && stdout(&out).contains("issued node 5"), "{}", stdout(&out));
    let again = cli(&["cluster", "ca", "init", ca.to_str().unwrap()]);
    assert!(!again.status.success() && stderr(&again).contains("already exists"), "{}", stderr(&again));
}

/// An HTTPS client presenting node `id`'s certificate from `dir`.
fn client_as(dir: &Path, id: u64) -> reqwest::Client {
    let read = |name: String| std::fs::read(dir.join(name)).unwrap();
    let mut pem = read(format!("node-{id}.crt"));
    pem.extend(read(format!("node-{id}.key")));
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&read("ca.crt".into())).unwrap())
        .identity(reqwest::Identity::from_pem(&pem).unwrap())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

async fn raft_member_ids(node: &TestNode) -> Vec<u64> {
    let (_, st) = node.get("/v1/cluster/status").await;
    st["members"].as_array().unwrap().iter().map(|m| m["id"].as_u64().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_nodes_with_a_certificate_from_the_cluster_ca_are_added() {
    let pki = tempfile::tempdir().unwrap();
    pki_with_cli(pki.path());
    let other = tempfile::tempdir().unwrap();
    cluster_pki(other.path(), [3]);
    let tls = |id| cluster_tls_config(pki.path(), id);
    let (g1, g2, g3, g4) = (free_udp_port(), free_udp_port(), free_udp_port(), free_udp_port());

    let a = TestNode::start_with(node(1, g1, g1, true, tls(1))).await;
    assert_eq!(a.post_toml("/v1/agents", &agent_toml("members-only", "x")).await.0, 201);
    let foreign_ca = TestNode::spawn_with(node(3, g3, g1, false, cluster_tls_config(other.path(), 3)));
    let no_cert = TestNode::spawn_with(node(4, g4, g1, false, String::new()));
    let b = TestNode::start_with(node(2, g2, g1, false, tls(2))).await;
    eventually("node 2 joins over mutual TLS and applies the log", Duration::from_secs(30), || async {
        b.get("/v1/agents/members-only").await.0 == 200
    })
    .await;
    eventually("the leader refuses the strangers' handshakes", Duration::from_secs(20), || async {
        a.log().contains("TLS handshake failed")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(raft_member_ids(&a).await, [1, 2], "only nodes with the cluster's certificates are members");
    let quick = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
    for stranger in [&foreign_ca, &no_cert] {
        let seen = quick.get(stranger.url("/v1/agents/members-only")).send().await.map(|r| r.status().as_u16());
        assert!(!matches!(seen, Ok(200)), "a stranger holds the cluster's log: {seen:?}");
    }

    // A certificate binds its node id: node 2's certificate claiming node 3
    // is refused from the headers, before any body is read.
    let rpc = format!("https://127.0.0.1:{}/raft/vote", a.rpc_port);
    let as_two = client_as(pki.path(), 2);
    let r = as_two.post(&rpc).header("x-caxton-node-id", "3").body(vec![0u8; 4]).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let text = r.text().await.unwrap();
    assert!(text.contains("certificate is for node 2") && text.contains("node 3"), "{text}");
    let r = as_two.post(&rpc).header("x-caxton-node-id", "2").body(vec![0u8; 4]).send().await.unwrap();
    assert_eq!(r.status(), 400, "its own id gets past the check (and fails decoding garbage)");
    // Without a client certificate there is no connection at all.
    let anonymous = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(pki.path().join("ca.crt")).unwrap()).unwrap(),
        )
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let refused = anonymous.post(&rpc).header("x-caxton-node-id", "2").body(vec![0u8; 4]).send().await;
    assert!(refused.is_err() || refused.unwrap().status() != 200);

    // A node whose certificate names another id does not start.
    let mut impostor = TestNode::spawn_with(node(5, free_udp_port(), g1, false, tls(2)));
    let status = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Some(status) = impostor.child.as_mut().unwrap().try_wait().unwrap() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("a node with another node's certificate exits");
    assert!(!status.success());
    let log = impostor.log();
    assert!(log.contains("certificate for node 2, but this node's id is 5"), "{log}");
    impostor.child = None;
}

/// A node that presents a member's node id in gossip, from another data
/// directory and without a certificate, neither takes the member's shards
/// nor makes it look gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_keeps_its_shards_when_a_stranger_spoofs_its_id_in_gossip() {
    let cluster = TestCluster::start_with(2, ClusterOptions { voters: 3, tls: true, ..Default::default() }).await;
    let leader = cluster.node(1);
    for i in 0..12 {
        assert_eq!(leader.post_toml("/v1/agents", &agent_toml(&format!("spoof-{i}"), "x")).await.0, 201);
    }
    let shards_of = |placement: &serde_json::Value, node: u64| {
        placement["nodes"].as_array().unwrap().iter().find(|n| n["node"] == node).map(|n| n["shards"].as_u64().unwrap())
    };
    let before = eventually_some("both nodes own shards", Duration::from_secs(30), || async {
        let (_, p) = leader.get("/v1/cluster/placement").await;
        let two = shards_of(&p, 2)?;
        (two > 0 && shards_of(&p, 1)? > 0).then_some(two)
    })
    .await;
    let (_, members) = leader.get("/v1/cluster/members").await;
    let seed = members["members"].as_array().unwrap().iter().find(|m| m["id"] == 1).unwrap()["gossip_addr"]
        .as_str()
        .unwrap()
        .rsplit_once(':')
        .unwrap()
        .1
        .parse::<u16>()
        .unwrap();
    let spoofer = TestNode::spawn_with(NodeOptions {
        cluster_extra: format!(
            "node_id = 2\nbootstrap = \"false\"\nleader_wait_ms = 1000\ngossip_interval_ms = 100\ngossip_listen = \"127.0.0.1:{}\"\nseeds = [\"127.0.0.1:{seed}\"]\n",
            free_udp_port()
        ),
        ..Default::default()
    });
    // Gossip is an exchange: once the spoofer has heard of node 1, node 1
    // has heard the spoofer.
    eventually("the spoofer and the leader gossip", Duration::from_secs(20), || async {
        let Ok(r) = spoofer.http.get(spoofer.url("/v1/cluster/members")).send().await else { return false };
        let m: serde_json::Value = r.json().await.unwrap_or_default();
        m["members"].as_array().is_some_and(|m| m.iter().any(|m| m["id"] == 1 && m["alive"] == true))
    })
    .await;
    // Longer than the dead grace period: a member made to look gone would
    // have lost its shards by now.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (_, p) = leader.get("/v1/cluster/placement").await;
    assert_eq!(shards_of(&p, 2), Some(before), "node 2 keeps its shards: {p}");
    assert_eq!(raft_member_ids(leader).await, [1, 2]);
    let (_, members) = leader.get("/v1/cluster/members").await;
    let two = members["members"].as_array().unwrap().iter().find(|m| m["id"] == 2).unwrap();
    assert_eq!(two["ready"], true, "{members}");
    assert_eq!(cluster.node(2).get("/v1/agents/spoof-0").await.0, 200);
}

/// Certificates rotate without a restart. The nodes start with
/// certificates that expire in 40 s; new ones are written over them while
/// the cluster runs, and the nodes pick them up (the expiry gauge moves).
/// After the first ones have expired, a node restarted (new handshakes
/// both ways) rejoins and replicates, and writes commit: the others present
/// the new certificates, not the expired ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_replaced_on_disk_are_used_without_a_restart() {
    let valid_for = Duration::from_secs(40);
    let first_expiry = std::time::SystemTime::now() + valid_for;
    let opts = ClusterOptions { voters: 3, tls: true, cert_valid_for: Some(valid_for), ..Default::default() };
    let mut cluster = TestCluster::start_with(3, opts).await;
    let pki = cluster.pki.as_ref().unwrap().path().to_owned();
    let expiry = |node: &TestNode| {
        let url = format!("http://127.0.0.1:{}/metrics", node.metrics_port);
        async move {
            let text = reqwest::get(url).await.unwrap().text().await.unwrap();
            text.lines()
                .find(|l| l.starts_with("caxton_tls_certificate_expiry_timestamp_seconds{kind=\"node\"}"))
                .and_then(|l| l.rsplit(' ').next()?.parse::<i64>().ok())
                .unwrap_or(0)
        }
    };
    let soon = expiry(cluster.node(1)).await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!(soon > now && soon <= now + 41, "{soon} vs now {now}");

    node_certs(&pki, 1..=3, None);
    for id in 1..=3 {
        let node = cluster.node(id);
        eventually(&format!("node {id} uses its new certificate"), Duration::from_secs(20), || async {
            expiry(node).await > now + 86_400
        })
        .await;
        assert!(node.log().contains("cluster TLS material reloaded"));
    }
    // Past the first certificates' expiry, new handshakes in both directions.
    if let Ok(left) = first_expiry.duration_since(std::time::SystemTime::now()) {
        tokio::time::sleep(left + Duration::from_secs(2)).await;
    }
    let leader = cluster.wait_leader().await;
    let restarted = (1..=3).find(|id| *id != leader).unwrap();
    cluster.node_mut(restarted).kill();
    cluster.node_mut(restarted).restart().await;
    let toml = "name = \"after-rotation\"\nprovider = \"echo\"\nsystem_prompt = \"x\"\n";
    let (status, body) = cluster.node(restarted).post_toml("/v1/agents", toml).await;
    assert_eq!(status, 201, "a write forwarded from the restarted node: {body}");
    for id in 1..=3 {
        eventually(&format!("node {id} has the write"), Duration::from_secs(20), || async {
            cluster.node(id).get("/v1/agents/after-rotation").await.0 == 200
        })
        .await;
    }
}
