//! The PostgreSQL memory backend's own behaviour (the shared memory suite
//! runs against it in memory.rs): the settings in every form, the schema
//! migrated once, readiness, TLS refusals, and moving between backends.
//! The database stopping under load: tests/cluster/memory.rs.

use std::time::Duration;

use caxton_testing::*;
use serde_json::json;

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
                // Not the default 8081: another node on this machine may hold it.
                "--rpc-listen",
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
    // TLS is required by default (verify-full): a server without it is refused.
    let pg = TestPostgres::start();
    let (code, err) =
        start(&format!("[memory]\nbackend = \"postgres\"\n[memory.postgres]\nurl = \"{}\"\n", pg.url("postgres")));
    assert_ne!(code, Some(0));
    assert!(err.contains("TLS"), "{err}");
    let (code, err) = start(&format!(
        "[memory]\nbackend = \"postgres\"\n[memory.postgres]\nurl = \"{}\"\ntls = \"require\"\n",
        pg.url("postgres")
    ));
    assert_ne!(code, Some(0));
    assert!(err.contains("TLS"), "{err}");
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
