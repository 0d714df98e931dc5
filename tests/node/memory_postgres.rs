//! The PostgreSQL memory backend's own behaviour (the shared memory suite
//! runs against it in memory.rs): the settings in every form, the schema
//! migrated once, readiness, and the database stopped and restarted while
//! writes keep coming (clear 503s, no acknowledged write lost).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use caxton_testing::*;
use serde_json::json;

fn postgres_options(pg: &TestPostgres, db: &str) -> NodeOptions {
    pg.create_database(db);
    NodeOptions { tables: pg.memory_config(db), ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_url_comes_from_the_environment_or_a_file_and_the_schema_is_migrated_once() {
    let pg = TestPostgres::start();
    pg.create_database("shared");
    // From the environment.
    let env_node = TestNode::start_with(NodeOptions {
        tables: "[memory]\nbackend = \"postgres\"\n[memory.postgres]\ntls = \"disable\"\n".into(),
        env: vec![("CAXTON_MEMORY_POSTGRES_URL".into(), pg.url("shared"))],
        ..Default::default()
    })
    .await;
    // From a file (a mounted secret), the backend chosen by a variable.
    let secret = tempfile::tempdir().unwrap();
    let url_file = secret.path().join("memory-url");
    std::fs::write(&url_file, format!("{}\n", pg.url("shared"))).unwrap();
    let file_node = TestNode::start_with(NodeOptions {
        tables: format!("[memory.postgres]\nurl_file = \"{}\"\ntls = \"disable\"\n", url_file.display()),
        env: vec![
            ("CAXTON_MEMORY_BACKEND".into(), "postgres".into()),
            // Every search walks the HNSW graph, however few rows match.
            ("CAXTON_MEMORY_POSTGRES_EXACT_SEARCH_BELOW".into(), "0".into()),
        ],
        ..Default::default()
    })
    .await;
    let (s, _) = env_node
        .post_json(
            "/v1/memory/entities",
            json!({"name": "shared-fact", "entity_type": "fact", "observations": ["Both nodes read one database."]}),
        )
        .await;
    assert_eq!(s, 201);
    // The other node (not in a cluster with it) sees it at once: one database.
    let (s, e) = file_node.get("/v1/memory/entities/shared-fact").await;
    assert_eq!(s, 200, "{e}");
    for (name, text) in [("weather", "It rains a lot in autumn."), ("cooking", "Pasta needs salted water.")] {
        let body = json!({"name": name, "entity_type": "fact", "observations": [text]});
        assert_eq!(file_node.post_json("/v1/memory/entities", body).await.0, 201);
    }
    for node in [&env_node, &file_node] {
        let (s, v) = node.get("/v1/memory/search?q=which%20database%20do%20the%20nodes%20read&limit=1").await;
        assert_eq!((s, v["results"][0]["name"].as_str()), (200, Some("shared-fact")), "{v}");
    }
    // Text PostgreSQL cannot hold is a bad request, as on the embedded backend.
    let (s, p) = env_node
        .post_json("/v1/memory/entities", json!({"name": "nul", "entity_type": "fact", "observations": ["a\u{0}b"]}))
        .await;
    assert_eq!(s, 400, "{p}");
    let (s, p) = env_node.get("/v1/memory/entities?workspace=a%00b").await;
    assert_eq!(s, 400, "{p}");
    assert_eq!(pg.psql("shared", "SELECT count(*) FROM caxton_memory_migrations"), "1");
    assert_eq!(pg.psql("shared", "SELECT extname FROM pg_extension WHERE extname = 'vector'"), "vector");
    assert_eq!(
        pg.psql("shared", "SELECT indexdef LIKE '%hnsw%vector_cosine_ops%' FROM pg_indexes WHERE indexname = 'caxton_memory_observations_hnsw'"),
        "t"
    );
    let (s, ready) = env_node.get("/ready").await;
    assert_eq!((s, &ready["memory"]), (200, &json!({"backend": "postgres", "ready": true})), "{ready}");
    let metrics = reqwest::get(format!("http://127.0.0.1:{}/metrics", env_node.metrics_port))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metric_value(&metrics, "caxton_memory_db_connections", &[("state", "max")]).is_some_and(|v| v == 16.0),
        "{metrics}"
    );
    assert!(
        metrics.contains("caxton_memory_db_operation_duration_seconds_count{operation=\"store\",outcome=\"ok\"}"),
        "{metrics}"
    );
}

#[test]
fn postgres_without_a_url_or_with_an_unreachable_one_refuses_to_start() {
    let start = |config: &str| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("caxton.toml");
        std::fs::write(&path, config).unwrap();
        let out = std::process::Command::new(caxton_bin())
            .args([
                "server",
                "start",
                "--config",
                path.to_str().unwrap(),
                "--listen",
                &format!("127.0.0.1:{}", free_port()),
            ])
            .arg("--data-dir")
            .arg(dir.path().join("d"))
            .env_remove("CAXTON_ADMIN_KEY")
            .env_remove("CAXTON_MEMORY_POSTGRES_URL")
            .env("CAXTON_MODELS_DIR", models_dir())
            .output()
            .unwrap();
        (out.status.code(), stderr(&out))
    };
    let (code, err) = start("[memory]\nbackend = \"postgres\"\n");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("memory.postgres.url") && err.contains("CAXTON_MEMORY_POSTGRES_URL"), "{err}");
    let (code, err) = start("[memory]\nbackend = \"postgres\"\n[memory.postgres]\nurl = \"http://secret@x\"\n");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("memory.postgres.url") && !err.contains("secret@"), "the URL is not echoed: {err}");
    let (code, err) = start("[memory]\nbackend = \"mongo\"\n");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("memory.backend"), "{err}");
    // Nothing listens there: the node does not come up without its memory.
    let port = free_port();
    let (code, err) = start(&format!(
        "[memory]\nbackend = \"postgres\"\n[memory.postgres]\nurl = \"postgres://u:pw@127.0.0.1:{port}/db\"\ntls = \"disable\"\nconnect_timeout_ms = 500\n"
    ));
    assert_ne!(code, Some(0));
    assert!(err.contains("PostgreSQL memory") && err.contains("memory database"), "{err}");
    assert!(!err.contains(":pw@"), "the password is not echoed: {err}");
}

