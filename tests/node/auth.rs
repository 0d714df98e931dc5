//! Every request proves who it is. The route test is generated from the
//! OpenAPI document: every operation must declare a scope (or be one of the
//! few open ones), and answers 401/403 to every credential that does not
//! hold it.

use std::time::Duration;

use caxton_testing::{
    cluster_pki, cluster_tls_config, echo_agent_toml, keyed_client, NodeOptions, TestNode, TEST_ADMIN_KEY,
};
use serde_json::{json, Value};

const UNKNOWN: &str = "no-such-name-42";
/// Routes anyone may call: probes and the API's own description.
const OPEN: &[&str] = &["/health", "/ready", "/v1/openapi.json", "/ui", "/ui/{file}"];

async fn keyed_node(extra: &str) -> TestNode {
    TestNode::start_with(NodeOptions {
        admin_key: Some(TEST_ADMIN_KEY.into()),
        extra_config: extra.into(),
        ..Default::default()
    })
    .await
}

/// What `operations` calls a route any valid key may call.
const ANY_KEY: &str = "any key";

struct Op {
    method: String,
    path: String,
    scope: Option<String>,
    has_body: bool,
}

fn operations(doc: &Value) -> Vec<Op> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, spec) in item.as_object().unwrap() {
            if !["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                continue;
            }
            let security =
                spec["security"].as_array().unwrap_or_else(|| panic!("{method} {path} declares no security"));
            // `{"bearer": []}`: any valid key, whatever its scopes.
            let scope = security.first().and_then(|s| {
                s["bearer"]
                    .as_array()
                    .map(|scopes| scopes.first().and_then(|x| x.as_str()).unwrap_or(ANY_KEY).to_owned())
            });
            out.push(Op {
                method: method.clone(),
                path: path.replace("{name}", UNKNOWN).replace("{id}", "42"),
                scope,
                has_body: spec.get("requestBody").is_some(),
            });
        }
    }
    out
}

async fn call(http: &reqwest::Client, node: &TestNode, op: &Op) -> (u16, reqwest::header::HeaderMap, Value) {
    let method = reqwest::Method::from_bytes(op.method.to_uppercase().as_bytes()).unwrap();
    let mut req = http.request(method, node.url(&op.path));
    if op.has_body {
        req = req.header("content-type", "application/json").body("{}");
    }
    let r = req.send().await.unwrap();
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    // An event stream that was let through never ends: its status says all.
    if headers.get("content-type").is_some_and(|t| t.as_bytes().starts_with(b"text/event-stream")) {
        return (status, headers, Value::Null);
    }
    (status, headers, r.json().await.unwrap_or(Value::Null))
}

