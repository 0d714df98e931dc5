//! A real `caxton` process on loopback in a temp dir: talk to it over HTTP
//! and through its CLI, stop it (SIGTERM), kill it (SIGKILL), restart it.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use super::{caxton_bin, free_port, models_dir, signal};

#[derive(Default)]
pub struct NodeOptions {
    /// Extra keys of the `[server]` table.
    pub extra_config: String,
    /// Extra tables appended to the config (e.g. `[llm.providers.x]`).
    pub tables: String,
    /// Extra keys of the `[cluster]` table.
    pub cluster_extra: String,
    /// Fixed ports (api, rpc) instead of fresh ones (cluster members).
    pub ports: Option<(u16, u16)>,
    /// Address the RPC listener binds (default 127.0.0.1).
    pub rpc_host: Option<String>,
    pub agents_dir: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    pub args: Vec<String>,
    /// A data directory copied in before the first start (a fixture).
    pub seed_data: Option<PathBuf>,
    /// Run with API keys: this is the bootstrap admin key (`CAXTON_ADMIN_KEY`);
    /// `http` and `cli` present it. `None`: dev mode.
    pub admin_key: Option<String>,
    /// Run the process in a mount namespace of its own where this file is
    /// `/etc/hosts` (root only): host names the test controls, re-read at
    /// every lookup, as cluster DNS is.
    pub hosts_file: Option<PathBuf>,
    /// Run with the server's default Raft timing instead of the tests'
    /// faster one (a failover measured as operators would see it).
    pub default_raft_timing: bool,
}

/// A bootstrap admin key for tests that run a node with keys.
pub const TEST_ADMIN_KEY: &str = "test-admin-key-0123456789abcdef";

/// An HTTP client that presents `token` as its bearer key.
pub fn keyed_client(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
    reqwest::Client::builder().timeout(Duration::from_secs(60)).default_headers(headers).build().unwrap()
}

pub struct TestNode {
    pub dir: tempfile::TempDir,
    pub api_port: u16,
    /// The metrics listener (`server.metrics_listen`).
    pub metrics_port: u16,
    pub rpc_port: u16,
    pub child: Option<Child>,
    opts: NodeOptions,
    pub http: reqwest::Client,
}

impl TestNode {
    pub async fn start() -> Self {
        Self::start_with(NodeOptions::default()).await
    }