/// Writers keep storing while the database stops and comes back: every
/// write acknowledged (201) is there afterwards; meanwhile the answers are
/// 503 `memory-unavailable` with Retry-After, and `/ready` says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_stopping_under_load_gives_503s_and_loses_no_acknowledged_write() {
    let pg = TestPostgres::start();
    let node = Arc::new(TestNode::start_with(postgres_options(&pg, "outage")).await);
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let refused = Arc::new(Mutex::new(Vec::<(u16, String, Option<String>)>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..3 {
        let (node, acked, refused, stop) = (node.clone(), acked.clone(), refused.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let name = format!("w{w}-{i}");
                i += 1;
                let resp = node
                    .http
                    .post(node.url("/v1/memory/entities"))
                    .json(&json!({"name": name, "entity_type": "load", "observations": [format!("Record {name} of the load test.")]}))
                    .send()
                    .await
                    .unwrap();
                let status = resp.status().as_u16();
                let retry = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
                let body: serde_json::Value = resp.json().await.unwrap_or_default();
                if status == 201 {
                    acked.lock().unwrap().push(name);
                } else {
                    refused.lock().unwrap().push((status, body["type"].as_str().unwrap_or("").to_owned(), retry));
                }
            }
        }));
    }
    eventually("writes before the outage", Duration::from_secs(30), || async { acked.lock().unwrap().len() >= 20 })
        .await;
    pg.stop();
    eventually("503s during the outage", Duration::from_secs(30), || async { refused.lock().unwrap().len() >= 3 })
        .await;
    let (s, ready) = node.get("/ready").await;
    assert_eq!(s, 503, "{ready}");
    assert_eq!(ready["memory"]["ready"], false, "{ready}");
    let (s, p) = node.get("/v1/memory/search?q=record").await;
    assert_eq!((s, p["type"].as_str()), (503, Some("https://caxton.dev/problems/memory-unavailable")), "{p}");
    let during = acked.lock().unwrap().len();
    pg.start_again();
    eventually("writes after the outage", Duration::from_secs(60), || async {
        acked.lock().unwrap().len() >= during + 20
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for w in writers {
        w.await.unwrap();
    }
    let refused = refused.lock().unwrap().clone();
    assert!(
        refused.iter().all(|(s, t, retry)| *s == 503 && t.ends_with("/memory-unavailable") && retry.is_some()),
        "only clear 503s with Retry-After: {refused:?}"
    );
    let acked = acked.lock().unwrap().clone();
    let stored: std::collections::HashSet<String> =
        pg.psql("outage", "SELECT name FROM caxton_memory_entities").lines().map(str::to_owned).collect();
    let lost: Vec<&String> = acked.iter().filter(|n| !stored.contains(*n)).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    eventually("ready again", Duration::from_secs(30), || async { node.get("/ready").await.0 == 200 }).await;
    let (s, v) = node.get("/v1/memory/search?q=record%20of%20the%20load%20test&limit=3").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["results"].as_array().unwrap().len(), 3);
}

/// A node cannot quietly move a cluster's memory: restarted on the other
/// backend it refuses, naming the migration path; with
/// `memory.migrate_from` it moves, and export/import carries the memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_backends_is_refused_unless_declared_as_a_migration() {
    let pg = TestPostgres::start();
    pg.create_database("moved");
    let mut node = TestNode::start().await;
    let (s, _) = node
        .post_json(
            "/v1/memory/entities",
            json!({"name": "kept", "entity_type": "fact", "observations": ["Moved memories keep their meaning."]}),
        )
        .await;
    assert_eq!(s, 201);
    let export = node.dir.path().join("memory.json");
    assert!(node.cli(&["memory", "export", "--output", export.to_str().unwrap()]).status.success());
    node.terminate().await;

    node.reconfigure(|o| o.tables = pg.memory_config("moved"));
    node.relaunch();
    let status = node.wait_exit(Duration::from_secs(60)).await;
    assert!(!status.success());
    let log = node.log();
    assert!(
        log.contains("keeps its memory in the `embedded` backend")
            && log.contains("memory.migrate_from = \"embedded\""),
        "{log}"
    );

    node.reconfigure(|o| {
        o.tables =
            format!("{}\n", pg.memory_config("moved").replace("[memory]\n", "[memory]\nmigrate_from = \"embedded\"\n"))
    });
    node.restart().await;
    let out = node.cli(&["memory", "import", export.to_str().unwrap()]);
    assert!(stdout(&out).contains("imported 1 entities"), "{}{}", stdout(&out), stderr(&out));
    let (s, v) = node.get("/v1/memory/search?q=meaning%20of%20moved%20memories&limit=1").await;
    assert_eq!((s, v["results"][0]["name"].as_str()), (200, Some("kept")), "{v}");
    assert_eq!(pg.psql("moved", "SELECT count(*) FROM caxton_memory_entities"), "1");
}
