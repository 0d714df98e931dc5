//! Tools that live elsewhere: an MCP server over Streamable HTTP (made
//! with the official MCP Python SDK) registered in the node's config, and
//! a remote A2A agent (made with `a2a-sdk`) an agent calls as a tool;
//! credentials from the node's environment, hosts allowlisted, a server
//! that goes away failing its calls without failing the turn.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use caxton_testing::*;
use serde_json::{json, Value};

fn python() -> String {
    std::env::var("CAXTON_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// A Python server of the test's, killed when dropped.
struct Server(Child);

impl Server {
    fn start(script: &str, port: u16, token: &str) -> Self {
        let child = Command::new(python())
            .arg(repo_path(format!("tests/clients/{script}")))
            .arg(port.to_string())
            .arg(token)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run python (make test installs the SDKs and sets CAXTON_TEST_PYTHON)");
        Server(child)
    }

    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn listening(port: u16) {
    eventually("the Python server listens", Duration::from_secs(30), || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
    })
    .await;
}

fn stub_agent(name: &str, extra: &str) -> String {
    format!("name = \"{name}\"\nprovider = \"stub\"\nsystem_prompt = \"You are {name}.\"\n{extra}\n")
}

async fn ask(node: &TestNode, agent: &str, content: &str) -> Value {
    let (s, v) = node.post_json("/v1/messages", json!({"to": agent, "content": content, "timeout_ms": 60000})).await;
    assert_eq!(s, 200, "{v}");
    v
}

/// What the model was told its `n`th tool call returned.
fn tool_result(stub: &OpenAiStub, request: usize) -> String {
    let reqs = stub.requests();
    last_of_role(&reqs[request], "tool").unwrap()["content"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_uses_a_remote_mcp_server_and_survives_it_going_away() {
    let stub = OpenAiStub::start().await;
    let port = free_port();
    let mut server = Server::start("mcp_remote_server.py", port, "calc-secret");
    listening(port).await;
    let tables = format!(
        "{}\n[tools.remote.calc]\nurl = \"http://127.0.0.1:{port}/mcp\"\nbearer_token_env = \"CALC_TOKEN\"\ntimeout_ms = 5000\n",
        stub.provider_config("stub", "")
    );
    let node = TestNode::start_with(NodeOptions {
        tables,
        env: vec![("CALC_TOKEN".into(), "calc-secret".into())],
        ..Default::default()
    })
    .await;
    assert_eq!(node.post_toml("/v1/agents", &stub_agent("adder", "tools = [\"calc\"]")).await.0, 201);

    // Listed like any tool server, by the API and the CLI.
    let (s, servers) = node.get("/v1/mcp-servers").await;
    assert_eq!(s, 200);
    let calc = servers["servers"].as_array().unwrap().iter().find(|s| s["name"] == "calc").cloned().unwrap();
    let mut tools: Vec<&str> = calc["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    tools.sort();
    assert_eq!(tools, ["add", "shout"], "{calc}");
    assert_eq!(calc["remote"]["available"], true, "{calc}");
    let out = node.cli(&["mcp", "list"]);
    assert!(out.status.success() && stdout(&out).contains("calc"), "{}{}", stdout(&out), stderr(&out));

    // `/mcp` clients see its tools beside the deployed ones.
    let http = reqwest::Client::new();
    let rpc = |body: Value, session: Option<String>| {
        let mut req = http
            .post(node.url("/mcp"))
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(s) = session {
            req = req.header("mcp-session-id", s);
        }
        req.send()
    };
    let hello = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}});
    let opened = rpc(hello, None).await.unwrap();
    let session = opened.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let listed: Value = rpc(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}), Some(session))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> =
        listed["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"add") && names.contains(&"shout"), "{listed}");

    // Called directly, and by an agent's turn.
    let (s, called) = node.post_json("/v1/tools/shout/call", json!({"arguments": {"text": "hi"}})).await;
    assert_eq!(s, 200, "{called}");
    assert_eq!(called["content"][0]["text"], "HI", "{called}");
    stub.script([StubReply::tool_call("add", json!({"a": 2, "b": 40})), StubReply::text("it is 42")]);
    let v = ask(&node, "adder", "what is 2 + 40?").await;
    assert_eq!(v["reply"]["content"], "it is 42", "{v}");
    assert_eq!(stub.requests()[0]["tools"].as_array().unwrap().len(), 2, "both remote tools offered");
    assert_eq!(tool_result(&stub, 1), "42");

    // The server goes away: the call fails with its name, the turn does not.
    server.stop();
    stub.script([StubReply::tool_call("add", json!({"a": 1, "b": 1})), StubReply::text("the calculator is down")]);
    let v = ask(&node, "adder", "what is 1 + 1?").await;
    assert_eq!(v["reply"]["kind"], "response", "{v}");
    assert_eq!(v["reply"]["content"], "the calculator is down", "{v}");
    let told = tool_result(&stub, 3);
    assert!(told.contains("tool server `calc` is unavailable"), "{told}");
    let (s, p) = node.post_json("/v1/tools/add/call", json!({"arguments": {"a": 1, "b": 2}})).await;
    assert_eq!((s, p["type"].as_str()), (502, Some("https://caxton.dev/problems/tool-server-unavailable")), "{p}");
    assert!(p["detail"].as_str().unwrap().contains("`calc` is unavailable"), "{p}");
    let (_, servers) = node.get("/v1/mcp-servers").await;
    let calc = servers["servers"].as_array().unwrap().iter().find(|s| s["name"] == "calc").cloned().unwrap();
    assert_eq!(calc["remote"]["available"], false, "{calc}");

    // Back on another process (a new session): calls work again.
    let _back = Server::start("mcp_remote_server.py", port, "calc-secret");
    listening(port).await;
    let (s, called) = node.post_json("/v1/tools/add/call", json!({"arguments": {"a": 20, "b": 22}})).await;
    assert_eq!((s, called["content"][0]["text"].as_str()), (200, Some("42")), "{called}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_calls_a_remote_a2a_agent_on_an_allowed_host_only() {
    let stub = OpenAiStub::start().await;
    let port = free_port();
    let _remote = Server::start("a2a_remote_agent.py", port, "remote-secret");
    listening(port).await;
    let tables = format!(
        "{}\n[a2a]\nallowed_hosts = [\"127.0.0.1:{port}\"]\n[a2a.credentials.\"127.0.0.1:{port}\"]\nbearer_token_env = \"REMOTE_TOKEN\"\n",
        stub.provider_config("stub", "")
    );
    let node = TestNode::start_with(NodeOptions {
        tables,
        env: vec![("REMOTE_TOKEN".into(), "remote-secret".into())],
        ..Default::default()
    })
    .await;
    let allowed =
        format!("[[a2a]]\nname = \"remote_echo\"\ncard = \"http://127.0.0.1:{port}/.well-known/agent-card.json\"\n");
    assert_eq!(node.post_toml("/v1/agents", &stub_agent("caller", &allowed)).await.0, 201);
    // The same agent by another name of the host: not on the allowlist.
    let other =
        format!("[[a2a]]\nname = \"remote_echo\"\ncard = \"http://localhost:{port}/.well-known/agent-card.json\"\n");
    assert_eq!(node.post_toml("/v1/agents", &stub_agent("stranger", &other)).await.0, 201);

    stub.script([
        StubReply::tool_call("remote_echo", json!({"message": "ping"})),
        StubReply::text("it said ping back"),
    ]);
    let v = ask(&node, "caller", "ask the remote agent").await;
    assert_eq!(v["reply"]["content"], "it said ping back", "{v}");
    let offered = &stub.requests()[0]["tools"];
    assert!(offered.as_array().unwrap().iter().any(|t| t["function"]["name"] == "remote_echo"), "{offered}");
    assert_eq!(tool_result(&stub, 1), "remote says: ping");

    stub.script([StubReply::tool_call("remote_echo", json!({"message": "ping"})), StubReply::text("refused")]);
    let v = ask(&node, "stranger", "ask the remote agent").await;
    assert_eq!(v["reply"]["content"], "refused", "{v}");
    let told = tool_result(&stub, 3);
    assert!(told.contains(&format!("host `localhost:{port}` is not in this node's a2a.allowed_hosts")), "{told}");

    // A definition naming a card that is no URL is refused with its line.
    let bad = stub_agent("broken", "[[a2a]]\nname = \"x\"\ncard = \"not a url\"\n");
    let (s, p) = node.post_toml("/v1/agents", &bad).await;
    assert_eq!(s, 422, "{p}");
    assert!(p.to_string().contains("a2a.card"), "{p}");
}
