//! `caxton server start` configuration: file, environment, flags, errors.

use std::process::Command;

use caxton_testing::*;

fn start_expecting_failure(config: &str, env: &[(&str, &str)]) -> (i32, String) {
    start_once(config, &[], env)
}

/// Runs `caxton server start` with `config` as its file, `args` as further
/// flags and `env` (no admin key or cluster secret from the caller's
/// environment); returns the exit code and stderr.
fn start_once(config: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("caxton.toml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = Command::new(caxton_bin());
    cmd.args(["server", "start", "--config", path.to_str().unwrap()]);
    cmd.arg("--data-dir").arg(dir.path().join("d")).args(args);
    cmd.env_remove("CAXTON_ADMIN_KEY").env_remove("CAXTON_CLUSTER_SECRET");
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
    let out = std::process::Command::new(caxton_testing::caxton_bin())
        .args(["server", "start"])
        .env("CAXTON_CONFIG_PATH", &file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server.listen") && err.contains("nowhere"), "{err}");
}

/// How a setting reaches the node.
#[derive(Debug, Clone, Copy)]
enum Source {
    Flag,
    Env,
    File,
}

/// Starts `caxton server start` with `key` (`table.leaf`) set to `value`
/// through `source`, plus `env`; returns the exit code and stderr.
fn start_with_setting(source: Source, key: &str, flag: &str, value: &str, env: &[(&str, &str)]) -> (i32, String) {
    let (table, leaf) = key.split_once('.').unwrap();
    let var = format!("CAXTON_{}", key.replace('.', "_").to_ascii_uppercase());
    let mut env = env.to_vec();
    match source {
        Source::Flag => start_once("", &[flag, value], &env),
        Source::Env => {
            env.push((&var, value));
            start_once("", &[], &env)
        }
        Source::File => start_once(&format!("[{table}]\n{leaf} = \"{value}\"\n"), &[], &env),
    }
}

/// The rules about who may reach a node run on the merged configuration:
/// an address given as a flag (as docs/cluster.md's command line does) is
/// checked exactly as one from the environment or the file. A node whose API
/// others can reach needs an admin key; cluster ports others can reach need
/// TLS material; each refusal names the setting and what to set.
#[test]
fn exposure_is_checked_whichever_source_sets_the_address() {
    let exposed = || format!("0.0.0.0:{}", free_port());
    let admin = [("CAXTON_ADMIN_KEY", TEST_ADMIN_KEY)];
    // (key, flag, environment, what the refusal names)
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: [Case; 3] = [
        ("server.listen", "--listen", &[], &["server.listen", "CAXTON_ADMIN_KEY", "admin_key_file"]),
        ("cluster.rpc_listen", "--rpc-listen", &admin, &["cluster.rpc_listen", "cluster.tls_cert_file"]),
        ("cluster.gossip_listen", "--gossip-listen", &admin, &["cluster.gossip_listen", "cluster.tls_cert_file"]),
    ];
    for (key, flag, env, says) in cases {
        for source in [Source::Flag, Source::Env, Source::File] {
            let (code, err) = start_with_setting(source, key, flag, &exposed(), env);
            assert_eq!(code, 2, "{key} by {source:?} was not refused: {err}");
            for s in says {
                assert!(err.contains(s), "{key} by {source:?}: the refusal does not name `{s}`: {err}");
            }
        }
    }
    // Off loopback the gossip key must be long enough not to be guessed.
    let pki = tempfile::tempdir().unwrap();
    cluster_pki(pki.path(), [1]);
    let tls = cluster_tls_config(pki.path(), 1);
    let with_tls = format!("[cluster]\n{tls}");
    let exposed_rpc = exposed();
    for (secret, refused) in [("short-secret", true), ("a-cluster-secret-of-32-bytes-or-more", false)] {
        // A host name without an ordinal fails after the exposure rules:
        // a start that gets past them exits naming it instead.
        let env = [
            ("CAXTON_ADMIN_KEY", TEST_ADMIN_KEY),
            ("CAXTON_CLUSTER_SECRET", secret),
            ("CAXTON_CLUSTER_NODE_ID_FROM_HOSTNAME", "true"),
            ("HOSTNAME", "no-ordinal"),
        ];
        let (code, err) = start_once(&with_tls, &["--rpc-listen", &exposed_rpc], &env);
        assert_eq!(code, 2, "{err}");
        assert_eq!(err.contains("shorter than 32 bytes"), refused, "{secret}: {err}");
        assert_eq!(err.contains("node_id_from_hostname"), !refused, "{secret}: {err}");
    }
    // A flag is merged like any source: its bad value is named as the flag.
    let (code, err) = start_with_setting(Source::Flag, "cluster.node_id", "--node-id", "0", &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cluster.node_id") && err.contains("at least 1"), "{err}");
    let out = Command::new(caxton_bin())
        .args(["server", "start", "--log-format", "xml", "--data-dir", "/nonexistent/never-created"])
        .env_remove("CAXTON_ADMIN_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--log-format") && stderr(&out).contains("xml"), "{}", stderr(&out));
}

/// The cluster command line of docs/cluster.md, verbatim but for the ports:
/// without the admin key, TLS material and secret the page asks for, the
/// node refuses to start; with them it serves, and every route but the
/// probes needs a key even from a peer that claims `Host: localhost`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_cluster_command_line_starts_only_a_locked_node() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/cluster.md")).unwrap();
    for flag in ["--listen 0.0.0.0:8080", "--rpc-listen 0.0.0.0:8081", "--gossip-listen 0.0.0.0:7946"] {
        assert!(doc.contains(flag), "docs/cluster.md no longer shows `{flag}`");
    }
    let (api, rpc, gossip) = (free_port(), free_port(), free_port());
    let flags = |node: &mut Command| {
        node.args(["--listen", &format!("0.0.0.0:{api}"), "--rpc-listen", &format!("0.0.0.0:{rpc}")]);
        node.args(["--gossip-listen", &format!("0.0.0.0:{gossip}"), "--node-id", "1", "--bootstrap"]);
    };
    let dir = tempfile::tempdir().unwrap();
    let mut bare = Command::new(caxton_bin());
    bare.args(["server", "start", "--data-dir"]).arg(dir.path().join("d"));
    bare.env_remove("CAXTON_ADMIN_KEY").env_remove("CAXTON_CLUSTER_SECRET");
    flags(&mut bare);
    let out = bare.output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // With what the page asks for, it starts, and answers nobody without a key.
    let pki = tempfile::tempdir().unwrap();
    cluster_pki(pki.path(), [1]);
    let _node = TestNode::start_with(NodeOptions {
        admin_key: Some(TEST_ADMIN_KEY.into()),
        ports: Some((api, rpc)),
        env: vec![("CAXTON_CLUSTER_SECRET".into(), "a-cluster-secret-of-32-bytes-or-more".into())],
        cluster_extra: cluster_tls_config(pki.path(), 1),
        args: vec![
            "--listen".into(),
            format!("0.0.0.0:{api}"),
            "--rpc-listen".into(),
            format!("0.0.0.0:{rpc}"),
            "--gossip-listen".into(),
            format!("0.0.0.0:{gossip}"),
        ],
        ..Default::default()
    })
    .await;
    // From an address of this host that is not loopback, claiming localhost.
    let outside = non_loopback_address();
    let anonymous = reqwest::Client::builder().local_address(outside).build().unwrap();
    for path in ["/v1/agents", "/v1/keys", "/v1/memory/export", "/metrics", "/v1/cluster/status"] {
        for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
            let r = anonymous
                .request(method.clone(), format!("http://{outside}:{api}{path}"))
                .header("host", "localhost")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401, "{method} {path} from {outside}");
        }
    }
    let r = anonymous.get(format!("http://{outside}:{api}/health")).send().await.unwrap();
    assert_eq!(r.status(), 200, "probes stay open");
}

