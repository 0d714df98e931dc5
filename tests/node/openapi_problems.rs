//! The OpenAPI document tells the truth about errors: every route in it is
//! provoked (a malformed body, a bad parameter, an unknown name, and, on a
//! node that has no leader, a write) and whatever it answers must be a
//! status the document lists for that route, with a problem type the
//! document names for that status.

use std::time::Duration;

use caxton_testing::{eventually, NodeOptions, TestNode};
use serde_json::{json, Value};

const UNKNOWN: &str = "no-such-name-42";

struct Operation {
    method: String,
    path: String,
    spec: Value,
}

fn operations(doc: &Value) -> Vec<Operation> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, spec) in item.as_object().unwrap() {
            if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                out.push(Operation { method: method.clone(), path: path.clone(), spec: spec.clone() });
            }
        }
    }
    out
}

impl Operation {
    fn has_body(&self) -> bool {
        self.spec.get("requestBody").is_some()
    }

    fn params(&self, place: &str) -> Vec<Value> {
        self.spec["parameters"].as_array().into_iter().flatten().filter(|p| p["in"] == place).cloned().collect()
    }

    /// The path with every parameter replaced by `value`.
    fn url(&self, value: &str) -> String {
        let mut path = self.path.clone();
        for p in self.params("path") {
            path = path.replace(&format!("{{{}}}", p["name"].as_str().unwrap()), value);
        }
        path
    }

    /// Checks an answer against the document; returns a complaint if it lies.
    fn check(&self, what: &str, status: u16, body: &Value) -> Option<String> {
        let documented = &self.spec["responses"][status.to_string()];
        if documented.is_null() {
            return Some(format!(
                "{} {} ({what}): answered {status}, which is not documented: {body}",
                self.method, self.path
            ));
        }
        let kind = body["type"].as_str()?;
        let slug = kind.rsplit('/').next().unwrap();
        let description = documented["description"].as_str().unwrap_or("");
        (!description.contains(&format!("`{slug}`"))).then(|| {
            format!(
                "{} {} ({what}): answered {status} `{slug}`, documented as \"{description}\"",
                self.method, self.path
            )
        })
    }
}

async fn call(node: &TestNode, method: &str, path: &str, content_type: &str, body: String) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
    node.send(method, path, content_type, body).await
}

async fn document(node: &TestNode) -> Vec<Operation> {
    let (status, doc) = node.get("/v1/openapi.json").await;
    assert_eq!(status, 200);
    let ops = operations(&doc);
    assert!(ops.len() > 30, "the document lists every route: {}", ops.len());
    ops
}

