//! Keys are replicated state: created on one node they work on every node,
//! revoked on one they stop everywhere, even while a voter is down; a node
//! relaying another node's token stream presents a credential for that one
//! message, never its caller's key.

use std::time::Duration;

use caxton_testing::{
    eventually, eventually_some, free_port, free_udp_port, keyed_client, ClusterOptions, NodeOptions, OpenAiStub,
    StubReply, TestCluster, TestNode, TEST_ADMIN_KEY,
};
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
    // stream (with the relaying node's credential for that message).
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

/// A proxy in front of one node's API that records the headers of every
/// request it forwards (and streams the answers back as they come).
struct RecordingProxy {
    port: u16,
    seen: std::sync::Arc<std::sync::Mutex<Vec<(String, reqwest::header::HeaderMap)>>>,
}

impl RecordingProxy {
    async fn start(target_port: u16) -> Self {
        use axum::body::Body;
        use axum::extract::{Request, State};
        type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, reqwest::header::HeaderMap)>>>;
        async fn forward(State((seen, target)): State<(Seen, u16)>, req: Request) -> axum::response::Response {
            let path = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
            seen.lock().unwrap().push((path.clone(), req.headers().clone()));
            let mut out =
                reqwest::Client::new().request(req.method().clone(), format!("http://127.0.0.1:{target}{path}"));
            for (k, v) in req.headers().iter().filter(|(k, _)| *k != "host") {
                out = out.header(k, v);
            }
            let body = axum::body::to_bytes(req.into_body(), 1 << 20).await.unwrap();
            let upstream = out.body(body).send().await.unwrap();
            let mut resp = axum::response::Response::builder().status(upstream.status());
            for (k, v) in upstream.headers() {
                resp = resp.header(k, v);
            }
            resp.body(Body::from_stream(upstream.bytes_stream())).unwrap()
        }
        let seen: Seen = Default::default();
        let app = axum::Router::new().fallback(forward).with_state((seen.clone(), target_port));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { port, seen }
    }
}

