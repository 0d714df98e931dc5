//! A node without an admin key (dev mode, `make run`) serves requests
//! without keys, but not to web pages: raw HTTP requests, written as a
//! browser would send them, from another origin or through a rebound DNS
//! name, are refused; the same request from a terminal works.

use std::time::Duration;

use caxton_testing::{agent_toml, TestNode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends one raw HTTP/1.1 request; returns the status and the whole answer.
async fn raw(node: &TestNode, request: String) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", node.api_port)).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, answer)
}

fn post(host: &str, headers: &[&str], content_type: Option<&str>, body: &str) -> String {
    let mut req =
        format!("POST /v1/agents HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    if let Some(ct) = content_type {
        req.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    for h in headers {
        req.push_str(&format!("{h}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_refuses_web_pages_and_rebound_hosts() {
    let node = TestNode::start().await;
    let local = format!("127.0.0.1:{}", node.api_port);
    let toml = agent_toml("from-a-page", "x");

    // A cross-origin `text/plain` POST: a CORS simple request, no preflight.
    let (s, answer) = raw(&node, post(&local, &["Origin: http://evil.example"], Some("text/plain"), &toml)).await;
    assert_eq!(s, 415, "{answer}");
    // The same with no type at all (a Blob body).
    let (s, answer) = raw(&node, post(&local, &["Origin: http://evil.example"], None, &toml)).await;
    assert_eq!(s, 415, "{answer}");
    // A form.
    let (s, _) = raw(&node, post(&local, &[], Some("application/x-www-form-urlencoded"), "name=x")).await;
    assert_eq!(s, 415);
    // A page on another origin, even with a proper type (after a preflight
    // it would not get, or with credentials it does not have).
    let (s, answer) = raw(&node, post(&local, &["Origin: http://evil.example"], Some("application/toml"), &toml)).await;
    assert_eq!(s, 403, "{answer}");
    assert!(answer.contains("origin-refused") && answer.contains("evil.example"), "{answer}");
    // `null` origins (sandboxed frames, file://) too.
    let (s, _) = raw(&node, post(&local, &["Origin: null"], Some("application/toml"), &toml)).await;
    assert_eq!(s, 403);
    // DNS rebinding: the page's own name now resolves to 127.0.0.1, so the
    // browser sends `Host: evil.example` and no cross-origin Origin at all.
    let rebound = format!("evil.example:{}", node.api_port);
    let (s, answer) = raw(&node, post(&rebound, &[], Some("application/toml"), &toml)).await;
    assert_eq!(s, 403, "{answer}");
    assert!(answer.contains("is not a loopback name"), "{answer}");
    let get = format!("GET /v1/agents HTTP/1.1\r\nHost: {rebound}\r\nConnection: close\r\n\r\n");
    assert_eq!(raw(&node, get).await.0, 403, "reads too: a rebound page must not read conversations");
    // Body-less admin POSTs from a page.
    let leave = format!(
        "POST /v1/cluster/leave HTTP/1.1\r\nHost: {local}\r\nOrigin: http://evil.example\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(raw(&node, leave).await.0, 403);
    assert!(node.agent_names().await.is_empty(), "nothing was deployed");

    // A terminal (no Origin) or a local page, on a loopback name, is served.
    let (s, answer) = raw(&node, post(&local, &[], Some("application/toml"), &toml)).await;
    assert_eq!(s, 201, "{answer}");
    let localhost = format!("localhost:{}", node.api_port);
    let page = ["Origin: http://localhost:3000"];
    let (s, answer) =
        raw(&node, post(&localhost, &page, Some("application/toml"), &agent_toml("from-local-page", "x"))).await;
    assert_eq!(s, 201, "{answer}");
    // Probes stay open whatever the Host.
    let health = format!("GET /health HTTP/1.1\r\nHost: {rebound}\r\nConnection: close\r\n\r\n");
    assert_eq!(raw(&node, health).await.0, 200);
}
