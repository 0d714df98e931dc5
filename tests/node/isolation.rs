//! What one key cannot do to another's work: take or replace its tool
//! servers, inherit the grants the operator gave a tool by taking its
//! name, call tools no agent it holds declares, read a message by reusing
//! its id, or, limited to some agents or workspaces, reach beyond them as
//! an admin (wider keys, whole-memory export, another workspace's revision).

use base64::Engine;
use caxton_testing::*;
use serde_json::{json, Value};

async fn keyed(tables: &str) -> TestNode {
    TestNode::start_with(NodeOptions {
        admin_key: Some(TEST_ADMIN_KEY.into()),
        extra_config: "rate_limit_per_second = 0".into(),
        tables: tables.into(),
        ..Default::default()
    })
    .await
}

fn example_module(name: &str) -> Vec<u8> {
    std::fs::read(repo_path(format!("examples/mcp/{name}/{name}.wasm"))).unwrap()
}

fn deploy_body(manifest: &str, module: &[u8]) -> Value {
    json!({"manifest": manifest, "module": base64::engine::general_purpose::STANDARD.encode(module)})
}

async fn post(client: &reqwest::Client, node: &TestNode, path: &str, body: Value) -> (u16, Value) {
    let r = client.post(node.url(path)).json(&body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn slug(problem: &Value) -> &str {
    problem["type"].as_str().unwrap_or("").rsplit('/').next().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_server_belongs_to_the_key_that_deployed_it() {
    // The operator granted the trusted `json_query` an environment variable.
    let node = keyed("[tools.policy.json_query]\nenv = [\"TOOL_REGION\"]\n").await;
    let team = |name: &str| json!({"name": name, "scopes": ["deploy", "read", "invoke"]});
    let (a, b) =
        (keyed_client(&node.create_key(team("team-a")).await), keyed_client(&node.create_key(team("team-b")).await));
    let module = example_module("json_query");
    let plain = "name = \"json_query\"\nversion = \"0.1.0\"\n";
    let asking = format!("{plain}[sandbox]\nenv = [\"TOOL_REGION\"]\n");

    // A deploy key taking the name does not inherit the operator's grants.
    let (s, p) = post(&a, &node, "/v1/mcp-servers", deploy_body(&asking, &module)).await;
    assert_eq!((s, slug(&p)), (422, "invalid-tool-server"), "{p}");
    assert!(p["extra"]["excesses"].to_string().contains("tools.policy.default.env"), "{p}");
    let (s, p) = post(&a, &node, "/v1/mcp-servers", deploy_body(plain, &module)).await;
    assert_eq!(s, 201, "{p}");
    let deployed_at = p["deployed_at_ms"].clone();

    // Another deploy key can neither replace it nor remove it.
    let (s, p) = post(&b, &node, "/v1/mcp-servers", deploy_body(plain, &module)).await;
    assert_eq!((s, slug(&p)), (403, "outside-key-grant"), "{p}");
    assert!(p["detail"].as_str().unwrap().contains("`team-a`"), "{p}");
    let r = b.delete(node.url("/v1/mcp-servers/json_query")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let (_, list) = node.get("/v1/mcp-servers").await;
    assert_eq!(list["servers"][0]["deployed_at_ms"], deployed_at, "team-a's server is untouched: {list}");

    // Its deployer replaces it; an admin (the operator) may take it over,
    // with the operator's grants, and remove it.
    let (s, _) = post(&a, &node, "/v1/mcp-servers", deploy_body(plain, &module)).await;
    assert_eq!(s, 201);
    let (s, p) = node.post_json("/v1/mcp-servers", deploy_body(&asking, &module)).await;
    assert_eq!(s, 201, "the operator's deploy gets the named policy: {p}");
    let r = a.delete(node.url("/v1/mcp-servers/json_query")).send().await.unwrap();
    assert_eq!(r.status(), 403, "now the operator's");
    assert_eq!(node.delete("/v1/mcp-servers/json_query").await.0, 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limited_key_calls_only_the_tools_its_agents_declare() {
    let node = keyed("").await;
    for name in ["json_query", "csv_parser"] {
        let manifest = std::fs::read_to_string(repo_path(format!("examples/mcp/{name}/manifest.toml"))).unwrap();
        let (s, p) = node.post_json("/v1/mcp-servers", deploy_body(&manifest, &example_module(name))).await;
        assert_eq!(s, 201, "{p}");
    }
    let (_, list) = node.get("/v1/mcp-servers").await;
    let tool_of = |server: &str| -> String {
        let s = list["servers"].as_array().unwrap().iter().find(|s| s["name"] == server).unwrap();
        s["tools"][0]["name"].as_str().unwrap().to_owned()
    };
    let (query, csv) = (tool_of("json_query"), tool_of("csv_parser"));
    let agent = |name: &str, tools: &[&str]| {
        format!("name = \"{name}\"\nprovider = \"echo\"\nsystem_prompt = \"x\"\ntools = {tools:?}\n")
    };
    assert_eq!(node.post_toml("/v1/agents", &agent("support-1", &["json_query"])).await.0, 201);
    assert_eq!(node.post_toml("/v1/agents", &agent("billing-1", &["csv_parser"])).await.0, 201);
    let support =
        keyed_client(&node.create_key(json!({"name": "support", "scopes": ["invoke"], "agents": ["support-*"]})).await);
    let call = |tool: String| {
        let support = support.clone();
        let url = node.url(&format!("/v1/tools/{tool}/call"));
        async move {
            let r = support.post(url).json(&json!({"arguments": {"data": "{}", "query": "."}})).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (s, p) = call(query.clone()).await;
    assert_eq!(s, 200, "a tool its agent declares: {p}");
    let (s, p) = call(csv.clone()).await;
    assert_eq!((s, slug(&p)), (403, "outside-key-grant"), "{p}");
    // The same over MCP: it lists and calls only its agents' tools.
    let r = support
        .post(node.url("/mcp"))
        .json(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {}}))
        .send()
        .await
        .unwrap();
    let session = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let rpc = |body: Value| {
        let (support, url, session) = (support.clone(), node.url("/mcp"), session.clone());
        async move {
            let r = support.post(url).header("mcp-session-id", session).json(&body).send().await.unwrap();
            r.json::<Value>().await.unwrap()
        }
    };
    let listed = rpc(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})).await;
    let names: Vec<&str> =
        listed["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, [query.as_str()], "{listed}");
    let called =
        rpc(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": csv, "arguments": {}}})).await;
    assert_eq!(called["error"]["code"], -32602, "{called}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_id_belongs_to_the_key_that_sent_it() {
    let node = keyed("").await;
    assert_eq!(node.post_toml("/v1/agents", &echo_agent_toml("billing-bot", &[])).await.0, 201);
    assert_eq!(node.post_toml("/v1/agents", &echo_agent_toml("support-bot", &[])).await.0, 201);
    let billing =
        keyed_client(&node.create_key(json!({"name": "billing", "scopes": ["invoke"], "agents": ["billing-*"]})).await);
    let support =
        keyed_client(&node.create_key(json!({"name": "support", "scopes": ["invoke"], "agents": ["support-*"]})).await);
    let secret = "invoice 1042: 12,400 EUR to ACME";
    let (s, first) =
        post(&billing, &node, "/v1/messages", json!({"to": "billing-bot", "content": secret, "id": "invoice-1042"}))
            .await;
    assert_eq!(s, 200, "{first}");
    // Another key reusing the id gets a conflict, never the first message or its reply.
    for to in ["support-bot", "billing-bot"] {
        let (s, p) =
            post(&support, &node, "/v1/messages", json!({"to": to, "content": "x", "id": "invoice-1042"})).await;
        assert!(s == 409 || s == 404, "to {to}: {s} {p}");
        assert!(!p.to_string().contains("12,400"), "to {to}: {p}");
    }
    let (s, p) =
        post(&support, &node, "/v1/messages", json!({"to": "support-bot", "content": "x", "id": "invoice-1042"})).await;
    assert_eq!((s, slug(&p)), (409, "message-id-taken"), "{p}");
    // The key that sent it retries idempotently.
    let (s, again) =
        post(&billing, &node, "/v1/messages", json!({"to": "billing-bot", "content": secret, "id": "invoice-1042"}))
            .await;
    assert_eq!(s, 200);
    assert_eq!(again["reply"]["id"], first["reply"]["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_key_limited_to_a_workspace_stays_inside_it() {
    let node = keyed("").await;
    let in_ws = |ws: &str| format!("{}\n[parameters]\nworkspace = \"{ws}\"\n", echo_agent_toml("helper", &[]));
    assert_eq!(node.post_toml("/v1/agents", &in_ws("finance")).await.0, 201);
    let (s, v) = node.send(reqwest::Method::PUT, "/v1/agents/helper", "application/toml", in_ws("support")).await;
    assert_eq!(s / 100, 2, "{v}");
    let admin = keyed_client(
        &node.create_key(json!({"name": "support-admin", "scopes": ["admin"], "workspaces": ["support"]})).await,
    );

    // No wider keys than itself.
    for (body, why) in [
        (json!({"name": "k1", "scopes": ["admin"]}), "workspaces"),
        (json!({"name": "k2", "scopes": ["invoke"], "workspaces": ["finance"]}), "`finance`"),
    ] {
        let (s, p) = post(&admin, &node, "/v1/keys", body).await;
        assert_eq!((s, slug(&p)), (403, "outside-key-grant"), "{p}");
        assert!(p["detail"].as_str().unwrap().contains(why), "{p}");
    }
    let (s, p) =
        post(&admin, &node, "/v1/keys", json!({"name": "k3", "scopes": ["invoke"], "workspaces": ["support"]})).await;
    assert_eq!(s, 201, "{p}");
    // No whole-memory export or import.
    let r = admin.get(node.url("/v1/memory/export")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let (_, export) = node.get("/v1/memory/export").await;
    let (s, p) = post(&admin, &node, "/v1/memory/import", export).await;
    assert_eq!(s, 403, "{p}");
    // Revision 1 lives in finance: not readable, not invocable, not restorable.
    assert_eq!(admin.get(node.url("/v1/agents/helper/revisions/1")).send().await.unwrap().status(), 403);
    let (s, p) =
        post(&admin, &node, "/v1/messages", json!({"to": "helper@1", "content": "what do you remember?"})).await;
    assert_eq!(s, 404, "{p}");
    let (s, p) = post(&admin, &node, "/v1/agents/helper/rollback", json!({})).await;
    assert_eq!((s, slug(&p)), (403, "outside-key-grant"), "{p}");
    let (_, record) = node.get("/v1/agents/helper").await;
    assert_eq!(record["revision"], 2, "still serving revision 2: {record}");
}

/// Cluster-wide views are the operator's: a limited key sees where its own
/// agents run, and not the agents directory or every agent's metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limited_key_reads_no_cluster_wide_view_of_other_agents() {
    let node = keyed("").await;
    for name in ["support-1", "billing-1"] {
        assert_eq!(node.post_toml("/v1/agents", &echo_agent_toml(name, &[])).await.0, 201);
    }
    let support =
        keyed_client(&node.create_key(json!({"name": "support", "scopes": ["read"], "agents": ["support-*"]})).await);
    let placement: Value = support.get(node.url("/v1/cluster/placement")).send().await.unwrap().json().await.unwrap();
    let shown = placement.to_string();
    assert!(shown.contains("support-1") && !shown.contains("billing-1"), "{placement}");
    for path in ["/v1/agents-dir", "/metrics"] {
        let r = support.get(node.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 403, "{path}");
    }
    // An unlimited read key still reads them.
    let reader = keyed_client(&node.create_key(json!({"name": "reader", "scopes": ["read"]})).await);
    for path in ["/v1/agents-dir", "/metrics", "/v1/cluster/placement"] {
        assert_eq!(reader.get(node.url(path)).send().await.unwrap().status(), 200, "{path}");
    }
}
