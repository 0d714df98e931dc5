//! The RPC port answers a stranger from its headers alone, before reading a
//! body, and caps bodies per RPC kind for those it admits.

use std::time::Duration;

use caxton_testing::{eventually, ClusterOptions, NodeOptions, TestCluster, TestNode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "rpc-limits-secret";
/// What every node sends (without them a loopback port refuses the request
/// as a web page's, before it looks at the secret).
const PEER_HEADERS: &str = "Host: 127.0.0.1\r\ncontent-type: application/x-caxton-rpc\r\nx-caxton-node-id: 9\r\n";

/// Sends headers announcing `length` bytes of body, then only a few; returns
/// what the server answered, if it did within 5 s.
async fn announce(port: u16, path: &str, headers: &str, length: usize) -> Option<String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let head = format!("POST {path} HTTP/1.1\r\n{PEER_HEADERS}Content-Length: {length}\r\n{headers}\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&[0u8; 16]).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.ok()?.ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_are_refused_before_their_body_is_read_and_bodies_are_capped_per_kind() {
    let node = TestNode::start_with(NodeOptions {
        env: vec![("CAXTON_CLUSTER_SECRET".into(), SECRET.into())],
        ..Default::default()
    })
    .await;
    // 100 MB announced, 16 bytes sent: answered at once, not after the body.
    for path in ["/raft/append", "/raft/snapshot", "/cluster/write", "/raft/vote"] {
        let answer = announce(node.rpc_port, path, "", 100 << 20).await;
        let answer = answer.unwrap_or_else(|| panic!("{path}: no answer while the body was pending"));
        assert!(answer.starts_with("HTTP/1.1 401"), "{path}: {answer}");
    }
    // An admitted peer is held to the kind's limit: a vote is small.
    let secret = format!("x-caxton-cluster-secret: {SECRET}\r\n");
    let answer = announce(node.rpc_port, "/raft/vote", &secret, 1 << 20).await.expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // The node is unharmed.
    assert_eq!(node.get("/health").await.0, 200);
}

/// A loopback development node's cluster port (`make run`: no secret, no
/// TLS) is reachable from the pages a developer opens. A page's request (an
/// `Origin`, a simple content type, no node header) or a rebound name (a
/// foreign `Host`) is refused before its body is read, so no page can
/// append entries or propose writes; the node's own peers still get in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loopback_cluster_port_refuses_what_a_web_page_can_send() {
    let node = TestNode::start().await;
    // A forged admin key, as a page would post it with `fetch(..., {mode: "no-cors"})`.
    let command = br#"{"CreateKey":{"id":"0123456789ab","name":"backdoor","hash":"00","grants":{"scopes":["admin"]},"created_by":"page","at_ms":1}}"#;
    let rpc = |path: &str| format!("http://127.0.0.1:{}{path}", node.rpc_port);
    let http = reqwest::Client::new();
    let pages = [
        ("no headers at all", vec![]),
        ("a simple content type", vec![("content-type", "text/plain")]),
        (
            "an Origin",
            vec![
                ("origin", "http://evil.example"),
                ("content-type", "application/x-caxton-rpc"),
                ("x-caxton-node-id", "1"),
            ],
        ),
        (
            "a rebound Host",
            vec![
                ("host", "evil.example:8081"),
                ("content-type", "application/x-caxton-rpc"),
                ("x-caxton-node-id", "1"),
            ],
        ),
        ("no node header", vec![("content-type", "application/x-caxton-rpc")]),
    ];
    for path in ["/cluster/write", "/raft/append", "/raft/vote", "/cluster/join"] {
        for (what, headers) in &pages {
            let mut req = http.post(rpc(path)).body(command.to_vec());
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let status = req.send().await.unwrap().status().as_u16();
            assert!((400..500).contains(&status), "{path} with {what}: {status}");
        }
    }
    assert!(node.log().contains("refused a peer RPC"));
    let (_, keys) = node.get("/v1/keys").await;
    assert!(!keys.to_string().contains("backdoor"), "{keys}");
    // The node is unharmed and still takes writes.
    let (status, body) = node.post_toml("/v1/agents", &caxton_testing::echo_agent_toml("still-works", &[])).await;
    assert_eq!(status, 201, "{body}");
}

