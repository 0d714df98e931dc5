//! The RPC port answers a stranger from its headers alone, before reading a
//! body, and caps bodies per RPC kind for those it admits.

use std::time::Duration;

use caxton::testing::{NodeOptions, TestNode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "rpc-limits-secret";

/// Sends headers announcing `length` bytes of body, then only a few; returns
/// what the server answered, if it did within 5 s.
async fn announce(port: u16, path: &str, headers: &str, length: usize) -> Option<String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let head = format!("POST {path} HTTP/1.1\r\nHost: peer\r\nContent-Length: {length}\r\n{headers}\r\n");
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
        "POST /raft/vote HTTP/1.1\r\nHost: peer\r\nContent-Length: 100\r\nx-caxton-cluster-secret: {SECRET}\r\n\r\n"
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
