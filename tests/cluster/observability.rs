//! A real Prometheus (Debian's `prometheus`, installed by `make test`)
//! scrapes a three-node cluster's metrics listeners, and the shipped
//! Prometheus files pass `promtool`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use caxton_testing::*;

/// A Prometheus server of the test's own, stopped on drop.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(targets: &[String]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: caxton\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("run prometheus (Debian's package; `make test` installs it)");
        Self { child, port, _dir: dir }
    }

    /// The result vector of an instant query (empty while Prometheus is
    /// not up or has no data yet).
    async fn query(&self, promql: &str) -> Vec<serde_json::Value> {
        let url = format!("http://127.0.0.1:{}/api/v1/query", self.port);
        let Ok(r) = reqwest::Client::new().get(url).query(&[("query", promql)]).send().await else { return vec![] };
        let body: serde_json::Value = r.json().await.unwrap_or_default();
        body["data"]["result"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn value(sample: &serde_json::Value) -> f64 {
    sample["value"][1].as_str().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_every_node_and_reads_leaders_and_message_histograms() {
    let cluster = TestCluster::start(3).await;
    let node = cluster.node(1);
    deploy(node, &echo_agent_toml("metered", &[])).await;
    for i in 0..5 {
        let reply = ask(node, "metered", &format!("ping {i}")).await;
        assert!(reply["reply"]["content"].as_str().unwrap_or_default().contains("ping"), "{reply}");
    }
    let targets: Vec<String> = cluster.running().map(|(_, n)| format!("127.0.0.1:{}", n.metrics_port)).collect();
    let prometheus = Prometheus::start(&targets);

    eventually("Prometheus scrapes all three nodes", Duration::from_secs(60), || async {
        let up = prometheus.query("up").await;
        up.len() == 3 && up.iter().all(|s| value(s) == 1.0)
    })
    .await;
    eventually("every node reports a leader", Duration::from_secs(30), || async {
        let has = prometheus.query("caxton_raft_has_leader").await;
        has.len() == 3 && has.iter().all(|s| value(s) == 1.0)
    })
    .await;
    let leaders = prometheus.query("sum(caxton_raft_is_leader)").await;
    assert_eq!(leaders.first().map(value), Some(1.0), "exactly one leader: {leaders:?}");
    eventually("the message histogram counts the five messages", Duration::from_secs(30), || async {
        let n = prometheus.query("sum(caxton_message_processing_duration_seconds_count{agent=\"metered\"})").await;
        n.first().map(value) == Some(5.0)
    })
    .await;
    let http = prometheus
        .query("sum(caxton_http_request_duration_seconds_count{route=\"/v1/messages\",method=\"POST\",status=\"200\"})")
        .await;
    assert_eq!(http.first().map(value), Some(5.0), "requests by route template: {http:?}");
    let rss = prometheus.query("process_resident_memory_bytes").await;
    assert!(rss.len() == 3 && rss.iter().all(|s| value(s) > 0.0), "process metrics: {rss:?}");
    let members = prometheus.query("caxton_cluster_members{role=\"voter\"}").await;
    assert!(members.iter().all(|s| value(s) == 3.0), "{members:?}");
    // Every node hears every voter, and knows its free space.
    let reachable = prometheus.query("caxton_cluster_voters{state=\"reachable\"}").await;
    assert!(reachable.len() == 3 && reachable.iter().all(|s| value(s) == 3.0), "{reachable:?}");
    let unreachable = prometheus.query("caxton_cluster_voters{state=\"unreachable\"}").await;
    assert!(unreachable.iter().all(|s| value(s) == 0.0), "{unreachable:?}");
    let free = prometheus.query("caxton_data_volume_free_bytes").await;
    assert!(free.len() == 3 && free.iter().all(|s| value(s) > 0.0), "{free:?}");
    let applied = prometheus.query("caxton_raft_apply_duration_seconds_count").await;
    assert!(applied.len() == 3 && applied.iter().all(|s| value(s) > 0.0), "every replica applies: {applied:?}");
    // A snapshot's duration and size.
    assert_eq!(node.post_json("/v1/cluster/snapshot", serde_json::json!({})).await.0, 200);
    let exposition = reqwest::get(format!("http://127.0.0.1:{}/metrics", node.metrics_port)).await.unwrap();
    let exposition = exposition.text().await.unwrap();
    assert!(metric_value(&exposition, "caxton_raft_snapshot_bytes", &[]) > Some(0.0), "{exposition}");
    assert_eq!(metric_value(&exposition, "caxton_raft_snapshot_duration_seconds_count", &[]), Some(1.0));
}

#[test]
fn the_shipped_prometheus_configuration_and_alert_rules_pass_promtool() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus");
    for args in [
        vec!["check", "config", "prometheus.yml"],
        vec!["check", "rules", "alerts.yml"],
        vec!["test", "rules", "alerts_test.yml"],
    ] {
        let out = Command::new("promtool").args(&args).current_dir(&dir).output().expect("run promtool");
        assert!(out.status.success(), "promtool {args:?}:\n{}\n{}", stdout(&out), stderr(&out));
    }
}

/// One span as an OTLP receiver decodes it.
#[derive(Debug, Clone)]
struct ReceivedSpan {
    node: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
    attributes: std::collections::HashMap<String, String>,
    /// Names of the span's events.
    events: Vec<String>,
    /// (trace id, span id) of each linked span.
    links: Vec<(String, String)>,
}

/// An OTLP/HTTP trace receiver: decodes the protobuf export requests.
struct Collector {
    spans: std::sync::Arc<std::sync::Mutex<Vec<ReceivedSpan>>>,
    endpoint: String,
}

impl Collector {
    async fn start() -> Self {
        use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
        use prost::Message;
        let spans: std::sync::Arc<std::sync::Mutex<Vec<ReceivedSpan>>> = Default::default();
        let sink = spans.clone();
        let receive = move |body: axum::body::Bytes| {
            let sink = sink.clone();
            async move {
                let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export request");
                let text = |v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>| {
                    use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
                    match v.as_ref().and_then(|v| v.value.as_ref()) {
                        Some(V::StringValue(s)) => s.clone(),
                        Some(V::IntValue(i)) => i.to_string(),
                        Some(V::BoolValue(b)) => b.to_string(),
                        Some(V::DoubleValue(d)) => d.to_string(),
                        other => format!("{other:?}"),
                    }
                };
                let mut out = sink.lock().unwrap();
                for rs in request.resource_spans {
                    let attrs = rs.resource.map(|r| r.attributes).unwrap_or_default();
                    let node = attrs
                        .iter()
                        .find(|a| a.key == "service.instance.id")
                        .map(|a| text(&a.value))
                        .unwrap_or_default();
                    for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
                        out.push(ReceivedSpan {
                            node: node.clone(),
                            name: span.name,
                            trace_id: hex(&span.trace_id),
                            span_id: hex(&span.span_id),
                            parent: hex(&span.parent_span_id),
                            attributes: span.attributes.iter().map(|a| (a.key.clone(), text(&a.value))).collect(),
                            events: span.events.into_iter().map(|e| e.name).collect(),
                            links: span.links.iter().map(|l| (hex(&l.trace_id), hex(&l.span_id))).collect(),
                        });
                    }
                }
                ExportTraceServiceResponse::default().encode_to_vec()
            }
        };
        let app = axum::Router::new().route("/v1/traces", axum::routing::post(receive));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { spans, endpoint }
    }

    fn trace(&self, trace_id: &str) -> Vec<ReceivedSpan> {
        self.spans.lock().unwrap().iter().filter(|s| s.trace_id == trace_id).cloned().collect()
    }

    fn named(&self, node: &str, name: &str) -> Vec<ReceivedSpan> {
        self.spans.lock().unwrap().iter().filter(|s| s.node == node && s.name == name).cloned().collect()
    }
}

/// Sends a request message to `to` through `node` with this W3C
/// `traceparent` and waits for its answer; the HTTP status.
async fn send_traced(node: &TestNode, traceparent: String, to: &str, content: &str) -> reqwest::StatusCode {
    let body = serde_json::json!({"to": to, "content": content, "timeout_ms": 30000});
    let r = node.http.post(node.url("/v1/messages")).header("traceparent", traceparent).json(&body).send().await;
    r.unwrap().status()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Threads named by OpenTelemetry's batch span processor in process `pid`.
fn exporter_threads(pid: u32) -> usize {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("OpenTelemetry"))
        .count()
}

/// A message sent to node 1 for an agent node 2 runs is one trace: the
/// caller's `traceparent` → the request on node 1 → `invoke_agent` on
/// node 2 → `chat` with its GenAI attributes, parents intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_is_one_trace_across_the_nodes_that_handle_it() {
    let collector = Collector::start().await;
    let stub = caxton_testing::OpenAiStub::start().await;
    // An agent told to ask the helper does, once; everyone else answers.
    stub.respond_with(|req| {
        let asks = req["messages"][0]["content"].as_str().is_some_and(|p| p.contains("ask the helper"));
        let asked = req["messages"].as_array().unwrap().iter().any(|m| m["role"] == "tool");
        if asks && !asked {
            return caxton_testing::StubReply::tool_call(
                "ask_agent",
                serde_json::json!({"agent": "quiet-helper", "message": "help"}),
            );
        }
        caxton_testing::StubReply::text("traced answer")
    });
    let env = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), collector.endpoint.clone()),
        ("OTEL_BSP_SCHEDULE_DELAY".to_owned(), "100".to_owned()),
    ];
    let opts = ClusterOptions { voters: 3, env, tables: stub.provider_config("stub", ""), ..Default::default() };
    let cluster = TestCluster::start_with(2, opts).await;
    let entry = cluster.node(1);
    for i in 0..12 {
        let agent = format!("name = \"traced-{i}\"\nprovider = \"stub\"\nsystem_prompt = \"x\"\n");
        assert_eq!(entry.post_toml("/v1/agents", &agent).await.0, 201);
    }
    let remote = eventually_some("an agent running on node 2", Duration::from_secs(30), || async {
        for i in 0..12 {
            let name = format!("traced-{i}");
            let (_, a) = cluster.node(2).get(&format!("/v1/agents/{name}")).await;
            if a["owner_node"] == 2 && a["state"] == "running" {
                return Some(name);
            }
        }
        None
    })
    .await;

    let (trace_id, caller_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    assert_eq!(send_traced(entry, format!("00-{trace_id}-{caller_span}-01"), &remote, "follow me").await, 200);
    let spans = eventually_some("the trace's spans from both nodes", Duration::from_secs(30), || async {
        let spans = collector.trace(trace_id);
        let has = |node: &str, name: &str| spans.iter().any(|s| s.node == node && s.name.starts_with(name));
        let applied = has("1", "raft apply") && has("2", "raft apply");
        (has("1", "POST /v1/messages") && has("2", "invoke_agent") && has("2", "chat") && applied).then_some(spans)
    })
    .await;
    let find = |node: &str, name: &str| spans.iter().find(|s| s.node == node && s.name.starts_with(name)).unwrap();
    let request = find("1", "POST /v1/messages");
    assert_eq!(request.parent, caller_span, "the incoming traceparent is the request's parent");
    // INFO log lines stay in the log: only warnings and errors are span events.
    assert!(!request.events.iter().any(|e| e == "request done"), "{request:?}");
    let invoke = find("2", "invoke_agent");
    assert_eq!(invoke.name, format!("invoke_agent {remote}"));
    assert_eq!(invoke.attributes["gen_ai.operation.name"], "invoke_agent");
    assert_eq!(invoke.attributes["gen_ai.agent.name"], remote);
    let node1_ids: Vec<&str> = spans.iter().filter(|s| s.node == "1").map(|s| s.span_id.as_str()).collect();
    assert!(node1_ids.contains(&invoke.parent.as_str()), "invoke_agent on node 2 continues node 1's span: {spans:#?}");
    let apply = find("2", "raft apply");
    assert!(node1_ids.contains(&apply.parent.as_str()), "applying on node 2 continues node 1's span: {spans:#?}");
    assert!(apply.attributes["raft.log_index"].parse::<u64>().is_ok_and(|i| i > 0), "{apply:?}");
    let chat = find("2", "chat");
    assert_eq!(chat.parent, invoke.span_id, "chat is a child of invoke_agent");
    assert_eq!(chat.attributes["gen_ai.operation.name"], "chat");
    assert_eq!(chat.attributes["gen_ai.request.model"], "default");
    assert!(!chat.attributes["gen_ai.provider.name"].is_empty());
    assert_eq!(chat.attributes["gen_ai.usage.input_tokens"], "1");
    assert_eq!(chat.attributes["gen_ai.usage.output_tokens"], "1");

    // Messages sent together are applied together: one apply span per log
    // entry on each replica, the child of one message's span and linked to
    // the others'. Every message's apply is in its trace or linked from it.
    let traces: Vec<String> = (0..48).map(|i| format!("{:032x}", 0xa11ce_u128 << 64 | i)).collect();
    let sends =
        traces.iter().map(|trace| send_traced(entry, format!("00-{trace}-00f067aa0ba902b7-01"), &remote, "together"));
    for status in futures::future::join_all(sends).await {
        assert_eq!(status, 200);
    }
    let applies =
        eventually_some("every message's apply on node 2, in its trace or linked", Duration::from_secs(30), || async {
            let applies = collector.named("2", "raft apply");
            let sent_from_1 =
                |trace: &str, span: &str| collector.trace(trace).iter().any(|s| s.node == "1" && s.span_id == span);
            let accounted = traces.iter().all(|t| {
                applies.iter().any(|a| {
                    (a.trace_id == *t && sent_from_1(t, &a.parent))
                        || a.links.iter().any(|(lt, ls)| lt == t && sent_from_1(t, ls))
                })
            });
            accounted.then_some(applies)
        })
        .await;
    let batched: Vec<&ReceivedSpan> = applies.iter().filter(|a| traces.contains(&a.trace_id)).collect();
    assert!(batched.len() < traces.len(), "48 concurrent messages were applied one entry each: {batched:#?}");
    assert!(batched.iter().any(|a| !a.links.is_empty()), "{batched:#?}");
    for apply in &batched {
        assert_eq!(apply.attributes["messaging.batch.message_count"], (apply.links.len() + 1).to_string(), "{apply:?}");
    }

    // A caller's decision not to sample holds on every node: the message
    // carries it, and the owner's spans follow it, down an `ask_agent` chain
    // (no hop starts a trace of its own).
    let unsampled = "5bf92f3577b34da6a3ce929d0e0e4737";
    let traceparent = format!("00-{unsampled}-00f067aa0ba902b8-00");
    assert_eq!(send_traced(entry, traceparent.clone(), &remote, "do not follow me").await, 200);
    let asker =
        "name = \"quiet-asker\"\nprovider = \"stub\"\nsystem_prompt = \"ask the helper\"\ntools = [\"ask_agent\"]\n";
    assert_eq!(entry.post_toml("/v1/agents", asker).await.0, 201);
    let helper = "name = \"quiet-helper\"\nprovider = \"stub\"\nsystem_prompt = \"help quietly\"\n";
    assert_eq!(entry.post_toml("/v1/agents", helper).await.0, 201);
    assert_eq!(send_traced(entry, traceparent, "quiet-asker", "ask quietly").await, 200);
    let asked = stub.requests().iter().filter(|r| r["messages"][0]["content"] == "help quietly").count();

    // A write through a follower: its commit is forwarded to the leader over
    // RPC, and the leader's side continues the trace (`traceparent` on RPC).
    let leader = cluster.wait_leader().await;
    let follower = if leader == 1 { 2 } else { 1 };
    let deploy_trace = "0af7651916cd43dd8448eb211c80319c";
    let traced = |method: reqwest::Method, path: &str, trace: &str| {
        let node = cluster.node(follower);
        node.http.request(method, node.url(path)).header("traceparent", format!("00-{trace}-b7ad6b7169203331-01"))
    };
    let r = traced(reqwest::Method::POST, "/v1/agents", deploy_trace)
        .header("content-type", "application/toml")
        .body("name = \"traced-late\"\nprovider = \"stub\"\nsystem_prompt = \"x\"\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let (f, l) = (follower.to_string(), leader.to_string());
    let spans = eventually_some("the forwarded write in the deploy's trace", Duration::from_secs(30), || async {
        let spans = collector.trace(deploy_trace);
        let has = |node: &str, name: &str| spans.iter().any(|s| s.node == node && s.name == name);
        (has(&f, "raft commit") && has(&l, "forwarded write")).then_some(spans)
    })
    .await;
    // A request span is named by its route template, not its path.
    let read_trace = "0af7651916cd43dd8448eb211c80319d";
    let r = traced(reqwest::Method::GET, "/v1/agents/traced-late", read_trace).send().await.unwrap();
    assert_eq!(r.status(), 200);
    eventually_some("the read's request span", Duration::from_secs(30), || async {
        collector.trace(read_trace).into_iter().find(|s| s.name == "GET /v1/agents/{name}")
    })
    .await;
    let commit = spans.iter().find(|s| s.node == f && s.name == "raft commit").unwrap();
    let forwarded = spans.iter().find(|s| s.node == l && s.name == "forwarded write").unwrap();
    assert_eq!(forwarded.parent, commit.span_id, "the leader's span is a child of the follower's commit");
    // Exported after the unsampled message was answered: had its spans been
    // sampled anywhere, they would be here by now.
    assert!(collector.trace(unsampled).is_empty(), "{:#?}", collector.trace(unsampled));
    assert!(asked > 0, "the helper was asked");
    let quiet: Vec<ReceivedSpan> = collector
        .spans
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.attributes.get("gen_ai.agent.name").is_some_and(|a| a.starts_with("quiet-")))
        .cloned()
        .collect();
    assert!(quiet.is_empty(), "spans of an unsampled ask_agent chain: {quiet:#?}");

    // The exporter runs where an endpoint is set, and only there.
    assert!(exporter_threads(entry.pid()) > 0);
    let plain = TestNode::start().await;
    assert_eq!(exporter_threads(plain.pid()), 0, "no endpoint, no exporter thread");
}

