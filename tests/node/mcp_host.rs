//! The wasmtime MCP host with real modules: the example tool servers built
//! to wasm32-wasip1 (`make wasm`), and hostile modules written in WAT.

use std::sync::Arc;
use std::time::{Duration, Instant};

use caxton::mcp::{DataDir, Limits, McpHost, Sandbox, ToolError};
use serde_json::json;

fn module(name: &str) -> Vec<u8> {
    let path = format!("{}/examples/mcp/{name}/{name}.wasm", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e} (run `make wasm`)"))
}

fn host() -> (tempfile::TempDir, Arc<McpHost>) {
    let dir = tempfile::tempdir().unwrap();
    let host = McpHost::new(&dir.path().join("wasm-cache")).unwrap();
    (dir, host)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_servers_list_and_call_tools() {
    let (_dir, host) = host();
    let jq = host.compile(&module("json_query")).unwrap();
    let tools = host.list_tools(&jq, Limits::default()).await.unwrap();
    assert_eq!(tools[0].name, "json_query");
    assert_eq!(tools[0].input_schema["required"], json!(["json", "path"]));
    let doc = json!({"items": [{"name": "a", "price": 5}, {"name": "b", "price": 15}, {"name": "c", "price": 25}]});
    let r = host
        .call_tool(
            &jq,
            "json_query",
            json!({"json": doc, "path": "items[?price>10].name"}),
            Limits::default(),
            Sandbox::default(),
        )
        .await
        .unwrap();
    assert_eq!(r["structuredContent"]["matches"], json!(["b", "c"]));
    assert_eq!(r["isError"], false);

    let csv = host.compile(&module("csv_parser")).unwrap();
    let r = host
        .call_tool(
            &csv,
            "csv_parse",
            json!({"csv": "city,temp\nOslo,3\nRome,\"18\"\nCairo,30\n"}),
            Limits::default(),
            Sandbox::default(),
        )
        .await
        .unwrap();
    let out = &r["structuredContent"];
    assert_eq!(out["row_count"], 3);
    assert_eq!(out["columns"][1]["type"], "integer");
    assert_eq!(out["columns"][1]["mean"], 17.0);
    assert_eq!(out["rows"][1]["city"], "Rome");
    // A tool-level failure is an isError result, not a crash.
    let r = host
        .call_tool(&csv, "csv_parse", json!({"csv": "a,b\n1\n"}), Limits::default(), Sandbox::default())
        .await
        .unwrap();
    assert_eq!(r["isError"], true);
    // An unknown tool is a JSON-RPC error object.
    let e = host.call_tool(&csv, "nope", json!({}), Limits::default(), Sandbox::default()).await.unwrap_err();
    assert!(matches!(e, ToolError::Rpc { code: -32602, .. }), "{e}");
}

fn wat(text: &str) -> Vec<u8> {
    text.as_bytes().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_modules_are_stopped_by_the_limit_they_hit() {
    let (_dir, host) = host();
    let limits = Limits {
        fuel: 50_000_000,
        timeout: Duration::from_secs(10),
        max_memory_bytes: 16 << 20,
        max_output_bytes: 256 << 10,
        ..Limits::default()
    };

    // An infinite loop runs out of fuel...
    let spin =
        host.compile(&wat(r#"(module (memory (export "memory") 1) (func (export "_start") (loop (br 0))))"#)).unwrap();
    let e = host.call_tool(&spin, "x", json!({}), limits, Sandbox::default()).await.unwrap_err();
    assert_eq!(e, ToolError::CpuLimit { fuel: 50_000_000 });
    // ...or, with fuel to spare, out of time.
    let started = Instant::now();
    let e = host
        .call_tool(
            &spin,
            "x",
            json!({}),
            Limits { fuel: u64::MAX / 2, timeout: Duration::from_millis(200), ..limits },
            Sandbox::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(e, ToolError::Timeout { timeout_ms: 200 });
    assert!(started.elapsed() < Duration::from_secs(3));

    // A module that sleeps "forever" (WASI poll_oneoff on a clock, which
    // epoch interruption cannot stop) is stopped at its timeout, slot freed.
    let sleeper = |nanos: i64| {
        wat(&format!(
            r#"(module
            (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 1)
            (func (export "_start")
              (i64.store (i32.const 0) (i64.const 7))
              (i32.store (i32.const 16) (i32.const 1))
              (i64.store (i32.const 24) (i64.const {nanos}))
              (if (i32.ne (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)) (i32.const 0)) (then unreachable))
              (if (i32.ne (i32.load (i32.const 128)) (i32.const 1)) (then unreachable))
              (if (i64.ne (i64.load (i32.const 64)) (i64.const 7)) (then unreachable))))"#
        ))
    };
    let forever = host.compile(&sleeper(-1)).unwrap();
    let short = Limits { timeout: Duration::from_millis(300), ..limits };
    for _ in 0..3 {
        let started = Instant::now();
        let e = host.call_tool(&forever, "x", json!({}), short, Sandbox::default()).await.unwrap_err();
        assert_eq!(e, ToolError::Timeout { timeout_ms: 300 });
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    }
    // A short sleep returns normally, with its event (then the module,
    // which speaks no MCP, is reported as such rather than as a timeout).
    let nap = host.compile(&sleeper(10_000_000)).unwrap();
    let e = host.call_tool(&nap, "x", json!({}), short, Sandbox::default()).await.unwrap_err();
    assert_eq!(e, ToolError::NoInitialize, "{e}");

    // A memory bomb is refused at the cap.
    let bomb = host
        .compile(&wat(r#"(module (memory (export "memory") 1)
            (func (export "_start") (loop (br_if 0 (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) unreachable))"#))
        .unwrap();
    let e = host.call_tool(&bomb, "x", json!({}), limits, Sandbox::default()).await.unwrap_err();
    assert_eq!(e, ToolError::MemoryLimit { limit_mb: 16 });
    assert!(e.to_string().contains("memory limit"));

    // A flood of output is cut at the output limit.
    let flood = host
        .compile(&wat(r#"(module
            (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 2)
            (func (export "_start")
              (i32.store (i32.const 0) (i32.const 1024))
              (i32.store (i32.const 4) (i32.const 65536))
              (loop $l (if (i32.ne (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)) (i32.const 0)) (then unreachable)) (br $l))))"#))
        .unwrap();
    let e = host.call_tool(&flood, "x", json!({}), limits, Sandbox::default()).await.unwrap_err();
    assert_eq!(e, ToolError::OutputLimit { limit: 256 << 10 });

    // Not WebAssembly at all.
    let e = host.compile(b"definitely not wasm").err().unwrap();
    assert!(matches!(e, ToolError::InvalidModule(_)), "{e}");

    // A module that never answers `initialize`.
    let mute = host.compile(&wat(r#"(module (memory (export "memory") 1) (func (export "_start")))"#)).unwrap();
    assert_eq!(host.list_tools(&mute, limits).await.unwrap_err(), ToolError::NoInitialize);

    // Oversized input is refused before running anything.
    let jq = host.compile(&module("json_query")).unwrap();
    let big = "x".repeat(2 << 20);
    let e = host
        .call_tool(&jq, "json_query", json!({"json": big, "path": "a"}), Limits::default(), Sandbox::default())
        .await
        .unwrap_err();
    assert!(matches!(e, ToolError::InputLimit { .. }), "{e}");

    // And the host carries on serving.
    let r = host
        .call_tool(&jq, "json_query", json!({"json": {"a": 1}, "path": "a"}), Limits::default(), Sandbox::default())
        .await
        .unwrap();
    assert_eq!(r["structuredContent"]["matches"], json!([1]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_calls_complete_correctly() {
    let (_dir, host) = host();
    let jq = host.compile(&module("json_query")).unwrap();
    let mut tasks = Vec::new();
    for i in 0..1000u64 {
        let (host, jq) = (host.clone(), jq.clone());
        tasks.push(tokio::spawn(async move {
            let r = host
                .call_tool(
                    &jq,
                    "json_query",
                    json!({"json": {"n": i}, "path": "n"}),
                    Limits::default(),
                    Sandbox::default(),
                )
                .await
                .unwrap();
            assert_eq!(r["structuredContent"]["matches"], json!([i]));
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[test]
fn compiled_modules_are_cached_on_disk_by_content_hash() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("wasm-cache");
    let bytes = module("json_query");
    let first = McpHost::new(&cache).unwrap().compile(&bytes).unwrap();
    assert!(cache.join(format!("{}.cwasm", first.hash)).exists());
    // A new host (a restarted node) loads it from the cache.
    let second = McpHost::new(&cache).unwrap().compile(&bytes).unwrap();
    assert_eq!(first.hash, second.hash);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filesystem_server_is_confined_to_its_sandbox() {
    let (dir, host) = host();
    let sandbox_dir = dir.path().join("sandbox");
    std::fs::create_dir_all(&sandbox_dir).unwrap();
    std::fs::write(dir.path().join("secret.txt"), "outside").unwrap();
    let fs = host.compile(&module("filesystem")).unwrap();
    let sandbox =
        Sandbox { preopen: Some(DataDir { path: sandbox_dir.clone(), quota_bytes: 1 << 20 }), ..Sandbox::default() };
    let call = |tool: &'static str, args: serde_json::Value, sandbox: Sandbox| {
        let (host, fs) = (host.clone(), fs.clone());
        async move { host.call_tool(&fs, tool, args, Limits::default(), sandbox).await.unwrap() }
    };
    let r = call("write_file", json!({"path": "notes.txt", "content": "hello"}), sandbox.clone()).await;
    assert_eq!(r["isError"], false, "{r}");
    assert_eq!(std::fs::read_to_string(sandbox_dir.join("notes.txt")).unwrap(), "hello");
    let r = call("read_file", json!({"path": "notes.txt"}), sandbox.clone()).await;
    assert_eq!(r["structuredContent"]["content"], "hello");
    let r = call("list_dir", json!({"path": "."}), sandbox.clone()).await;
    assert_eq!(r["structuredContent"]["entries"][0]["name"], "notes.txt");
    // Outside the preopened directory there is nothing to open.
    for path in ["../secret.txt", "/etc/passwd", dir.path().join("secret.txt").to_str().unwrap()] {
        let r = call("read_file", json!({"path": path}), sandbox.clone()).await;
        assert_eq!(r["isError"], true, "{path} was readable: {r}");
    }
    // Without a declared directory, no file at all.
    let r = call("read_file", json!({"path": "notes.txt"}), Sandbox::default()).await;
    assert_eq!(r["isError"], true);

    // The quota (1 MiB): writes go on while /data holds less; once it holds
    // the quota, /data is read-only for the next calls, and still readable.
    let big = "x".repeat(600 << 10);
    for name in ["a.txt", "b.txt"] {
        let r = call("write_file", json!({"path": name, "content": big}), sandbox.clone()).await;
        assert_eq!(r["isError"], false, "{name} fits under the quota: {}", r["content"]);
    }
    let r = call("write_file", json!({"path": "c.txt", "content": "one byte more"}), sandbox.clone()).await;
    assert_eq!(r["isError"], true, "a full /data takes no more writes: {r}");
    assert!(!sandbox_dir.join("c.txt").exists());
    let r = call("read_file", json!({"path": "notes.txt"}), sandbox.clone()).await;
    assert_eq!(r["structuredContent"]["content"], "hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_generator_renders_svg() {
    let (_dir, host) = host();
    let chart = host.compile(&module("chart_generator")).unwrap();
    let series = json!([{"label": "Q1", "value": 3}, {"label": "Q2", "value": 7}, {"label": "<Q3>", "value": 5}]);
    for kind in ["bar", "line"] {
        let r = host
            .call_tool(
                &chart,
                "chart",
                json!({"kind": kind, "title": "Sales", "series": series}),
                Limits::default(),
                Sandbox::default(),
            )
            .await
            .unwrap();
        let svg = r["structuredContent"]["svg"].as_str().unwrap();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("&lt;Q3&gt;"), "labels are escaped");
        assert_eq!(svg.matches("<rect").count(), if kind == "bar" { 3 } else { 0 });
        assert_eq!(svg.contains("<polyline"), kind == "line");
    }
    let r = host
        .call_tool(
            &chart,
            "chart",
            json!({"series": [{"label": "x", "value": "nope"}]}),
            Limits::default(),
            Sandbox::default(),
        )
        .await
        .unwrap();
    assert_eq!(r["isError"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_written_in_c_runs_unchanged() {
    let (_dir, host) = host();
    let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/mcp-c/upper/upper.wasm"))
        .expect("run `make wasm`");
    let upper = host.compile(&bytes).unwrap();
    let tools = host.list_tools(&upper, Limits::default()).await.unwrap();
    assert_eq!(tools[0].name, "upper");
    let r = host
        .call_tool(&upper, "upper", json!({"text": "hello from \"C\""}), Limits::default(), Sandbox::default())
        .await
        .unwrap();
    assert_eq!(r["content"][0]["text"], "HELLO FROM \"C\"");
    let e = host.call_tool(&upper, "upper", json!({}), Limits::default(), Sandbox::default()).await.unwrap_err();
    assert!(matches!(e, ToolError::Rpc { code: -32602, .. }), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_goes_only_to_allowlisted_non_internal_hosts() {
    use caxton::mcp::HttpPolicy;
    // A real HTTP server on loopback for the allowed case.
    let app = axum::Router::new()
        .route("/hello", axum::routing::get(|| async { "hi from the test server" }))
        .route("/echo", axum::routing::post(|body: String| async move { format!("got {body}") }))
        .route("/huge", axum::routing::get(|| async { "h".repeat(4 << 20) }))
        .route(
            "/endless",
            axum::routing::get(|| async {
                // No Content-Length: the limit must hold while it streams.
                let chunk = || Ok::<_, std::io::Error>(vec![b'e'; 64 << 10]);
                let chunks = futures::StreamExt::take(futures::stream::repeat_with(chunk), 64);
                axum::body::Body::from_stream(chunks)
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let (_dir, host) = host();
    let http = host.compile(&module("http_client")).unwrap();
    let policy = |allow: &[&str], private: bool| Sandbox {
        http: HttpPolicy { allow: allow.iter().map(|s| s.to_string()).collect(), allow_private: private },
        ..Sandbox::default()
    };
    let call = |tool: &'static str, args: serde_json::Value, sandbox: Sandbox| {
        let (host, http) = (host.clone(), http.clone());
        async move { host.call_tool(&http, tool, args, Limits::default(), sandbox).await.unwrap() }
    };

    // Allowed explicitly (loopback needs http_allow_private).
    let r =
        call("http_get", json!({"url": format!("http://127.0.0.1:{port}/hello")}), policy(&["127.0.0.1"], true)).await;
    assert_eq!(r["isError"], false, "{r}");
    assert_eq!(r["structuredContent"]["status"], 200);
    assert_eq!(r["structuredContent"]["body"], "hi from the test server");
    let r = call(
        "http_post",
        json!({"url": format!("http://127.0.0.1:{port}/echo"), "body": "ping"}),
        policy(&["127.0.0.1"], true),
    )
    .await;
    assert_eq!(r["structuredContent"]["body"], "got ping");
    // A response larger than the call's output limit (1 MiB) is refused,
    // whether it declares its length or streams without one.
    for path in ["huge", "endless"] {
        let url = format!("http://127.0.0.1:{port}/{path}");
        let r = call("http_get", json!({"url": url}), policy(&["127.0.0.1"], true)).await;
        assert_eq!(r["isError"], true, "{path}: {r}");
        assert!(r["content"][0]["text"].as_str().unwrap().contains("the limit is 1048576"), "{path}: {r}");
    }

    // Refused: each with a reason the model and the operator can read.
    let cases = [
        (format!("http://127.0.0.1:{port}/hello"), policy(&["127.0.0.1"], false), "internal address 127.0.0.1"),
        (format!("http://localhost:{port}/hello"), policy(&["localhost"], false), "internal address"),
        (
            "http://169.254.169.254/latest/meta-data/".to_owned(),
            policy(&["169.254.169.254"], false),
            "internal address 169.254.169.254",
        ),
        ("http://example.net/".to_owned(), policy(&["example.com"], false), "not on this tool server's allowlist"),
        (format!("http://127.0.0.1:{port}/hello"), Sandbox::default(), "not on this tool server's allowlist []"),
        ("file:///etc/passwd".to_owned(), policy(&["example.com"], true), "scheme `file` is not allowed"),
    ];
    for (url, sandbox, why) in cases {
        let r = call("http_get", json!({"url": url}), sandbox).await;
        assert_eq!(r["isError"], true, "{url}: {r}");
        let text = r["content"][0]["text"].as_str().unwrap();
        assert!(text.contains(why), "{url}: {text}");
    }
}

/// A stateless server's calls share one warm, initialised session; what a
/// call may use (fuel, output) is still counted per call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_calls_share_a_warm_session_with_limits_per_call() {
    let (_dir, host) = host();
    let jq = host.compile(&module("json_query")).unwrap();
    let call = |args: serde_json::Value, limits: Limits| {
        let (host, jq) = (host.clone(), jq.clone());
        async move { host.call_stateless(&jq, "json_query", args, limits, Sandbox::default()).await }
    };
    for i in 0..200 {
        let r = call(json!({"json": {"n": i}, "path": "n"}), Limits::default()).await.unwrap();
        assert_eq!(r["structuredContent"]["matches"], json!([i]));
    }
    assert_eq!(host.warm_sessions(), 1, "200 sequential calls, one session");
    // A JSON-RPC error is an answer: the session keeps serving.
    let e = host.call_stateless(&jq, "nope", json!({}), Limits::default(), Sandbox::default()).await.unwrap_err();
    assert!(matches!(e, ToolError::Rpc { code: -32602, .. }), "{e}");
    assert_eq!(host.warm_sessions(), 1);

    // Fuel: find a budget one large call fits in (doubling from below, so
    // the call needs more than half of it)...
    let items: Vec<_> = (0..3000).map(|i| json!({"id": i, "name": format!("item {i}")})).collect();
    let big = json!({"json": {"items": items}, "path": "items[?id>2990].name"});
    let mut fuel = 1_000_000u64;
    let fits = loop {
        let limits = Limits { fuel, ..Limits::default() };
        match host.call_tool(&jq, "json_query", big.clone(), limits, Sandbox::default()).await {
            Ok(_) => break limits,
            Err(ToolError::CpuLimit { .. }) => fuel *= 2,
            Err(e) => panic!("{e}"),
        }
    };
    // ...then twice that per call: twenty calls on one session burn far
    // more than one budget together, and each still has its own.
    let per_call = Limits { fuel: fits.fuel * 2, ..fits };
    for _ in 0..20 {
        let r = call(big.clone(), per_call).await.unwrap();
        assert_eq!(r["structuredContent"]["matches"].as_array().unwrap().len(), 9, "{r}");
    }
    assert_eq!(host.warm_sessions(), 2, "one more session, for the other limits");

    // Output: fifty small answers add up past the limit, each is within it.
    let small_out = Limits { max_output_bytes: 4096, ..Limits::default() };
    for i in 0..50 {
        call(json!({"json": {"n": i}, "path": "n"}), small_out).await.unwrap();
    }
    // One answer past it fails by name and ends its session; the next call
    // gets a new one.
    let long: Vec<String> = (0..200).map(|i| format!("value number {i}")).collect();
    let e = call(json!({"json": {"v": long}, "path": "v"}), small_out).await.unwrap_err();
    assert_eq!(e, ToolError::OutputLimit { limit: 4096 });
    let r = call(json!({"json": {"n": 7}, "path": "n"}), small_out).await.unwrap();
    assert_eq!(r["structuredContent"]["matches"], json!([7]));
    assert_eq!(host.warm_sessions(), 3);

    // Concurrent callers share a bounded set of sessions.
    let calls: Vec<_> = (0..256).map(|i| call(json!({"json": {"n": i}, "path": "n"}), Limits::default())).collect();
    for (i, r) in futures::future::join_all(calls).await.into_iter().enumerate() {
        assert_eq!(r.unwrap()["structuredContent"]["matches"], json!([i]));
    }
    assert!(host.warm_sessions() <= 16, "{}", host.warm_sessions());
}

/// A warm session meets hostile modules with the same named limits as a
/// fresh one, and a busy guest yields: other tasks on the same two
/// workers keep running while it spins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_sessions_stop_hostile_modules_by_name_without_holding_the_workers() {
    let (_dir, host) = host();
    let limits =
        Limits { fuel: 50_000_000, timeout: Duration::from_secs(10), max_memory_bytes: 16 << 20, ..Limits::default() };
    let stateless = |server: caxton::mcp::CompiledServer, limits: Limits| {
        let host = host.clone();
        async move { host.call_stateless(&server, "x", json!({}), limits, Sandbox::default()).await.unwrap_err() }
    };
    let spin =
        host.compile(&wat(r#"(module (memory (export "memory") 1) (func (export "_start") (loop (br 0))))"#)).unwrap();
    assert_eq!(stateless(spin.clone(), limits).await, ToolError::CpuLimit { fuel: 50_000_000 });
    let started = Instant::now();
    let endless = Limits { fuel: u64::MAX / 2, timeout: Duration::from_millis(200), ..limits };
    assert_eq!(stateless(spin.clone(), endless).await, ToolError::Timeout { timeout_ms: 200 });
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());

    let sleeps_forever = host
        .compile(&wat(r#"(module
            (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 1)
            (func (export "_start")
              (i32.store (i32.const 16) (i32.const 1))
              (i64.store (i32.const 24) (i64.const -1))
              (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))))"#))
        .unwrap();
    let short = Limits { timeout: Duration::from_millis(300), ..limits };
    assert_eq!(stateless(sleeps_forever, short).await, ToolError::Timeout { timeout_ms: 300 });
    let bomb = host
        .compile(&wat(r#"(module (memory (export "memory") 1)
            (func (export "_start") (loop (br_if 0 (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) unreachable))"#))
        .unwrap();
    assert_eq!(stateless(bomb, limits).await, ToolError::MemoryLimit { limit_mb: 16 });
    let silent = host.compile(&wat(r#"(module (memory (export "memory") 1) (func (export "_start")))"#)).unwrap();
    assert_eq!(stateless(silent, limits).await, ToolError::NoInitialize);
    assert_eq!(host.warm_sessions(), 0, "no failed session is kept");

    // Four guests spinning for a second each on two workers: a 10 ms timer
    // on the same runtime still fires promptly, because the guests yield.
    let spinning = Limits { fuel: u64::MAX / 2, timeout: Duration::from_secs(1), ..limits };
    let spinners: Vec<_> = (0..4).map(|_| tokio::spawn(stateless(spin.clone(), spinning))).collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let waited = started.elapsed();
    for s in spinners {
        assert_eq!(s.await.unwrap(), ToolError::Timeout { timeout_ms: 1000 });
    }
    assert!(waited < Duration::from_millis(500), "a 10 ms timer took {waited:?} beside spinning guests");
}