/// An address of this host's own interfaces that is not loopback (the one
/// a route to a private network would leave from; nothing is sent).
fn non_loopback_address() -> std::net::IpAddr {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    s.connect("10.255.255.255:9").expect("this host has a non-loopback interface");
    let ip = s.local_addr().unwrap().ip();
    assert!(!ip.is_loopback() && !ip.is_unspecified(), "{ip}");
    ip
}

/// Two nodes started by hand on one host, with nothing but their own API
/// and RPC ports (and a Prometheus, say, on 9090): no default port of the
/// node collides, both serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_started_by_hand_on_one_host_share_no_default_port() {
    let prometheus = std::net::TcpListener::bind("127.0.0.1:9090");
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    for i in 0..2 {
        let (api, rpc) = (free_port(), free_port());
        let child = Command::new(caxton_bin())
            .args([
                "server",
                "start",
                "--listen",
                &format!("127.0.0.1:{api}"),
                "--rpc-listen",
                &format!("127.0.0.1:{rpc}"),
            ])
            .arg("--data-dir")
            .arg(dir.path().join(format!("node-{i}")))
            .env_remove("CAXTON_ADMIN_KEY")
            .env_remove("CAXTON_SERVER_METRICS_LISTEN")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        nodes.push((child, api));
    }
    for (_, api) in &nodes {
        let url = format!("http://127.0.0.1:{api}/ready");
        eventually(&format!("the node on {api} is ready"), std::time::Duration::from_secs(30), || async {
            reqwest::get(&url).await.is_ok_and(|r| r.status() == 200)
        })
        .await;
    }
    for (mut child, _) in nodes {
        let _ = child.kill();
        let _ = child.wait();
    }
    drop(prometheus);
}