    /// Starts the process without waiting for readiness.
    pub fn spawn_with(opts: NodeOptions) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (api_port, rpc_port) = opts.ports.unwrap_or_else(|| (free_port(), free_port()));
        let http = match &opts.admin_key {
            Some(key) => keyed_client(key),
            None => reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap(),
        };
        let mut node = Self { dir, api_port, metrics_port: free_port(), rpc_port, child: None, opts, http };
        if let Some(seed) = &node.opts.seed_data {
            copy_dir(seed, &node.data_dir());
        }
        node.spawn();
        node
    }

    pub async fn start_with(opts: NodeOptions) -> Self {
        let mut node = Self::spawn_with(opts);
        node.wait_ready().await;
        node
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.api_port, path)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("node.log")
    }

    /// The node's output so far. The node writes its log from a thread of
    /// its own, moments after a line is logged: this waits until the file
    /// has stopped growing for a while (at most a few seconds, for a node
    /// that never stops logging), so a line logged before an answer the
    /// test already has is in it.
    pub fn log(&self) -> String {
        let size = || std::fs::metadata(self.log_path()).map(|m| m.len()).unwrap_or(0);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        let mut seen = size();
        loop {
            std::thread::sleep(std::time::Duration::from_millis(60));
            let now = size();
            if now == seen || std::time::Instant::now() > deadline {
                break;
            }
            seen = now;
        }
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("caxton.toml")
    }

    fn spawn(&mut self) {
        self.write_config();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).unwrap();
        let mut cmd = match &self.opts.hosts_file {
            None => Command::new(caxton_bin()),
            Some(hosts) => {
                // unshare → sh → caxton, each exec'd: the child's pid is the server's.
                let mut c = Command::new("unshare");
                c.args(["--mount", "sh", "-c", "mount --bind \"$0\" /etc/hosts && exec \"$@\""]);
                c.arg(hosts).arg(caxton_bin());
                c
            }
        };
        cmd.arg("server").arg("start").arg("--config").arg(self.config_path());
        cmd.args(&self.opts.args);
        cmd.env_remove("CAXTON_ADMIN_KEY");
        if let Some(key) = &self.opts.admin_key {
            cmd.env("CAXTON_ADMIN_KEY", key);
        }
        for (k, v) in &self.opts.env {
            cmd.env(k, v);
        }
        cmd.env("CAXTON_MODELS_DIR", models_dir());
        cmd.env_remove("RUST_LOG").stdout(log.try_clone().unwrap()).stderr(log).stdin(Stdio::null());
        self.child = Some(cmd.spawn().expect("spawn caxton"));
    }

    fn write_config(&self) {
        let agents_dir = self.opts.agents_dir.as_ref().map(|d| d.display().to_string()).unwrap_or_default();
        let timing = if self.opts.default_raft_timing {
            ""
        } else {
            "heartbeat_ms = 100\nelection_timeout_min_ms = 300\nelection_timeout_max_ms = 600"
        };
        let config = format!(
            "[server]\nlisten = \"127.0.0.1:{}\"\nmetrics_listen = \"127.0.0.1:{}\"\ndata_dir = \"{}\"\nagents_dir = \"{}\"\nagents_reload_ms = 100\n{}\n[cluster]\nrpc_listen = \"{}:{}\"\n{}\n{}\n{}\n",
            self.api_port,
            self.metrics_port,
            self.data_dir().display(),
            agents_dir,
            self.opts.extra_config,
            self.opts.rpc_host.as_deref().unwrap_or("127.0.0.1"),
            self.rpc_port,
            timing,
            self.opts.cluster_extra,
            self.opts.tables,
        );
        std::fs::write(self.config_path(), config).unwrap();
    }

    /// Changes the options and rewrites the config file under the running
    /// process (for reload tests); nothing is restarted.
    pub fn rewrite_config(&mut self, change: impl FnOnce(&mut NodeOptions)) {
        change(&mut self.opts);
        self.write_config();
    }

    pub async fn wait_ready(&mut self) {
        let url = self.url("/ready");
        let http = self.http.clone();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(&url).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("node exited with {status} before becoming ready; log:\n{}", self.log());
            }
            if Instant::now() > deadline {
                panic!("node did not become ready; log:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for the exit status (polling, so the async runtime
    /// keeps serving other tasks meanwhile).
    pub async fn terminate(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("node is running");
        signal(c.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!("node did not exit within 30s of SIGTERM; log:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for the process to exit by itself (a start that must fail).
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            let c = self.child.as_mut().expect("node is running");
            if let Some(status) = c.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            if Instant::now() > deadline {
                panic!("node still running after {within:?}; log:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Changes how the next `restart` or `relaunch` starts the process.
    pub fn reconfigure(&mut self, change: impl FnOnce(&mut NodeOptions)) {
        change(&mut self.opts);
    }

    /// Starts the stopped process again without waiting for readiness.
    pub fn relaunch(&mut self) {
        assert!(self.child.is_none(), "stop the node first");
        self.spawn();
    }

    /// Starts the stopped process again on the same data dir and ports and
    /// waits until it is ready.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the node first");
        self.spawn();
        self.wait_ready().await;
    }

    /// Runs the CLI against this node (with the admin key, if it has one).
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_as(self.opts.admin_key.as_deref(), args)
    }

    /// Runs the CLI against this node presenting `key` (`CAXTON_API_KEY`).
    pub fn cli_as(&self, key: Option<&str>, args: &[&str]) -> Output {
        let mut cmd = Command::new(caxton_bin());
        cmd.arg("--server").arg(self.url("")).args(args);
        // No credentials file of the user running the tests.
        cmd.env_remove("CAXTON_SERVER").env_remove("CAXTON_API_KEY").env_remove("CAXTON_CREDENTIALS");
        cmd.env("XDG_CONFIG_HOME", self.dir.path());
        if let Some(key) = key {
            cmd.env("CAXTON_API_KEY", key);
        }
        cmd.output().expect("run caxton CLI")
    }

    /// Creates a key through the API (as the admin) and returns its token.
    pub async fn create_key(&self, body: serde_json::Value) -> String {
        let (s, v) = self.post_json("/v1/keys", body).await;
        assert_eq!(s, 201, "creating a key: {v}");
        v["token"].as_str().unwrap().to_owned()
    }

    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let r = self.http.get(self.url(path)).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub async fn post_toml(&self, path: &str, toml: &str) -> (u16, serde_json::Value) {
        self.send(reqwest::Method::POST, path, "application/toml", toml.to_owned()).await
    }

    pub async fn post_json(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.send(reqwest::Method::POST, path, "application/json", body.to_string()).await
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        ctype: &str,
        body: String,
    ) -> (u16, serde_json::Value) {
        let r =
            self.http.request(method, self.url(path)).header("content-type", ctype).body(body).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub async fn delete(&self, path: &str) -> (u16, serde_json::Value) {
        let r = self.http.delete(self.url(path)).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub async fn agent_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        let mut after = String::new();
        loop {
            let (s, page) = self.get(&format!("/v1/agents?limit=500&after={after}")).await;
            assert_eq!(s, 200, "{page}");
            for a in page["agents"].as_array().unwrap() {
                names.push(a["name"].as_str().unwrap().to_owned());
            }
            match page["next"].as_str() {
                Some(n) => after = n.to_owned(),
                None => return names,
            }
        }
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Deploys an agent over HTTP, asserting success.
pub async fn deploy(node: &TestNode, toml: &str) {
    let (s, body) = node.post_toml("/v1/agents", toml).await;
    assert!(s == 201 || s == 200, "deploy failed: {s} {body}");
}

/// Sends a message and waits for the reply (sync mode).
pub async fn ask(node: &TestNode, to: &str, content: &str) -> serde_json::Value {
    let body = serde_json::json!({"to": to, "content": content, "timeout_ms": 60000});
    let (s, v) = node.send(reqwest::Method::POST, "/v1/messages", "application/json", body.to_string()).await;
    assert_eq!(s, 200, "{v}");
    v
}

/// Copies a directory tree (fixtures are small).
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
