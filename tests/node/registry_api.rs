//! The agent registry through the real binary: REST and CLI.

use caxton_testing::*;
use reqwest::Method;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_list_get_update_delete_over_http() {
    let node = TestNode::start().await;

    let (s, body) = node.post_toml("/v1/agents", &agent_toml("alpha", "You are alpha.")).await;
    assert_eq!(s, 201, "{body}");
    assert_eq!(body["name"], "alpha");
    assert_eq!(body["revision"], 1);
    assert_eq!(body["created"], true);

    // Same definition again: accepted, no new revision.
    let (s, body) = node.post_toml("/v1/agents", &agent_toml("alpha", "You are alpha.")).await;
    assert_eq!((s, body["revision"].as_u64(), body["changed"].as_bool()), (200, Some(1), Some(false)));

    // JSON object form and {"toml": ...} form.
    let (s, body) = node
        .send(
            Method::POST,
            "/v1/agents",
            "application/json",
            serde_json::json!({"name": "beta", "capabilities": ["search", "echo"], "system_prompt": "You are beta."})
                .to_string(),
        )
        .await;
    assert_eq!(s, 201, "{body}");
    let (s, _) = node
        .send(
            Method::POST,
            "/v1/agents",
            "application/json",
            serde_json::json!({"toml": agent_toml("gamma", "You are gamma.")}).to_string(),
        )
        .await;
    assert_eq!(s, 201);

    let (s, page) = node.get("/v1/agents").await;
    assert_eq!(s, 200);
    let names: Vec<&str> = page["agents"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["alpha", "beta", "gamma"]);

    let (_, page) = node.get("/v1/agents?capability=search").await;
    assert_eq!(page["agents"].as_array().unwrap().len(), 1);
    assert_eq!(page["agents"][0]["name"], "beta");

    // Pagination.
    let (_, p1) = node.get("/v1/agents?limit=2").await;
    assert_eq!(p1["agents"].as_array().unwrap().len(), 2);
    assert_eq!(p1["next"], "beta");
    let (_, p2) = node.get("/v1/agents?limit=2&after=beta").await;
    assert_eq!(p2["agents"][0]["name"], "gamma");
    assert!(p2["next"].is_null());

    let (s, a) = node.get("/v1/agents/alpha").await;
    assert_eq!(s, 200);
    assert_eq!(a["state"], "running");
    assert_eq!(a["version"], "1.0.0");
    assert_eq!(a["owner_node"], 1);
    assert!(a["deployed_at"].as_str().unwrap().starts_with("20"));
    assert_eq!(a["spec"]["system_prompt"], "You are alpha.");

    // Update: a new version.
    let v2 = agent_toml("alpha", "You are alpha, v2.").replace("1.0.0", "2.0.0");
    let (s, body) = node.send(Method::PUT, "/v1/agents/alpha", "application/toml", v2).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["revision"], 2);
    let (_, a) = node.get("/v1/agents/alpha").await;
    assert_eq!(a["version"], "2.0.0");
    assert_eq!(a["versions"].as_array().unwrap().len(), 2);

    // Update of a missing agent, and a body naming another agent.
    let (s, p) = node.send(Method::PUT, "/v1/agents/nobody", "application/toml", agent_toml("nobody", "x")).await;
    assert_eq!((s, p["type"].as_str()), (404, Some("https://caxton.dev/problems/agent-not-found")));
    let (s, p) = node.send(Method::PUT, "/v1/agents/alpha", "application/toml", agent_toml("beta", "x")).await;
    assert_eq!((s, p["type"].as_str()), (400, Some("https://caxton.dev/problems/name-mismatch")));

    let (s, body) = node.delete("/v1/agents/alpha").await;
    assert_eq!(s, 200, "{body}");
    let (s, p) = node.get("/v1/agents/alpha").await;
    assert_eq!(s, 404);
    assert_eq!(p["type"], "https://caxton.dev/problems/agent-not-found");
    let (s, _) = node.delete("/v1/agents/alpha").await;
    assert_eq!(s, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_problem_json_with_stable_types() {
    let node =
        TestNode::start_with(NodeOptions { extra_config: "max_body_bytes = 4096".into(), ..Default::default() }).await;
    let check = |resp: reqwest::Response, status: u16, kind: &'static str| async move {
        assert_eq!(resp.status().as_u16(), status);
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
        let p: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(p["type"], format!("https://caxton.dev/problems/{kind}"), "{p}");
        assert_eq!(p["status"], status);
        assert!(!p["detail"].as_str().unwrap().is_empty());
    };
    let big = "x".repeat(10_000);
    let toml =
        |body: String| node.http.post(node.url("/v1/agents")).header("content-type", "application/toml").body(body);
    check(toml(big).send().await.unwrap(), 413, "payload-too-large").await;
    // A body without a type, or typed as a browser form or text, is what a
    // web page can send cross-origin without a preflight: refused.
    check(node.http.post(node.url("/v1/agents")).body("name = 1").send().await.unwrap(), 415, "unsupported-media-type")
        .await;
    check(node.http.get(node.url("/v1/nothing")).send().await.unwrap(), 404, "route-not-found").await;
    check(node.http.patch(node.url("/v1/agents")).send().await.unwrap(), 405, "method-not-allowed").await;
    check(
        node.http
            .post(node.url("/v1/agents"))
            .header("content-type", "application/json")
            .body("{")
            .send()
            .await
            .unwrap(),
        400,
        "bad-request",
    )
    .await;
    check(
        node.http.post(node.url("/v1/agents")).header("content-type", "image/png").body("x").send().await.unwrap(),
        415,
        "unsupported-media-type",
    )
    .await;
    check(toml("name = 1".into()).send().await.unwrap(), 422, "invalid-agent").await;
    check(node.http.get(node.url("/v1/agents?limit=0")).send().await.unwrap(), 400, "bad-request").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_echoed_and_logged() {
    let node =
        TestNode::start_with(NodeOptions { args: vec!["--log-format".into(), "json".into()], ..Default::default() })
            .await;
    let r = node.http.get(node.url("/v1/agents")).header("x-request-id", "trace-abc-123").send().await.unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-abc-123");
    let r = node.http.get(node.url("/v1/agents")).send().await.unwrap();
    let generated = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(generated.len(), 36, "a UUID: {generated}");
    let (s, _) = node.post_toml("/v1/agents", &agent_toml("traced", "x")).await;
    assert_eq!(s, 201);
    eventually("log lines carry the request id", std::time::Duration::from_secs(5), || {
        let log = node.log();
        async move {
            log.lines().any(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .map(|v| v["span"]["request_id"] == "trace-abc-123")
                    .unwrap_or(false)
            })
        }
    })
    .await;
    // Without a trace exporter, the fields only an exporter reads are not
    // recorded: a line says the method and path once.
    let log = node.log();
    let spans: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["span"]["request_id"] == "trace-abc-123")
        .map(|v| v["span"].clone())
        .collect();
    assert!(!spans.is_empty());
    for span in spans {
        assert_eq!(span["method"], "GET", "{span}");
        assert_eq!(span["path"], "/v1/agents", "{span}");
        let exporter_only: Vec<&String> =
            span.as_object().unwrap().keys().filter(|k| k.starts_with("otel.") || k.starts_with("http.")).collect();
        assert!(exporter_only.is_empty(), "fields for an exporter that is off: {exporter_only:?} in {span}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_covers_every_route() {
    let node = TestNode::start().await;
    let (s, doc) = node.get("/v1/openapi.json").await;
    assert_eq!(s, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    // Every route the server answers must be documented, with each method.
    for (path, methods) in [
        ("/v1/agents", &["get", "post"][..]),
        ("/v1/agents/{name}", &["get", "put", "delete"]),
        ("/v1/agents-dir", &["get"]),
        ("/v1/cluster/status", &["get"]),
        ("/v1/cluster/snapshot", &["post"]),
        ("/v1/openapi.json", &["get"]),
        ("/health", &["get"]),
        ("/ready", &["get"]),
    ] {
        let item = paths.get(path).unwrap_or_else(|| panic!("{path} missing from OpenAPI"));
        for m in methods {
            assert!(item.get(*m).is_some(), "{m} {path} missing from OpenAPI");
        }
    }
    // And every documented path answers something other than route-not-found.
    for path in paths.keys() {
        let concrete = path.replace("{name}", "someone").replace("{file}", "app.js");
        let r = node.http.get(node.url(&concrete)).send().await.unwrap();
        if r.status() == 404 {
            let p: serde_json::Value = r.json().await.unwrap();
            assert_ne!(p["type"], "https://caxton.dev/problems/route-not-found", "{path} documented but not routed");
        }
    }
    assert!(doc["components"]["schemas"]["Problem"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_drives_the_registry() {
    let node = TestNode::start().await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "one.toml", &agent_toml("cli-one", "One."));
    write(dir.path(), "two.toml", &agent_toml("cli-two", "Two."));

    let out = node.cli(&["agent", "deploy", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("cli-one revision 1 (created)"), "{}", stdout(&out));

    let out = node.cli(&["agent", "list"]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(text.starts_with("NAME"), "{text}");
    assert!(text.contains("cli-one") && text.contains("cli-two"));

    let out = node.cli(&["--json", "agent", "list"]);
    let list: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);

    let out = node.cli(&["agent", "get", "cli-one"]);
    assert!(stdout(&out).contains("state         running"), "{}", stdout(&out));

    let out = node.cli(&["agent", "remove", "cli-one"]);
    assert!(out.status.success());
    let out = node.cli(&["agent", "get", "cli-one"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("agent `cli-one` does not exist"), "{}", stderr(&out));

    // An invalid file: non-zero exit with the server's explanation, naming the file and line.
    write(dir.path(), "bad.toml", "name = \"Bad_Name\"\nsystem_prompt = \"x\"\n");
    let bad = dir.path().join("bad.toml");
    let out = node.cli(&["agent", "deploy", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("bad.toml:1:8: name: `Bad_Name` is not DNS-safe"), "{err}");

    let out = node.cli(&["health"]);
    assert!(out.status.success() && stdout(&out).starts_with("ok: node 1"));
    let out = node.cli(&["version"]);
    assert!(stdout(&out).contains(env!("CARGO_PKG_VERSION")));
    let out = node.cli(&["cluster", "status"]);
    assert!(stdout(&out).contains("leader 1"), "{}", stdout(&out));
    let out = node.cli(&["--json", "cluster", "status"]);
    let s: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(s["members"][0]["role"], "voter");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_reports_unreachable_server() {
    let out = std::process::Command::new(caxton_bin())
        .args(["--server", &format!("http://127.0.0.1:{}", free_port()), "agent", "list"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cannot reach the server"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_status_is_meaningful_on_one_node() {
    let node = TestNode::start().await;
    let (s, st) = node.get("/v1/cluster/status").await;
    assert_eq!(s, 200);
    assert_eq!(st["leader"], 1);
    assert!(st["term"].as_u64().unwrap() >= 1);
    let m = &st["members"][0];
    assert_eq!(m["id"], 1);
    assert_eq!(m["role"], "voter");
    assert_eq!(m["api_addr"], format!("127.0.0.1:{}", node.api_port));
    assert_eq!(m["rpc_addr"], format!("127.0.0.1:{}", node.rpc_port));
    assert!(m["matched_index"].as_u64().unwrap() >= 1);
    let (s, h) = node.get("/health").await;
    assert_eq!((s, h["status"].as_str()), (200, Some("ok")));
}