/// `GET /v1/events` on one node streams what happens anywhere in the
/// cluster: an agent deployed through another node, a leadership transfer;
/// each is also a log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_reports_agents_and_leader_changes_from_any_node() {
    let cluster = TestCluster::start_with(2, ClusterOptions { voters: 3, ..Default::default() }).await;
    let leader = cluster.wait_leader().await;
    let other = if leader == 1 { 2 } else { 1 };
    let watcher = cluster.node(other);
    let resp = watcher.http.get(watcher.url("/v1/events")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut feed =
        EventReader { body: Box::pin(resp.bytes_stream()), decoder: Default::default(), ready: Default::default() };
    let mut events: Vec<serde_json::Value> = Vec::new();

    deploy(cluster.node(leader), &echo_agent_toml("announced", &[])).await;
    loop {
        let e = feed.next().await;
        events.push(e.clone());
        if e["kind"] == "agent_deployed" && e["agent"] == "announced" {
            assert_eq!(e["revision"], 1);
            assert_eq!(e["node"], other, "reported by the node streaming it");
            break;
        }
    }
    let r = cluster.node(leader).post_json("/v1/cluster/transfer-leader", serde_json::json!({"node": other})).await;
    assert_eq!(r.0, 200, "{}", r.1);
    loop {
        let e = feed.next().await;
        events.push(e.clone());
        if e["kind"] == "leader_changed" {
            assert_eq!(e["leader"], other, "{events:?}");
            assert!(e["term"].as_u64() > Some(0));
            break;
        }
    }
    let log = watcher.log();
    assert!(log.contains("cluster event") && log.contains("agent_deployed") && log.contains("leader_changed"), "{log}");
}