/// The relay carries no bearer token: node 1 streams an answer from node 2
/// (whose advertised API is a recording proxy), presenting a credential
/// that opens that message's stream alone, for a minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_presents_its_own_credential_never_the_callers_key() {
    let stub = OpenAiStub::start().await;
    stub.respond_with(|_| StubReply::streamed(&CHUNKS, Duration::from_millis(50)));
    let (gossip_1, gossip_2) = (free_udp_port(), free_udp_port());
    let (api_2, rpc_2) = (free_port(), free_port());
    let proxy = RecordingProxy::start(api_2).await;
    let member = |id: u64, gossip: u16, extra: String| {
        NodeOptions {
        admin_key: Some(TEST_ADMIN_KEY.into()),
        extra_config: "rate_limit_per_second = 0".into(),
        tables: stub.provider_config("stub", ""),
        cluster_extra: format!(
            "node_id = {id}\nbootstrap = \"{}\"\nvoters = 3\ngossip_interval_ms = 100\ndead_grace_ms = 1500\ngossip_listen = \"127.0.0.1:{gossip}\"\nseeds = [\"127.0.0.1:{gossip_1}\"]\n{extra}",
            id == 1
        ),
        ..Default::default()
    }
    };
    let one = TestNode::start_with(member(1, gossip_1, String::new())).await;
    let two = TestNode::start_with(NodeOptions {
        ports: Some((api_2, rpc_2)),
        ..member(2, gossip_2, format!("advertise_api = \"127.0.0.1:{}\"", proxy.port))
    })
    .await;
    eventually("two members", Duration::from_secs(30), || async {
        one.get("/v1/cluster/status").await.1["members"].as_array().is_some_and(|m| m.len() == 2)
    })
    .await;
    // An agent that node 2 runs.
    let name = eventually_some("an agent placed on node 2", Duration::from_secs(60), || async {
        for i in 0..20 {
            let name = format!("storyteller-{i}");
            let toml = format!("name = \"{name}\"\nprovider = \"stub\"\nsystem_prompt = \"You tell stories.\"\n");
            let (s, _) = one.post_toml("/v1/agents", &toml).await;
            assert!(s == 201 || s == 200, "{s}");
            if one.get(&format!("/v1/agents/{name}")).await.1["owner_node"] == 2 {
                return Some(name);
            }
        }
        None
    })
    .await;
    let token = one.create_key(json!({"name": "app", "scopes": ["invoke"]})).await;
    let app = keyed_client(&token);
    let body = json!({"model": name, "stream": true, "messages": [{"role": "user", "content": "a story"}]});
    let text = eventually_some("node 1 streams node 2's answer", Duration::from_secs(30), || async {
        let r = app.post(one.url("/v1/chat/completions")).json(&body).send().await.unwrap();
        let text = r.text().await.unwrap();
        text.contains("[DONE]").then_some(text)
    })
    .await;
    for chunk in CHUNKS {
        assert!(text.contains(&serde_json::to_string(chunk).unwrap()), "{chunk:?} in {text}");
    }
    let seen = proxy.seen.lock().unwrap().clone();
    let relays: Vec<_> = seen.iter().filter(|(path, _)| path.contains("/stream?local=true")).collect();
    assert!(
        !relays.is_empty(),
        "node 1 relayed through node 2's advertised API: {:?}",
        seen.iter().map(|s| &s.0).collect::<Vec<_>>()
    );
    for (path, headers) in &relays {
        assert!(headers.get("authorization").is_none(), "{path} carried a bearer token");
        let credential = headers["x-caxton-relay"].to_str().unwrap();
        assert!(!credential.contains(&token) && !credential.contains(TEST_ADMIN_KEY), "{credential}");
    }
    // The credential opens nothing but its own message's stream.
    let (path, headers) = relays[0].clone();
    let credential = headers["x-caxton-relay"].clone();
    let direct = |path: String| {
        let credential = credential.clone();
        async move {
            reqwest::Client::new()
                .get(format!("http://127.0.0.1:{api_2}{path}"))
                .header("x-caxton-relay", credential)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(direct(path.clone()).await, 200, "its own message");
    assert_eq!(direct("/v1/messages/another-message/stream?local=true".into()).await, 401);
    assert_eq!(direct(path.replace("/stream?local=true", "")).await, 401, "not the message itself");
    assert_eq!(direct("/v1/agents".into()).await, 401);
    drop(two);
}

/// Revoking a key never waits for every voter: with one voter down long
/// enough for gossip to forget it (a minute), a revocation on a node that
/// has just restarted (and so heard of the stopped voter only from the
/// record it kept) still commits, and the key stops working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_is_revoked_while_a_voter_is_down() {
    // Gossip forgets a silent node after `gossip_forget_ms` (a minute by default).
    let forget = Duration::from_secs(5);
    let opts = ClusterOptions {
        voters: 3,
        admin_key: Some(TEST_ADMIN_KEY.into()),
        cluster_extra: format!("gossip_forget_ms = {}", forget.as_millis()),
        ..Default::default()
    };
    let mut cluster = TestCluster::start_with(3, opts).await;
    let token = cluster.node(1).create_key(json!({"name": "leaked", "scopes": ["read"]})).await;
    let leaked = keyed_client(&token);
    for id in 1..=3 {
        let url = cluster.node(id).url("/v1/agents");
        eventually(&format!("the key works on node {id}"), Duration::from_secs(10), || async {
            leaked.get(&url).send().await.unwrap().status() == 200
        })
        .await;
    }
    // Every node has seen every voter advertise what it can apply.
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.node_mut(3).kill();
    tokio::time::sleep(forget + Duration::from_secs(3)).await;
    // Meanwhile the others report a voter they cannot hear (alerts page on it).
    let metrics = format!("http://127.0.0.1:{}/metrics", cluster.node(2).metrics_port);
    let text = reqwest::get(metrics).await.unwrap().text().await.unwrap();
    assert!(text.contains("caxton_cluster_voters{state=\"unreachable\"} 1"), "{text}");
    cluster.node_mut(1).kill();
    cluster.node_mut(1).restart().await;
    eventually("a leader among the two", Duration::from_secs(30), || async {
        cluster.node(1).get("/v1/cluster/status").await.1["leader"].is_u64()
    })
    .await;
    let (status, body) = cluster.node(1).delete("/v1/keys/leaked").await;
    assert_eq!(status, 204, "{body}");
    for id in 1..=2 {
        let url = cluster.node(id).url("/v1/agents");
        eventually(&format!("the revoked key is refused on node {id}"), Duration::from_secs(10), || async {
            leaked.get(&url).send().await.unwrap().status() == 401
        })
        .await;
    }
}
