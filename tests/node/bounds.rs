//! Every request is bounded: time, headers, streams, memory writes, ids a
//! client may choose, and what a provider may answer. And the API speaks
//! TLS when given a certificate.

use std::time::{Duration, Instant};

use caxton_testing::{
    echo_agent_toml, eventually, keyed_client, NodeOptions, OpenAiStub, StubReply, TestNode, TEST_ADMIN_KEY,
};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn stub_agent(name: &str) -> String {
    format!("name = \"{name}\"\nprovider = \"stub\"\nsystem_prompt = \"x\"\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_timeout_is_applied() {
    let stub = OpenAiStub::start().await;
    stub.respond_with(|_| StubReply::text("late").after(Duration::from_secs(4)));
    let node = TestNode::start_with(NodeOptions {
        extra_config: "request_timeout_ms = 500".into(),
        tables: stub.provider_config("stub", "timeout_ms = 10000"),
        ..Default::default()
    })
    .await;
    assert_eq!(node.post_toml("/v1/agents", &stub_agent("slow")).await.0, 201);
    let started = Instant::now();
    let (s, p) = node.post_json("/v1/messages", json!({"to": "slow", "content": "hi", "timeout_ms": 60000})).await;
    assert_eq!(s, 408, "{p}");
    assert_eq!(p["type"], "https://caxton.dev/problems/request-timeout");
    assert!(p["detail"].as_str().unwrap().contains("request_timeout_ms"), "{p}");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    // The message was accepted before the wait ran out: it is still answered.
    let id = node.get("/v1/agents").await; // the node is healthy
    assert_eq!(id.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let node =
        TestNode::start_with(NodeOptions { extra_config: "header_read_timeout_ms = 300".into(), ..Default::default() })
            .await;
    let mut slow = tokio::net::TcpStream::connect(("127.0.0.1", node.api_port)).await.unwrap();
    slow.write_all(b"GET /v1/agents HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ").await.unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the connection was still open after 5s");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    // Others are served meanwhile and after (on a new connection: with a
    // 300 ms header deadline an idle pooled one may be closed as it is reused).
    let fresh = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    assert_eq!(fresh.get(node.url("/v1/agents")).send().await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_writes_are_bounded_after_embedding_not_only_before() {
    let node = TestNode::start().await;
    // 300 one-character observations: a ~1.5 KB body that would become a
    // ~600 KB command of vectors. Refused before any embedding happens.
    let many: Vec<String> = (0..300).map(|i| (b'a' + (i % 26) as u8).to_string()).collect();
    let (s, p) =
        node.post_json("/v1/memory/entities", json!({"name": "n", "entity_type": "t", "observations": many})).await;
    assert_eq!(s, 413, "{p}");
    assert_eq!(p["extra"]["limit"], "observations_per_request");
    assert_eq!(p["extra"]["max"], 256);
    // Few, but long: the command, not the count, is what is capped.
    let long: Vec<String> = (0..200).map(|_| "word ".repeat(1600)).collect();
    let body = json!({"name": "n", "entity_type": "t", "observations": long});
    let r = node.http.post(node.url("/v1/memory/entities")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 413);
    let p: Value = r.json().await.unwrap();
    assert!(["command_bytes", "observation_bytes"].contains(&p["extra"]["limit"].as_str().unwrap()), "{p}");
    let (s, p) = node.get(&format!("/v1/memory/search?q={}", "x".repeat(3000))).await;
    assert_eq!((s, p["extra"]["limit"].as_str()), (413, Some("query_bytes")), "{p}");
    assert_eq!(node.get("/v1/memory/search?q=x&limit=1000").await.0, 400);
    assert_eq!(node.get("/v1/memory/entities?limit=0").await.0, 400);
    // Nothing was stored.
    let (_, listed) = node.get("/v1/memory/entities").await;
    assert_eq!(listed["entities"], json!([]), "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cannot_squat_the_id_of_a_reply() {
    let node = TestNode::start().await;
    assert_eq!(node.post_toml("/v1/agents", &echo_agent_toml("echo", &["echo"])).await.0, 201);
    let (s, p) = node.post_json("/v1/messages", json!({"to": "echo", "content": "squat", "id": "order-1-reply"})).await;
    assert_eq!(s, 422, "{p}");
    assert_eq!(p["type"], "https://caxton.dev/problems/invalid-message-id");
    assert!(p["detail"].as_str().unwrap().contains("-reply"), "{p}");
    let (s, p) = node.post_json("/v1/messages", json!({"to": "echo", "content": "x", "id": "has space"})).await;
    assert_eq!(s, 422, "{p}");
    // The request the squatter aimed at is answered, once.
    let (s, ex) = node.post_json("/v1/messages", json!({"to": "echo", "content": "real", "id": "order-1"})).await;
    assert_eq!(s, 200, "{ex}");
    assert_eq!(ex["reply"]["id"], "order-1-reply");
    assert_eq!(ex["message"]["status"], "answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_answers_cannot_crash_a_node() {
    let stub = OpenAiStub::start().await;
    let node =
        TestNode::start_with(NodeOptions { tables: stub.provider_config("stub", ""), ..Default::default() }).await;
    assert_eq!(node.post_toml("/v1/agents", &stub_agent("fragile")).await.0, 201);
    let chunk = |delta: Value, finish: Value| json!({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    let hostile = [
        // Retry-After values that would panic Duration::from_secs_f64.
        StubReply::error(429, "slow down").with_header("retry-after", "-1"),
        StubReply::error(429, "slow down").with_header("retry-after", "NaN"),
        StubReply::error(503, "down").with_header("retry-after", "1e400"),
        // A tool-call index that would allocate without bound.
        StubReply::raw_stream(&[
            chunk(
                json!({"tool_calls": [{"index": 1_000_000_000_000u64, "id": "x", "function": {"name": "f", "arguments": "{}"}}]}),
                Value::Null,
            ),
            json!("[DONE]"),
        ]),
        // A stream cut off mid-answer.
        StubReply::raw_stream(&[chunk(json!({"content": "half an ans"}), Value::Null)]),
    ];
    for (i, reply) in hostile.into_iter().enumerate() {
        // Each attempt of a retried call gets the same hostile answer.
        let r = reply.clone();
        stub.respond_with(move |_| r.clone());
        let (s, ex) = node.post_json("/v1/messages", json!({"to": "fragile", "content": format!("try {i}")})).await;
        assert_eq!(s, 200, "case {i}: {ex}");
        assert_eq!(ex["reply"]["kind"], "error", "case {i}: {ex}");
    }
    assert_eq!(node.get("/health").await.0, 200, "still alive");
    assert!(!node.log().contains("panicked"), "{}", node.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_are_capped_per_key_and_freed_when_the_client_leaves() {
    let node = TestNode::start_with(NodeOptions {
        admin_key: Some(TEST_ADMIN_KEY.into()),
        extra_config: "max_streams_per_key = 2".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(node.post_toml("/v1/agents", &echo_agent_toml("echo", &["echo"])).await.0, 201);
    let (_, ex) = node.post_json("/v1/messages", json!({"to": "echo", "content": "x"})).await;
    let conversation = ex["message"]["conversation_id"].as_str().unwrap().to_owned();
    let url = node.url(&format!("/v1/conversations/{conversation}/stream"));
    let open = || async { keyed_client(TEST_ADMIN_KEY).get(&url).send().await.unwrap() };
    let first = open().await;
    let second = open().await;
    assert_eq!((first.status().as_u16(), second.status().as_u16()), (200, 200));
    let third = open().await;
    assert_eq!(third.status(), 429);
    assert!(third.headers().contains_key("retry-after"));
    let p: Value = third.json().await.unwrap();
    assert_eq!(p["type"], "https://caxton.dev/problems/too-many-streams");
    // Another key has its own allowance.
    let other = node.create_key(json!({"name": "other", "scopes": ["invoke"]})).await;
    assert_eq!(keyed_client(&other).get(&url).send().await.unwrap().status(), 200);
    drop(first);
    eventually("the slot of a closed stream is freed", Duration::from_secs(10), || async {
        open().await.status() == 200
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_speaks_tls_with_a_configured_certificate() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("api.crt"), dir.path().join("api.key"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let tls = format!("tls_cert_file = \"{}\"\ntls_key_file = \"{}\"", cert_path.display(), key_path.display());
    let node = TestNode::spawn_with(NodeOptions { extra_config: tls, ..Default::default() });
    let https = format!("https://localhost:{}", node.api_port);
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    eventually("the node answers over https", Duration::from_secs(30), || async {
        client.get(format!("{https}/ready")).send().await.is_ok_and(|r| r.status().is_success())
    })
    .await;
    let r = client.get(format!("{https}/v1/agents")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // Plain HTTP on the TLS port gets nowhere; an untrusting client refuses the certificate.
    assert!(node.http.get(node.url("/health")).send().await.is_err());
    assert!(reqwest::get(format!("{https}/health")).await.is_err());
    // The CLI trusts a private CA when told to.
    let out = std::process::Command::new(caxton_testing::caxton_bin())
        .args(["--server", &https, "--ca-cert", cert_path.to_str().unwrap(), "health"])
        .env_remove("CAXTON_API_KEY")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_lists_come_in_pages() {
    let node = TestNode::start().await;
    for name in ["alpha", "beta/with-slash", "gamma"] {
        let body = json!({"name": name, "entity_type": "t", "observations": []});
        assert_eq!(node.post_json("/v1/memory/entities", body).await.0, 201);
    }
    let (s, first) = node.get("/v1/memory/entities?limit=2").await;
    assert_eq!(s, 200);
    let names = |v: &Value| {
        v["entities"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(names(&first), ["alpha", "beta/with-slash"]);
    let next = first["next"].as_str().unwrap();
    let (_, second) = node.get(&format!("/v1/memory/entities?limit=2&after={}", urlencode(next))).await;
    assert_eq!(names(&second), ["gamma"]);
    assert!(second.get("next").is_none(), "{second}");
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_a_message_that_gets_no_reply_ends_at_once() {
    let node = TestNode::start().await;
    assert_eq!(node.post_toml("/v1/agents", &echo_agent_toml("echo", &["echo"])).await.0, 201);
    let (s, v) = node.post_json("/v1/messages", json!({"to": "echo", "content": "fyi", "kind": "notification"})).await;
    assert_eq!(s, 202, "{v}");
    let id = v["message"]["id"].as_str().unwrap();
    let r = node.http.get(node.url(&format!("/v1/messages/{id}/stream"))).send().await.unwrap();
    let body = tokio::time::timeout(Duration::from_secs(10), r.text()).await.expect("the stream ended").unwrap();
    assert!(body.contains("event: error") && body.contains("gets no reply"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_at_its_request_cap_sheds_load_with_503() {
    let stub = OpenAiStub::start().await;
    stub.respond_with(|_| StubReply::text("done").after(Duration::from_secs(2)));
    let node = TestNode::start_with(NodeOptions {
        extra_config: "max_concurrent_requests = 1".into(),
        tables: stub.provider_config("stub", ""),
        ..Default::default()
    })
    .await;
    assert_eq!(node.post_toml("/v1/agents", &stub_agent("slow")).await.0, 201);
    let busy = {
        let (http, url) = (node.http.clone(), node.url("/v1/messages"));
        tokio::spawn(async move { http.post(url).json(&json!({"to": "slow", "content": "hold"})).send().await })
    };
    eventually("the slow request holds the only slot", Duration::from_secs(10), || async {
        !stub.requests().is_empty()
    })
    .await;
    let r = node.http.get(node.url("/v1/agents")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["type"], "https://caxton.dev/problems/overloaded");
    assert_eq!(node.get("/health").await.0, 200, "probes are not shed");
    assert_eq!(busy.await.unwrap().unwrap().status(), 200);
    assert_eq!(node.get("/v1/agents").await.0, 200, "the slot is back");
}

/// One key cannot take every request slot of a node: its requests in
/// flight are capped (`server.max_requests_per_key`), and another key is
/// served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_holds_at_most_its_share_of_requests_in_flight() {
    let stub = OpenAiStub::start().await;
    stub.respond_with(|_| StubReply::text("slow answer").after(Duration::from_secs(3)));
    let node = TestNode::start_with(NodeOptions {
        admin_key: Some(TEST_ADMIN_KEY.into()),
        extra_config: "max_requests_per_key = 2\nrate_limit_per_second = 0".into(),
        tables: stub.provider_config("stub", "timeout_ms = 10000"),
        ..Default::default()
    })
    .await;
    assert_eq!(node.post_toml("/v1/agents", &stub_agent("slow")).await.0, 201);
    let greedy = keyed_client(&node.create_key(json!({"name": "greedy", "scopes": ["invoke", "read"]})).await);
    let other = keyed_client(&node.create_key(json!({"name": "other", "scopes": ["read"]})).await);
    let url = node.url("/v1/messages");
    let sends: Vec<_> = (0..2)
        .map(|i| {
            let (greedy, url) = (greedy.clone(), url.clone());
            tokio::spawn(async move {
                greedy
                    .post(url)
                    .json(&json!({"to": "slow", "content": format!("hi {i}")}))
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    eventually("both sends reach the provider", Duration::from_secs(10), || async { stub.requests().len() >= 2 }).await;
    let r = greedy.get(node.url("/v1/agents")).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["type"], "https://caxton.dev/problems/too-many-requests-in-flight", "{p}");
    assert!(p["detail"].as_str().unwrap().contains("server.max_requests_per_key"), "{p}");
    assert_eq!(other.get(node.url("/v1/agents")).send().await.unwrap().status(), 200, "another key is served");
    for s in sends {
        assert_eq!(s.await.unwrap(), 200);
    }
    assert_eq!(greedy.get(node.url("/v1/agents")).send().await.unwrap().status(), 200, "its slots are back");
}

/// Idle connections cannot exhaust a node's file descriptors: past
/// `server.max_connections` a new connection is closed at once, and
/// served again as soon as others go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_are_closed_at_once() {
    let node =
        TestNode::start_with(NodeOptions { extra_config: "max_connections = 8".into(), ..Default::default() }).await;
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(tokio::net::TcpStream::connect(("127.0.0.1", node.api_port)).await.unwrap());
    }
    // Give the server the moment it needs to accept them all.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut extra = tokio::net::TcpStream::connect(("127.0.0.1", node.api_port)).await.unwrap();
    let _ = extra.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), extra.read(&mut buf)).await.expect("closed, not left hanging");
    assert!(
        matches!(n, Ok(0) | Err(_)),
        "answered past the cap: {:?}",
        n.map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
    );
    assert!(node.log().contains("too many open connections"));
    drop(idle);
    eventually("served again once the idle connections are gone", Duration::from_secs(5), || async {
        node.get("/health").await.0 == 200
    })
    .await;
}

/// A node whose data volume is short of space refuses writes that grow the
/// state before Raft runs out of room, and still reads, deletes and
/// administers (so the space can be freed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_refused_while_the_data_volume_is_short_of_space() {
    // More free space asked for than any volume has: always short.
    let node = TestNode::start_with(NodeOptions {
        extra_config: "min_free_disk_mb = 1000000000".into(),
        ..Default::default()
    })
    .await;
    let (s, p) = node.post_toml("/v1/agents", &echo_agent_toml("echo", &[])).await;
    assert_eq!(s, 507, "{p}");
    assert_eq!(p["type"], "https://caxton.dev/problems/insufficient-storage");
    assert!(p["detail"].as_str().unwrap().contains("server.min_free_disk_mb"), "{p}");
    let (s, _) =
        node.post_json("/v1/memory/entities", json!({"name": "n", "entity_type": "t", "observations": []})).await;
    assert_eq!(s, 507);
    assert_eq!(node.get("/v1/agents").await.0, 200, "reads go on");
    assert_eq!(node.delete("/v1/agents/none").await.0, 404, "deletes go on");
    assert_eq!(node.post_json("/v1/keys", json!({"name": "ops", "scopes": ["read"]})).await.0, 201, "admin goes on");
}
