//! The container image is built from local files (deploy/build-image.sh),
//! deploy/make-secrets.sh makes the admin key, gossip key, CA and node
//! certificates, three containers form a cluster over mutual TLS from
//! deploy/docker-compose.yml with every secret mounted as a file, one is
//! killed and comes back.

use std::process::Command;
use std::time::Duration;

use caxton_testing::*;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed:\n{}\n{}", stdout(&out), stderr(&out));
    stdout(&out)
}

/// A compose project of its own, torn down (containers, volumes, image) on drop.
struct Compose {
    project: String,
    image: String,
    ports: [u16; 3],
    secrets: tempfile::TempDir,
}

impl Compose {
    fn command(&self) -> Command {
        let mut c = Command::new("docker-compose");
        c.args(["-p", &self.project, "-f", &format!("{ROOT}/deploy/docker-compose.yml")]);
        c.env("CAXTON_IMAGE", &self.image).env("CAXTON_SECRETS", self.secrets.path());
        c.env_remove("CAXTON_ADMIN_KEY").env_remove("CAXTON_CLUSTER_SECRET");
        for (i, p) in self.ports.iter().enumerate() {
            c.env(format!("CAXTON_PORT_{}", i + 1), p.to_string());
        }
        c
    }

    fn url(&self, node: usize, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports[node - 1])
    }

    fn logs(&self) -> String {
        self.command().args(["logs", "--no-color", "--tail", "40"]).output().map(|o| stdout(&o)).unwrap_or_default()
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        let _ = self.command().args(["down", "-v", "--timeout", "5"]).output();
        let _ = Command::new("docker").args(["rmi", "-f", &self.image]).output();
    }
}

async fn get(http: &reqwest::Client, url: &str) -> Option<serde_json::Value> {
    let r = http.get(url).send().await.ok()?;
    r.status().is_success().then_some(())?;
    r.json().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_containers_form_a_cluster_survive_a_kill_and_rejoin() {
    let tag = format!("caxton-test-{}", std::process::id());
    let compose = Compose {
        project: tag.clone(),
        image: format!("{tag}:latest"),
        ports: [free_port(), free_port(), free_port()],
        secrets: tempfile::tempdir().unwrap(),
    };
    run(Command::new(format!("{ROOT}/deploy/make-secrets.sh"))
        .arg(compose.secrets.path())
        .env("CAXTON_BIN", caxton_bin()));
    let admin_key = std::fs::read_to_string(compose.secrets.path().join("admin-key")).unwrap();
    run(Command::new(format!("{ROOT}/deploy/build-image.sh"))
        .arg(caxton_bin())
        .arg(&compose.image)
        .env("INCLUDE_MODELS", "0"));
    run(compose.command().args(["up", "-d"]));
    let http = {
        let mut auth = reqwest::header::HeaderMap::new();
        auth.insert(reqwest::header::AUTHORIZATION, format!("Bearer {}", admin_key.trim()).parse().unwrap());
        reqwest::Client::builder().timeout(Duration::from_secs(5)).default_headers(auth).build().unwrap()
    };

    let formed = |node: usize| {
        let (http, url) = (http.clone(), compose.url(node, "/v1/cluster/status"));
        async move {
            get(&http, &url).await.is_some_and(|st| {
                let m = st["members"].as_array().cloned().unwrap_or_default();
                m.len() == 3 && m.iter().all(|m| m["role"] == "voter") && st["leader"].is_u64()
            })
        }
    };
    // A poll bounded by a timeout (not `eventually`, so that a failure
    // shows the containers' logs).
    for node in 1..=3 {
        let ok = tokio::time::timeout(Duration::from_secs(90), async {
            while !formed(node).await {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
        .await;
        assert!(ok.is_ok(), "node {node} never saw a three-voter cluster; logs:\n{}", compose.logs());
    }
    // The nodes joined over mutual TLS: the shared secret never authenticated RPC.
    let logs = compose.logs();
    assert!(!logs.contains("TLS handshake failed"), "{logs}");
    let ids: std::collections::HashSet<String> = futures::future::join_all((1..=3).map(|n| {
        let (http, url) = (http.clone(), compose.url(n, "/v1/cluster/status"));
        async move { get(&http, &url).await.unwrap()["cluster_id"].as_str().unwrap().to_owned() }
    }))
    .await
    .into_iter()
    .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    // Exposed on every interface, the API answers only to keys.
    let anonymous = reqwest::get(compose.url(1, "/v1/agents")).await.unwrap();
    assert_eq!(anonymous.status(), 401);

    // An agent deployed through one container answers through another.
    let agent = "name = \"boxed\"\nprovider = \"echo\"\nsystem_prompt = \"Echo.\"\n";
    let r = http
        .post(compose.url(2, "/v1/agents"))
        .header("content-type", "application/toml")
        .body(agent)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let ask = |node: usize, text: &str| {
        let (http, url, body) = (
            http.clone(),
            compose.url(node, "/v1/messages"),
            serde_json::json!({"to": "boxed", "content": text, "timeout_ms": 30000}),
        );
        async move {
            http.post(url)
                .timeout(Duration::from_secs(40))
                .json(&body)
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    // Reads (the receiver's lookup among them) are served from each node's
    // own replica: node 3 knows the agent once it has applied the deploy,
    // a heartbeat after node 2 acknowledged it.
    eventually("node 3 has applied the deploy", Duration::from_secs(30), || async {
        http.get(compose.url(3, "/v1/agents/boxed")).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    let reply = ask(3, "hello from node 3").await;
    assert!(reply["reply"]["content"].as_str().unwrap_or_default().contains("hello from node 3"), "{reply}");

    // The founding container dies; the others keep the cluster writable.
    run(compose.command().args(["kill", "caxton-1"]));
    let r = http
        .post(compose.url(2, "/v1/agents"))
        .timeout(Duration::from_secs(30))
        .header("content-type", "application/toml")
        .body(agent.replace("boxed", "while-one-was-down"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());

    // It comes back from its volume and catches up.
    run(compose.command().args(["start", "caxton-1"]));
    eventually("the restarted container has the agent deployed in its absence", Duration::from_secs(90), || async {
        get(&http, &compose.url(1, "/v1/agents/while-one-was-down")).await.is_some()
    })
    .await;
    let reply = ask(1, "back again").await;
    assert!(reply["reply"]["content"].as_str().unwrap_or_default().contains("back again"), "{reply}");
}
