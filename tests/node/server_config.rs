//! `caxton server start` configuration: file, environment, flags, errors.

use std::process::Command;

use caxton::testing::*;

fn start_expecting_failure(config: &str, env: &[(&str, &str)]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("caxton.toml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = Command::new(caxton_bin());
    cmd.args([
        "server",
        "start",
        "--config",
        path.to_str().unwrap(),
        "--data-dir",
        dir.path().join("d").to_str().unwrap(),
    ]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (out.status.code().unwrap_or(-1), stderr(&out))
}

#[test]
fn bad_config_exits_2_naming_key_value_and_reason() {
    let (code, err) = start_expecting_failure("[server]\nlisten = \"localhost-ish\"\n", &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("server.listen") && err.contains("localhost-ish") && err.contains("expected an IP address"),
        "{err}"
    );

    let (code, err) = start_expecting_failure("[server]\nmax_body_bytes = 5\n", &[]);
    assert_eq!(code, 2);
    assert!(err.contains("server.max_body_bytes = \"5\": must be at least 1024"), "{err}");

    let (code, err) = start_expecting_failure("[clustr]\nnode_id = 2\n", &[]);
    assert_eq!(code, 2);
    assert!(err.contains("clustr") && err.contains(":1:"), "{err}");

    let (code, err) = start_expecting_failure("", &[("CAXTON_CLUSTER_HEARTBEAT_MS", "soon")]);
    assert_eq!(code, 2);
    assert!(err.contains("CAXTON_CLUSTER_HEARTBEAT_MS=\"soon\": expected an integer"), "{err}");

    let (code, err) = start_expecting_failure("[log]\nformat = \"xml\"\n", &[]);
    assert_eq!(code, 2);
    assert!(err.contains("format") && err.contains("xml"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_overrides_the_file() {
    let other = free_port();
    let node = TestNode::start_with(NodeOptions {
        env: vec![("CAXTON_CLUSTER_ADVERTISE_API".into(), format!("10.9.8.7:{other}"))],
        ..Default::default()
    })
    .await;
    let (_, s) = node.get("/v1/cluster/status").await;
    assert_eq!(s["members"][0]["api_addr"], format!("10.9.8.7:{other}"));
}

#[test]
fn configuration_doc_lists_every_key_and_variable() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md")).unwrap();
    for (key, var) in caxton::config::ServerConfig::env_variables() {
        // Provider keys are documented once, for `local`; `echo` has the same.
        let key = key.replace("llm.providers.echo.", "llm.providers.local.");
        let var = var.replace("CAXTON_LLM_PROVIDERS_ECHO_", "CAXTON_LLM_PROVIDERS_LOCAL_");
        assert!(doc.contains(&format!("`{key}`")), "docs/configuration.md lacks key {key}");
        assert!(doc.contains(&format!("`{var}`")), "docs/configuration.md lacks variable {var}");
    }
}

/// `CAXTON_CONFIG_PATH` names the config file (a ConfigMap on Kubernetes)
/// when `--config` is not given.
#[test]
fn the_config_file_can_come_from_caxton_config_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("from-env.toml");
    std::fs::write(&file, "[server]\nlisten = \"nowhere\"\n").unwrap();
    let out = std::process::Command::new(caxton::testing::caxton_bin())
        .args(["server", "start"])
        .env("CAXTON_CONFIG_PATH", &file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server.listen") && err.contains("nowhere"), "{err}");
}