/// Reads JSON events off an SSE response.
struct EventReader {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<axum::body::Bytes>> + Send>>,
    decoder: caxton::sse::SseDecoder,
    ready: std::collections::VecDeque<serde_json::Value>,
}

impl EventReader {
    async fn next(&mut self) -> serde_json::Value {
        use futures::StreamExt;
        loop {
            if let Some(e) = self.ready.pop_front() {
                return e;
            }
            let chunk =
                tokio::time::timeout(Duration::from_secs(30), self.body.next()).await.expect("no event in 30 s");
            for e in self.decoder.feed(&chunk.expect("the stream is open").unwrap()) {
                if let Ok(v) = serde_json::from_str(&e.data) {
                    self.ready.push_back(v);
                }
            }
        }
    }
}

/// A call to a remote A2A agent is an A2A client span (OpenTelemetry's A2A
/// conventions) under the turn's `execute_tool` span, in the message's trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_to_a_remote_a2a_agent_is_a_client_span_of_the_turn() {
    let collector = Collector::start().await;
    let port = free_port();
    let python = std::env::var("CAXTON_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut remote = Command::new(python)
        .arg(repo_path("tests/clients/a2a_remote_agent.py"))
        .arg(port.to_string())
        .arg("span-secret")
        .stdout(Stdio::null())
        .spawn()
        .expect("run python (make test installs a2a-sdk and sets CAXTON_TEST_PYTHON)");
    eventually("the remote agent listens", Duration::from_secs(30), || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
    })
    .await;
    let stub = OpenAiStub::start().await;
    stub.script([
        StubReply::tool_call("remote_echo", serde_json::json!({"message": "trace me"})),
        StubReply::text("done"),
    ]);
    let tables = format!(
        "{}\n[a2a]\nallowed_hosts = [\"127.0.0.1\"]\n[a2a.credentials.\"127.0.0.1\"]\nbearer_token_env = \"SPAN_TOKEN\"\n",
        stub.provider_config("stub", "")
    );
    let node = TestNode::start_with(NodeOptions {
        tables,
        env: vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), collector.endpoint.clone()),
            ("OTEL_BSP_SCHEDULE_DELAY".to_owned(), "100".to_owned()),
            ("SPAN_TOKEN".to_owned(), "span-secret".to_owned()),
        ],
        ..Default::default()
    })
    .await;
    let agent = format!(
        "name = \"caller\"\nprovider = \"stub\"\nsystem_prompt = \"x\"\n[[a2a]]\nname = \"remote_echo\"\ncard = \"http://127.0.0.1:{port}/.well-known/agent-card.json\"\n"
    );
    assert_eq!(node.post_toml("/v1/agents", &agent).await.0, 201);
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let status = send_traced(&node, format!("00-{trace}-00f067aa0ba902b7-01"), "caller", "call out").await;
    assert_eq!(status, 200);
    let spans = eventually_some("the A2A client span", Duration::from_secs(30), || async {
        let spans = collector.trace(trace);
        spans.iter().any(|s| s.name == "SendStreamingMessage").then_some(spans)
    })
    .await;
    let _ = remote.kill();
    let _ = remote.wait();
    let a2a = spans.iter().find(|s| s.name == "SendStreamingMessage").unwrap();
    assert_eq!(a2a.attributes["a2a.method.name"], "SendStreamingMessage", "{a2a:?}");
    assert_eq!(a2a.attributes["a2a.protocol.version"], "1.0", "{a2a:?}");
    assert_eq!(a2a.attributes["a2a.task.state"], "completed", "{a2a:?}");
    assert!(!a2a.attributes["a2a.task.id"].is_empty(), "{a2a:?}");
    assert_eq!(a2a.attributes["server.port"], port.to_string(), "{a2a:?}");
    let tool = spans.iter().find(|s| s.span_id == a2a.parent).expect("a parent span in the trace");
    assert_eq!(tool.name, "execute_tool remote_echo", "{tool:?}");
}