async fn preflight_from(node: &TestNode, origin: &str) -> u16 {
    let r = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, node.url("/v1/agents"))
        .header("origin", origin)
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    r.status().as_u16()
}

/// `POST /v1/cluster/reload` and SIGHUP re-read the config file: live keys
/// apply at once, the rest are named as needing a restart, and a file that
/// does not load changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_applies_live_settings_names_the_rest_and_refuses_a_bad_file() {
    let (a, b, c) = ("https://a.example.com", "https://b.example.com", "https://c.example.com");
    let origins = |list: &[&str]| format!("allowed_origins = {list:?}\n");
    let mut node = TestNode::start_with(NodeOptions {
        admin_key: Some(TEST_ADMIN_KEY.into()),
        extra_config: origins(&[a]),
        ..Default::default()
    })
    .await;
    assert_eq!((preflight_from(&node, a).await, preflight_from(&node, b).await), (204, 403));

    node.rewrite_config(|o| {
        o.extra_config = format!("{}request_timeout_ms = 45000\nmax_connections = 100\n", origins(&[b]))
    });
    node.rewrite_config(|o| o.tables = "[log]\nlevel = \"debug\"\n".into());
    let (s, report) = node.post_json("/v1/cluster/reload", serde_json::json!({})).await;
    assert_eq!(s, 200, "{report}");
    let listed = |field: &str| -> Vec<String> {
        report[field].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect()
    };
    for key in ["server.allowed_origins", "server.request_timeout_ms", "log.level"] {
        assert!(listed("applied").contains(&key.to_owned()), "{key} applied: {report}");
    }
    assert_eq!(listed("restart_required"), vec!["server.max_connections".to_owned()], "{report}");
    assert_eq!((preflight_from(&node, a).await, preflight_from(&node, b).await), (403, 204));
    // The same report again: what needs a restart is still pending, nothing else changed.
    let (_, again) = node.post_json("/v1/cluster/reload", serde_json::json!({})).await;
    assert_eq!(again["applied"], serde_json::json!([]), "{again}");
    assert_eq!(again["restart_required"], report["restart_required"]);

    // A file that does not load is refused with its reason; nothing changes.
    node.rewrite_config(|o| o.extra_config = format!("{}request_timeout_ms = \"soon\"\n", origins(&[c])));
    let (s, refused) = node.post_json("/v1/cluster/reload", serde_json::json!({})).await;
    assert_eq!(s, 422, "{refused}");
    assert!(refused["detail"].as_str().unwrap().contains("request_timeout_ms"), "{refused}");
    assert_eq!((preflight_from(&node, b).await, preflight_from(&node, c).await), (204, 403));

    // SIGHUP does the same.
    node.rewrite_config(|o| o.extra_config = origins(&[c]));
    signal(node.pid(), "HUP");
    eventually("SIGHUP applied the new origins", std::time::Duration::from_secs(10), || async {
        preflight_from(&node, c).await == 204 && preflight_from(&node, b).await == 403
    })
    .await;
    assert!(node.log().contains("configuration reloaded"), "{}", node.log());
    // A reader key cannot reload.
    let reader = node.create_key(serde_json::json!({"name": "reader", "scopes": ["read"]})).await;
    let r = keyed_client(&reader).post(node.url("/v1/cluster/reload")).send().await.unwrap();
    assert_eq!(r.status(), 403);
}