fn assert_problem(what: &str, op: &Op, status: u16, body: &Value, expect: u16, slug: &str) {
    assert_eq!(status, expect, "{} {} with {what}: {body}", op.method, op.path);
    assert_eq!(body["type"], format!("https://caxton.dev/problems/{slug}"), "{} {} with {what}", op.method, op.path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_demands_its_scope_from_every_credential() {
    // No rate limit here: the test makes hundreds of calls per key.
    let node = keyed_node("rate_limit_per_second = 0").await;
    let doc: Value = reqwest::get(node.url("/v1/openapi.json")).await.unwrap().json().await.unwrap();
    let ops = operations(&doc);
    assert!(ops.len() >= 40, "{} operations", ops.len());

    let mut by_scope = std::collections::HashMap::new();
    for scope in ["admin", "deploy", "invoke", "memory:read", "memory:write", "read"] {
        let name = format!("only-{}", scope.replace(':', "-"));
        by_scope.insert(scope, node.create_key(json!({"name": name, "scopes": [scope]})).await);
    }
    let expired = node.create_key(json!({"name": "expired", "scopes": ["admin"], "expires_in": "1s"})).await;
    let revoked = node.create_key(json!({"name": "revoked", "scopes": ["admin"]})).await;
    assert_eq!(node.delete("/v1/keys/revoked").await.0, 204);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let wrong = "cxk_0123456789ab_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    let anonymous = reqwest::Client::new();
    for op in &ops {
        let Some(scope) = &op.scope else {
            assert!(OPEN.contains(&op.path.as_str()), "{} {} has no declared scope", op.method, op.path);
            continue;
        };
        let (s, headers, body) = call(&anonymous, &node, op).await;
        assert_problem("no key", op, s, &body, 401, "unauthenticated");
        assert_eq!(headers["www-authenticate"], r#"Bearer realm="caxton""#);
        assert_eq!(headers["content-type"], "application/problem+json");
        for (what, token, says) in [
            ("a wrong key", wrong, "not valid"),
            ("an expired key", &expired, "expired"),
            ("a revoked key", &revoked, "revoked"),
        ] {
            let (s, headers, body) = call(&keyed_client(token), &node, op).await;
            assert_problem(what, op, s, &body, 401, "unauthenticated");
            assert!(headers["www-authenticate"].to_str().unwrap().contains("invalid_token"));
            assert!(body["detail"].as_str().unwrap().contains(says), "{body}");
            assert!(!body.to_string().contains(token), "a problem never repeats the token");
        }
        if scope == ANY_KEY {
            for token in by_scope.values() {
                let (s, _, body) = call(&keyed_client(token), &node, op).await;
                assert_eq!(s, 200, "{} {} with any key: {body}", op.method, op.path);
            }
            continue;
        }
        let lacking = if scope == "read" { &by_scope["invoke"] } else { &by_scope["read"] };
        let (s, _, body) = call(&keyed_client(lacking), &node, op).await;
        assert_problem("a key without the scope", op, s, &body, 403, "missing-scope");
        assert_eq!(body["extra"]["required_scope"], scope.as_str(), "{body}");
    }
    // With the scope (or admin), the gate lets the request through: whatever
    // the handler makes of the empty body or unknown name, it is not 401/403.
    // Leaving the cluster goes last.
    let (mut rest, leave): (Vec<&Op>, Vec<&Op>) = ops.iter().partition(|o| o.path != "/v1/cluster/leave");
    rest.extend(leave);
    for op in rest {
        let Some(scope) = op.scope.as_ref().filter(|s| *s != ANY_KEY) else { continue };
        for token in [&by_scope[scope.as_str()], &by_scope["admin"]] {
            let (s, _, body) = call(&keyed_client(token), &node, op).await;
            assert!(s != 401 && s != 403, "{} {} with its scope `{scope}`: {s} {body}", op.method, op.path);
        }
    }
    // Tokens never reach the log.
    let log = node.log();
    for token in by_scope.values().chain([&expired, &revoked]) {
        assert!(!log.contains(token.as_str()), "a token was logged");
    }
    assert!(!log.contains(TEST_ADMIN_KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_created_listed_and_revoked_with_the_cli_and_shown_once() {
    let node = keyed_node("").await;
    let out = node.cli(&[
        "--json",
        "key",
        "create",
        "support-bot",
        "--scope",
        "invoke,read",
        "--agents",
        "support-*",
        "--expires",
        "30d",
        "--rate",
        "5",
        "--burst",
        "10",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    let token = created["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("cxk_") && token.len() > 50, "{token}");
    assert_eq!(created["scopes"], json!(["invoke", "read"]));
    assert_eq!(created["agents"], json!(["support-*"]));
    assert!(created["expires_at_ms"].as_i64().unwrap() > chrono::Utc::now().timestamp_millis() + 29 * 86_400_000);

    // The token is never shown again: not in the list, not in a GET.
    let listed = node.cli(&["key", "list"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains("support-bot") && listed.contains("active") && !listed.contains(&token), "{listed}");
    let (s, one) = node.get("/v1/keys/support-bot").await;
    assert_eq!(s, 200);
    assert!(one.get("token").is_none() && !one.to_string().contains(&token), "{one}");

    // The key works, with what it was given and no more.
    let ok = node.cli_as(Some(&token), &["agent", "list"]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let denied = node.cli_as(Some(&token), &["key", "list"]);
    assert!(!denied.status.success());
    assert!(String::from_utf8_lossy(&denied.stderr).contains("admin"), "{}", String::from_utf8_lossy(&denied.stderr));
    let none = node.cli_as(None, &["agent", "list"]);
    assert!(String::from_utf8_lossy(&none.stderr).contains("401"), "{}", String::from_utf8_lossy(&none.stderr));

    // A credentials file works too, per server.
    let creds = node.dir.path().join("credentials.toml");
    std::fs::write(&creds, format!("[servers]\n\"{}\" = \"{token}\"\n", node.url(""))).unwrap();
    let via_file = node.cli_as(None, &["--credentials", creds.to_str().unwrap(), "agent", "list"]);
    assert!(via_file.status.success(), "{}", String::from_utf8_lossy(&via_file.stderr));

    // Names are unique among live keys; a revoked key stops at once.
    let dup = node.cli(&["key", "create", "support-bot", "--scope", "read"]);
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));
    assert!(node.cli(&["key", "revoke", "support-bot"]).status.success());
    let after = node.cli_as(Some(&token), &["agent", "list"]);
    assert!(String::from_utf8_lossy(&after.stderr).contains("revoked"), "{}", String::from_utf8_lossy(&after.stderr));
    let reserved = node.cli(&["key", "create", "bootstrap-admin", "--scope", "read"]);
    assert!(
        String::from_utf8_lossy(&reserved.stderr).contains("reserved"),
        "{}",
        String::from_utf8_lossy(&reserved.stderr)
    );
    let bad = node.cli(&["key", "create", "x", "--scope", "everything"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("everything"), "{}", String::from_utf8_lossy(&bad.stderr));

    // Every authenticated write left an audit line naming key and scope, never the token.
    let log = node.log();
    let audit: Vec<&str> = log.lines().filter(|l| l.contains("caxton::audit")).collect();
    assert!(audit.iter().any(|l| l.contains("bootstrap-admin") && l.contains("admin") && l.contains("request_id")));
    assert!(!log.contains(&token));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_limited_to_support_agents_sees_and_messages_only_them() {
    let node = keyed_node("").await;
    for name in ["support-agent", "billing-agent"] {
        assert_eq!(node.post_toml("/v1/agents", &echo_agent_toml(name, &["help"])).await.0, 201);
    }
    let (s, billing_msg) =
        node.post_json("/v1/messages", json!({"to": "billing-agent", "content": "invoice 7", "id": "bill-1"})).await;
    assert_eq!(s, 200, "{billing_msg}");
    for (name, agent) in [("billing-secret", "billing-agent"), ("support-note", "support-agent")] {
        let body =
            json!({"name": name, "entity_type": "fact", "scope": "agent_only", "agent": agent, "observations": []});
        assert_eq!(node.post_json("/v1/memory/entities", body).await.0, 201);
    }
    let token = node
        .create_key(json!({"name": "support", "scopes": ["invoke", "read", "memory:read"], "agents": ["support-*"]}))
        .await;
    let support = keyed_client(&token);
    let get = |path: &str| {
        let (support, url) = (support.clone(), node.url(path));
        async move {
            let r = support.get(url).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let send = |body: Value| {
        let (support, url) = (support.clone(), node.url("/v1/messages"));
        async move {
            let r = support.post(url).json(&body).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };

    let (s, list) = get("/v1/agents").await;
    assert_eq!(s, 200);
    let names: Vec<&str> = list["agents"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["support-agent"]);
    assert_eq!(get("/v1/agents/billing-agent").await.0, 404);
    assert_eq!(get("/v1/agents/support-agent").await.0, 200);
    let (_, models) = get("/v1/models").await;
    assert_eq!(models["data"].as_array().unwrap().len(), 1, "{models}");

    assert_eq!(send(json!({"to": "billing-agent", "content": "refund me"})).await.0, 404);
    assert_eq!(send(json!({"to": "support-agent", "content": "hi"})).await.0, 200);
    assert_eq!(send(json!({"capability": "help", "content": "hi"})).await.0, 403, "billing also serves `help`");
    assert_eq!(send(json!({"to": "support-agent", "content": "hi", "sender": "billing-agent"})).await.0, 403);
    let conversation = billing_msg["message"]["conversation_id"].as_str().unwrap();
    let (s, _) = send(json!({"to": "support-agent", "content": "x", "conversation_id": conversation})).await;
    assert_eq!(s, 403, "no writing into another agent's conversation");
    assert_eq!(get("/v1/messages/bill-1").await.0, 404);
    assert_eq!(get(&format!("/v1/conversations/{conversation}")).await.0, 404);
    assert_eq!(get("/v1/messages/bill-1/stream").await.0, 404);
    let r = support
        .post(node.url("/v1/chat/completions"))
        .json(&json!({"model": "billing-agent", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // Agent-only memory: `?agent=` is a claim the key must back.
    for path in [
        "/v1/memory/entities/billing-secret?scope=agent_only&agent=billing-agent",
        "/v1/memory/entities?agent=billing-agent",
        "/v1/memory/search?q=secret&agent=billing-agent",
    ] {
        let (s, body) = get(path).await;
        assert_eq!(s, 403, "{path}: {body}");
        assert_eq!(body["type"], "https://caxton.dev/problems/outside-key-grant");
    }
    assert_eq!(get("/v1/memory/entities/support-note?scope=agent_only&agent=support-agent").await.0, 200);
    let (s, listed) = get("/v1/memory/entities").await;
    assert_eq!(s, 200);
    assert!(!listed.to_string().contains("billing-secret"), "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_limited_to_a_workspace_stays_in_it() {
    let node = keyed_node("").await;
    let in_ws =
        |name: &str, ws: &str| format!("{}\n[parameters]\nworkspace = \"{ws}\"\n", echo_agent_toml(name, &["x"]));
    assert_eq!(node.post_toml("/v1/agents", &in_ws("helper", "support")).await.0, 201);
    assert_eq!(node.post_toml("/v1/agents", &in_ws("ledger", "finance")).await.0, 201);
    let token = node
        .create_key(json!({"name": "ws", "scopes": ["deploy", "read", "invoke", "memory:read", "memory:write"], "workspaces": ["support"]}))
        .await;
    let ws = keyed_client(&token);
    let names: Value = ws.get(node.url("/v1/agents")).send().await.unwrap().json().await.unwrap();
    assert_eq!(names["agents"].as_array().unwrap().len(), 1, "{names}");
    let r = ws.post(node.url("/v1/messages")).json(&json!({"to": "ledger", "content": "x"})).send().await.unwrap();
    assert_eq!(r.status(), 404);
    // It deploys only into its workspace.
    let r = ws
        .post(node.url("/v1/agents"))
        .header("content-type", "application/toml")
        .body(in_ws("sneaky", "finance"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let memory = |ws_name: &str| json!({"name": "n", "entity_type": "t", "scope": "workspace", "workspace": ws_name, "observations": []});
    let r = ws.post(node.url("/v1/memory/entities")).json(&memory("finance")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = ws.post(node.url("/v1/memory/entities")).json(&memory("support")).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let global = json!({"name": "g", "entity_type": "t", "observations": []});
    let r = ws.post(node.url("/v1/memory/entities")).json(&global).send().await.unwrap();
    assert_eq!(r.status(), 403, "a limited key does not write global memory");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_over_its_rate_is_told_when_to_come_back() {
    let node = keyed_node("").await;
    let out = node.cli(&["--json", "key", "create", "slow", "--scope", "read", "--rate", "1", "--burst", "2"]);
    let token = serde_json::from_slice::<Value>(&out.stdout).unwrap()["token"].as_str().unwrap().to_owned();
    let slow = keyed_client(&token);
    let mut statuses = Vec::new();
    let mut retry = None;
    for _ in 0..4 {
        let r = slow.get(node.url("/v1/agents")).send().await.unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
            let p: Value = r.json().await.unwrap();
            assert_eq!(p["type"], "https://caxton.dev/problems/rate-limited");
        }
    }
    assert_eq!(&statuses[..2], [200, 200], "{statuses:?}");
    assert!(statuses[2..].contains(&429), "{statuses:?}");
    assert!(retry.is_some_and(|s| (1..=2).contains(&s)), "{retry:?}");
    // Other keys have their own budget.
    assert_eq!(node.get("/v1/agents").await.0, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(slow.get(node.url("/v1/agents")).send().await.unwrap().status(), 200, "refilled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_others_can_reach_needs_an_admin_key() {
    let mut node = TestNode::spawn_with(NodeOptions {
        env: vec![("CAXTON_SERVER_LISTEN".into(), "0.0.0.0:0".into())],
        ..Default::default()
    });
    let status = node.child.as_mut().unwrap().wait().unwrap();
    assert_eq!(status.code(), Some(2));
    let log = node.log();
    assert!(
        log.contains("server.listen") && log.contains("CAXTON_ADMIN_KEY") && log.contains("admin_key_file"),
        "{log}"
    );

    // Its cluster ports need TLS material (mutual TLS between nodes) and
    // the cluster secret (the gossip key) in the same way.
    let exposed_rpc = |extra: String| {
        TestNode::spawn_with(NodeOptions {
            admin_key: Some(TEST_ADMIN_KEY.into()),
            env: vec![("CAXTON_CLUSTER_RPC_LISTEN".into(), "0.0.0.0:0".into())],
            cluster_extra: extra,
            ..Default::default()
        })
    };
    let mut rpc = exposed_rpc(String::new());
    assert_eq!(rpc.child.as_mut().unwrap().wait().unwrap().code(), Some(2));
    let log = rpc.log();
    assert!(
        log.contains("cluster.rpc_listen")
            && log.contains("cluster.tls_cert_file")
            && log.contains("caxton cluster ca init"),
        "{log}"
    );
    let pki = tempfile::tempdir().unwrap();
    cluster_pki(pki.path(), [1]);
    let mut rpc = exposed_rpc(cluster_tls_config(pki.path(), 1));
    assert_eq!(rpc.child.as_mut().unwrap().wait().unwrap().code(), Some(2));
    let log = rpc.log();
    assert!(log.contains("cluster.rpc_listen") && log.contains("CAXTON_CLUSTER_SECRET"), "{log}");

    let mut short = TestNode::spawn_with(NodeOptions { admin_key: Some("short".into()), ..Default::default() });
    assert_eq!(short.child.as_mut().unwrap().wait().unwrap().code(), Some(2));
    let log = short.log();
    assert!(log.contains("CAXTON_ADMIN_KEY") && log.contains("24 characters") && !log.contains("short\""), "{log}");

    // The key may come from a file (a mounted Secret).
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), format!("{TEST_ADMIN_KEY}\n")).unwrap();
    let from_file = TestNode::start_with(NodeOptions {
        extra_config: format!("admin_key_file = \"{}\"", file.path().display()),
        ..Default::default()
    })
    .await;
    assert_eq!(from_file.get("/v1/agents").await.0, 401);
    let r = keyed_client(TEST_ADMIN_KEY).get(from_file.url("/v1/agents")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// The gate sees every method: on every documented route, with no key,
/// GET, HEAD, POST, PUT, PATCH, DELETE and OPTIONS never get a 2xx (the
/// probes aside) and never reach a handler: nothing is created, exported
/// or told. A method a route does not declare is 405 with `Allow`; a CORS
/// preflight is answered only for a configured origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_method_on_any_route_passes_the_gate_without_a_key() {
    let node = keyed_node("rate_limit_per_second = 0\nallowed_origins = [\"https://console.example.com\"]").await;
    let doc: Value = reqwest::get(node.url("/v1/openapi.json")).await.unwrap().json().await.unwrap();
    let before = state_of(&node).await;
    let anonymous = reqwest::Client::new();
    let methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
    let mut answered = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let url = node.url(
            &path
                .replace("{name}", UNKNOWN)
                .replace("{id}", "42")
                .replace("{revision}", "1")
                .replace("{action}", "pause")
                .replace("{file}", "app.js"),
        );
        for method in methods {
            let declared =
                item.get(method.to_ascii_lowercase()).is_some() || (method == "HEAD" && item.get("get").is_some());
            let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let mut req = anonymous.request(m, &url);
            if !["GET", "HEAD", "OPTIONS", "DELETE"].contains(&method) {
                req = req.header("content-type", "application/json").body(r#"{"name":"x","scopes":["admin"]}"#);
            }
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            answered += 1;
            if OPEN.contains(&path.as_str()) && declared {
                continue;
            }
            assert!(!(200..300).contains(&status), "{method} {path} without a key: {status}");
            if declared {
                assert_eq!(status, 401, "{method} {path} without a key");
            } else {
                assert_eq!(status, 405, "{method} {path} is not declared");
                assert!(r.headers().contains_key("allow"), "{method} {path}: no Allow header");
            }
        }
    }
    assert!(answered >= 7 * 40, "{answered}");
    assert_eq!(state_of(&node).await, before, "a request without a key changed something");

    // HEAD is GET for the gate: with a key that lacks the scope, 403; with it, 200.
    let reader = node.create_key(json!({"name": "reader", "scopes": ["read"]})).await;
    let r = keyed_client(&reader).head(node.url("/v1/keys/reader")).send().await.unwrap();
    assert_eq!(r.status(), 403, "HEAD /v1/keys/NAME needs admin, as GET does");
    let r = keyed_client(&reader).head(node.url("/v1/agents")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // CORS preflights: a configured origin is told the route's methods, another is refused.
    let preflight = |origin: &str| {
        anonymous
            .request(reqwest::Method::OPTIONS, node.url("/v1/agents"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization, content-type")
    };
    let r = preflight("https://console.example.com").send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["access-control-allow-origin"], "https://console.example.com");
    let allowed = r.headers()["access-control-allow-methods"].to_str().unwrap().to_owned();
    assert!(allowed.contains("POST") && allowed.contains("GET"), "{allowed}");
    assert_eq!(preflight("https://evil.example").send().await.unwrap().status(), 403);
    // The configured page then reads answers; no other page does.
    let r = keyed_client(TEST_ADMIN_KEY)
        .get(node.url("/v1/agents"))
        .header("origin", "https://console.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "https://console.example.com");
}

/// What an anonymous request could have changed or run, read as the admin.
async fn state_of(node: &TestNode) -> Vec<Value> {
    let mut out = Vec::new();
    for path in ["/v1/agents", "/v1/keys", "/v1/mcp-servers", "/v1/memory/entities"] {
        let (status, body) = node.get(path).await;
        assert_eq!(status, 200, "{path}: {body}");
        out.push(body);
    }
    out
}