/// With the PostgreSQL memory, each database operation is a client span
/// (`db.system.name = postgresql`) under the request that caused it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_database_calls_are_client_spans_of_the_request() {
    let collector = Collector::start().await;
    let pg = TestPostgres::start();
    pg.create_database("traced");
    let node = TestNode::start_with(NodeOptions {
        tables: pg.memory_config("traced"),
        env: vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), collector.endpoint.clone()),
            ("OTEL_BSP_SCHEDULE_DELAY".to_owned(), "100".to_owned()),
        ],
        ..Default::default()
    })
    .await;
    let trace = "5bf92f3577b34da6a3ce929d0e0e4737";
    let resp = node
        .http
        .post(node.url("/v1/memory/entities"))
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .json(
            &serde_json::json!({"name": "traced", "entity_type": "fact", "observations": ["Spans show the database."]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let spans = eventually_some("the database span", Duration::from_secs(30), || async {
        let spans = collector.trace(trace);
        spans.iter().any(|s| s.name == "memory store").then_some(spans)
    })
    .await;
    let db = spans.iter().find(|s| s.name == "memory store").unwrap();
    assert_eq!(db.attributes["db.system.name"], "postgresql", "{db:?}");
    assert_eq!(db.attributes["db.operation.name"], "store", "{db:?}");
    assert_eq!(db.attributes["db.attempts"], "1", "{db:?}");
    assert!(spans.iter().any(|s| s.span_id == db.parent), "the request span is its parent: {spans:?}");
}