/// An admitted peer that trickles its body slower than its RPC kind allows
/// (a vote: 5 s) is answered with an error instead of holding the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_arrives_is_given_up_on() {
    let node = TestNode::start_with(NodeOptions {
        env: vec![("CAXTON_CLUSTER_SECRET".into(), SECRET.into())],
        ..Default::default()
    })
    .await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", node.rpc_port)).await.unwrap();
    let head = format!(
        "POST /raft/vote HTTP/1.1\r\n{PEER_HEADERS}Content-Length: 100\r\nx-caxton-cluster-secret: {SECRET}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&[0u8; 10]).await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(15), s.read(&mut buf)).await.expect("answered").unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
    assert!(started.elapsed() >= Duration::from_secs(4), "{:?}", started.elapsed());
}

/// Entries and snapshots bigger than one request: a follower that was down
/// while ~8 MB of tool modules were deployed catches up through
/// AppendEntries batches cut at 4 MiB, then through a snapshot streamed in
/// 1 MiB chunks, all over mutual TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_catches_up_on_batches_and_snapshots_larger_than_one_request() {
    let opts = ClusterOptions { voters: 3, tls: true, cluster_extra: "logs_to_keep = 0".into(), ..Default::default() };
    let mut cluster = TestCluster::start_with(3, opts).await;
    let leader = cluster.wait_leader().await;
    let lagger = (1..=3).find(|id| *id != leader).unwrap();

    cluster.node_mut(lagger).kill();
    let batch: Vec<String> = (0..6).map(|i| format!("big_{i}")).collect();
    for name in &batch {
        deploy_big(&cluster, leader, name).await;
    }
    cluster.node_mut(lagger).restart().await;
    eventually("the follower has every entry, more than one batch of bytes", Duration::from_secs(60), || {
        same_servers(&cluster, leader, lagger, batch.len())
    })
    .await;

    cluster.node_mut(lagger).kill();
    for name in ["bigger_0", "bigger_1"] {
        deploy_big(&cluster, leader, name).await;
    }
    cluster.snapshot_and_purge(leader).await;
    cluster.node_mut(lagger).restart().await;
    eventually("the follower installed the multi-chunk snapshot", Duration::from_secs(60), || {
        same_servers(&cluster, leader, lagger, batch.len() + 2)
    })
    .await;
}

/// A real tool module with ~1 MiB of custom section: valid WebAssembly,
/// distinct per name, large on the wire.
fn padded_module(name: &str) -> Vec<u8> {
    let mut module = std::fs::read(caxton_testing::repo_path("examples/mcp/json_query/json_query.wasm")).unwrap();
    let mut payload = vec![name.len() as u8];
    payload.extend(name.as_bytes());
    payload.extend(std::iter::repeat_n(0x5a, 1 << 20));
    let mut len = payload.len();
    module.push(0); // a custom section
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        module.push(if len == 0 { byte } else { byte | 0x80 });
        if len == 0 {
            break;
        }
    }
    module.extend(payload);
    module
}

async fn deploy_big(cluster: &TestCluster, on: u64, name: &str) {
    use base64::Engine;
    let manifest = format!("name = \"{name}\"\nversion = \"1.0.0\"\n");
    let module = base64::engine::general_purpose::STANDARD.encode(padded_module(name));
    let body = serde_json::json!({"manifest": manifest, "module": module});
    let (status, answer) = cluster.node(on).post_json("/v1/mcp-servers", body).await;
    assert_eq!(status, 201, "{name}: {answer}");
}

/// Whether `follower` lists the same `n` tool servers (names and module
/// hashes) as `leader`.
async fn same_servers(cluster: &TestCluster, leader: u64, follower: u64, n: usize) -> bool {
    let list = |id: u64| async move {
        let (_, l) = cluster.node(id).get("/v1/mcp-servers").await;
        let mut servers: Vec<(String, String)> = l["servers"]
            .as_array()
            .map(|s| s.iter().map(|s| (s["name"].to_string(), s["hash"].to_string())).collect())
            .unwrap_or_default();
        servers.sort();
        servers
    };
    let expected = list(leader).await;
    expected.len() == n && list(follower).await == expected
}