#[tokio::test]
async fn every_route_answers_malformed_input_and_unknown_names_as_documented() {
    let node = TestNode::start().await;
    let mut lies = Vec::new();
    for op in document(&node).await {
        if op.has_body() {
            let (status, body) =
                call(&node, &op.method, &op.url(UNKNOWN), "application/json", "{\"broken".into()).await;
            lies.extend(op.check("malformed body", status, &body));
            if !(400..500).contains(&status) {
                lies.push(format!("{} {}: a malformed body got {status}", op.method, op.path));
            }
        }
        for p in op.params("query") {
            if p["schema"]["type"] == "integer" || p["schema"]["type"] == "number" || p["schema"]["type"] == "boolean" {
                let name = p["name"].as_str().unwrap();
                let path = format!("{}?{name}=not-a-number", op.url(UNKNOWN));
                let (status, body) = call(&node, &op.method, &path, "application/json", "{}".into()).await;
                lies.extend(op.check(&format!("bad parameter {name}"), status, &body));
                if status != 400 {
                    lies.push(format!("{} {}: {name}=not-a-number got {status}, not 400", op.method, op.path));
                }
            }
        }
        let path_params = op.params("path");
        if path_params.iter().any(|p| p["schema"]["type"] == "integer") {
            let (status, body) = call(&node, &op.method, &op.url("abc"), "application/json", "{}".into()).await;
            lies.extend(op.check("non-numeric id", status, &body));
        } else if op.path == "/v1/topics/{pattern}/stream" {
            // A topic exists by being published to: its stream may start
            // before the first publication (and never ends), so an unknown
            // one is no error; a malformed pattern is.
            let (status, body) = call(&node, &op.method, &op.url("a..b"), "application/json", "{}".into()).await;
            lies.extend(op.check("malformed pattern", status, &body));
            if status != 400 {
                lies.push(format!("{} {}: a malformed pattern got {status}, not 400", op.method, op.path));
            }
        } else if !path_params.is_empty() {
            let body = match (op.method.as_str(), op.path.as_str()) {
                ("put", "/v1/agents/{name}") => format!("name = \"{UNKNOWN}\"\nsystem_prompt = \"x\"\n"),
                _ => "{}".into(),
            };
            let content_type = if op.path.starts_with("/v1/agents") { "application/toml" } else { "application/json" };
            let (status, answer) = call(&node, &op.method, &op.url(UNKNOWN), content_type, body).await;
            lies.extend(op.check("unknown name", status, &answer));
            if op.method != "post" && status != 404 && op.path != "/v1/memory/entities/{name}/neighbours" {
                lies.push(format!("{} {}: an unknown name got {status}, not 404: {answer}", op.method, op.path));
            }
        }
    }
    assert!(lies.is_empty(), "the document does not describe what the routes answer:\n{}", lies.join("\n"));
}

#[tokio::test]
async fn writes_on_a_node_without_a_leader_answer_503_as_documented() {
    // A node told never to found a cluster, with nobody to join: no leader,
    // ever. It serves its API after `leader_wait_ms` regardless.
    let node = TestNode::spawn_with(NodeOptions {
        cluster_extra: "bootstrap = \"false\"\nleader_wait_ms = 1000".into(),
        ..Default::default()
    });
    eventually("the API serves", Duration::from_secs(60), || async {
        node.http.get(node.url("/health")).send().await.is_ok_and(|r| r.status().is_success())
    })
    .await;
    let log = node.log();
    assert!(log.contains("waited=1s") && log.contains("no leader yet; serving anyway"), "{log}");
    let ops = document(&node).await;
    let module = base64_module();
    let writes: Vec<(&str, &str, &str, String)> = vec![
        ("post", "/v1/agents", "application/toml", "name = \"leaderless\"\nsystem_prompt = \"x\"\n".into()),
        (
            "post",
            "/v1/memory/relations",
            "application/json",
            json!({"from": "a", "to": "b", "relation_type": "r"}).to_string(),
        ),
        ("delete", "/v1/mcp-servers/{name}", "application/json", String::new()),
        ("post", "/v1/mcp-servers", "application/json", module),
    ];
    let answers = futures::future::join_all(writes.iter().map(|(method, path, content_type, body)| {
        let url = path.replace("{name}", UNKNOWN);
        let node = &node;
        async move { call(node, method, &url, content_type, body.clone()).await }
    }))
    .await;
    let mut lies = Vec::new();
    for ((method, path, _, _), (status, body)) in writes.iter().zip(answers) {
        let op = ops.iter().find(|o| o.method == *method && o.path == *path).expect("documented");
        lies.extend(op.check("no leader", status, &body));
        if status != 503 {
            lies.push(format!("{method} {path}: without a leader got {status}, not 503: {body}"));
        }
    }
    assert!(lies.is_empty(), "{}", lies.join("\n"));
}

/// A deploy body for the smallest example tool server.
fn base64_module() -> String {
    use base64::Engine;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/mcp/json_query");
    let manifest = std::fs::read_to_string(root.join("manifest.toml")).unwrap();
    let module = std::fs::read(root.join("json_query.wasm")).expect("run `make wasm` first");
    json!({"manifest": manifest, "module": base64::engine::general_purpose::STANDARD.encode(module)}).to_string()
}
