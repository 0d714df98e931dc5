//! Helpers shared by the integration tests (`tests/`) and the benchmarks
//! (`benches/`): real `caxton` processes on loopback ([`TestNode`],
//! [`TestCluster`]), a node inside the calling process ([`InProcessNode`]),
//! a scripted OpenAI-compatible server ([`OpenAiStub`]), a real browser
//! over WebDriver ([`Browser`]), and small tools
//! ([`eventually`], [`free_port`], [`percentile`], agent definitions).
//!
//! A crate of its own (`caxton-testing`): the tests, benches and the chaos
//! runner depend on it, and nothing of it is compiled into the server,
//! whatever is built together with it.

mod browser;
mod cluster;
pub mod figures;
mod in_process;
mod node;
mod openai_stub;
mod postgres;

use std::future::Future;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use browser::{screenshot_dir, Browser, Element, LogEntry};
pub use cluster::{node_host, ClusterOptions, TestCluster};
pub use in_process::InProcessNode;
pub use node::{ask, deploy, keyed_client, NodeOptions, TestNode, TEST_ADMIN_KEY};
pub use openai_stub::{last_of_role, OpenAiStub, StubReply};
pub use postgres::{postgres_install, TestPostgres};

/// The `caxton` binary under test.
///
/// A library cannot use `env!("CARGO_BIN_EXE_caxton")` (cargo sets it only
/// while compiling integration tests and benches), so the path is found at
/// run time, first of:
/// - `CAXTON_TEST_BIN`: an explicit choice (e.g. a copy of the binary, when
///   several checkouts share one `CARGO_TARGET_DIR` and so one
///   `target/debug/caxton`);
/// - `CARGO_BIN_EXE_caxton`, which `cargo test` also sets at run time;
/// - the binary cargo builds next to the test or bench executable
///   (`target/<profile>/deps/<test>-<hash>` → `target/<profile>/caxton`),
///   for an executable started directly.
pub fn caxton_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(path) = std::env::var_os("CAXTON_TEST_BIN").or_else(|| std::env::var_os("CARGO_BIN_EXE_caxton")) {
            return path.into();
        }
        let exe = std::env::current_exe().expect("the path of the running test executable");
        let mut dir = exe.parent().expect("the executable is in a directory");
        if dir.ends_with("deps") {
            dir = dir.parent().expect("deps/ is inside the profile directory");
        }
        let bin = dir.join(format!("caxton{}", std::env::consts::EXE_SUFFIX));
        assert!(
            bin.exists(),
            "{} does not exist: run through `cargo test`/`cargo bench` (which build it) or set CAXTON_TEST_BIN",
            bin.display()
        );
        bin
    })
}

/// A path inside the repository (the `caxton` package root, the parent of
/// this crate's directory).
pub fn repo_path(relative: impl AsRef<Path>) -> PathBuf {
    let testing = Path::new(env!("CARGO_MANIFEST_DIR"));
    testing.parent().expect("testing/ is inside the repository").join(relative)
}

/// The repository's model weights (`make models`), or `CAXTON_MODELS_DIR`.
pub fn models_dir() -> PathBuf {
    std::env::var_os("CAXTON_MODELS_DIR").map(PathBuf::from).unwrap_or_else(|| repo_path("models"))
}

/// A cluster CA in `dir/ca` and certificates for nodes `ids` in `dir`
/// (`node-N.crt`, `node-N.key`, `ca.crt`), made with the library
/// `caxton cluster ca init` / `cert issue` use.
pub fn cluster_pki(dir: &Path, ids: impl IntoIterator<Item = u64>) {
    caxton_cluster::pki::init_ca(&dir.join("ca"), "test", 30).expect("creating a test CA");
    node_certs(dir, ids, None);
}

/// (Re-)issues the certificates of nodes `ids` from the CA in `dir/ca`,
/// valid for 30 days or for `valid_for`; written over the old ones.
pub fn node_certs(dir: &Path, ids: impl IntoIterator<Item = u64>, valid_for: Option<std::time::Duration>) {
    use caxton_cluster::pki;
    let ca = dir.join("ca");
    for node_id in ids {
        let request = pki::NodeCertRequest {
            node_id,
            hostnames: vec!["localhost".into()],
            ips: vec![[127, 0, 0, 1].into()],
            valid_days: 30,
        };
        let stem = pki::default_stem(node_id);
        match valid_for {
            None => pki::issue_node_cert(&ca, &request, dir, &stem),
            Some(d) => pki::issue_node_cert_for(&ca, &request, dir, &stem, d),
        }
        .expect("issuing a test node certificate");
    }
}

/// The `[cluster]` lines giving node `id` its TLS material from a
/// [`cluster_pki`] directory.
pub fn cluster_tls_config(dir: &Path, id: u64) -> String {
    let file = |name: String| dir.join(name).display().to_string();
    format!(
        "tls_ca_file = \"{}\"\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
        file("ca.crt".into()),
        file(format!("node-{id}.crt")),
        file(format!("node-{id}.key"))
    )
}

/// The value of the sample of metric `name` whose labels include every
/// `(label, value)` of `labels`, from a Prometheus text exposition.
pub fn metric_value(exposition: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    exposition.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
        let matches = metric == name && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
        matches.then(|| value.parse().ok()).flatten()
    })
}

/// A free loopback TCP port (bound and released; fine for tests on one machine).
pub fn free_port() -> u16 {
    unassigned_port(|p| TcpListener::bind(("127.0.0.1", p)).is_ok())
}

/// A free loopback UDP port (gossip).
pub fn free_udp_port() -> u16 {
    unassigned_port(|p| UdpSocket::bind(("127.0.0.1", p)).is_ok())
}

/// A port below the kernel's ephemeral range (32768 and up), found free.
/// A port the kernel hands out for `:0` is also what it hands the next
/// outgoing connection (an HTTP client, a peer RPC), which could take it in
/// the time between this call and the node binding it; ports below the
/// range are never handed out, so one found free stays free. A counter keeps
/// this process from handing the same port twice; the pid spreads processes.
fn unassigned_port(free: impl Fn(u16) -> bool) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let offset = (std::process::id() % 40) * (SPAN / 40);
    for _ in 0..SPAN {
        let port = (LOW + (offset + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN) as u16;
        if free(port) {
            return port;
        }
    }
    panic!("no free loopback port in {LOW}..{}", LOW + SPAN)
}

/// Polls `cond` until it holds; panics naming `what` once `timeout` has passed.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually_some(what, timeout, || {
        let fut = cond();
        async move { fut.await.then_some(()) }
    })
    .await
}

/// Polls `probe` until it yields a value and returns it; panics naming
/// `what` once `timeout` has passed.
pub async fn eventually_some<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(v) = probe().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out after {timeout:?} waiting for: {what}");
}

/// Resident memory of process `pid` in KiB (`VmRSS`; Linux);
/// `std::process::id()` for the caller's own.
pub fn resident_kb(pid: u32) -> f64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// The `p`-quantile (0.0..=1.0, nearest rank) of `samples`, which it sorts.
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    assert!(!samples.is_empty(), "percentile of no samples");
    samples.sort_unstable();
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
}

/// A minimal valid agent definition (default provider).
pub fn agent_toml(name: &str, prompt: &str) -> String {
    format!("name = \"{name}\"\nversion = \"1.0.0\"\ncapabilities = [\"echo\"]\nsystem_prompt = \"{prompt}\"\n")
}

/// An agent on the zero-latency `echo` provider, answering with what it is sent.
pub fn echo_agent_toml(name: &str, capabilities: &[&str]) -> String {
    format!("name = \"{name}\"\nprovider = \"echo\"\ncapabilities = {capabilities:?}\nsystem_prompt = \"Echo.\"\n")
}

/// Sends a signal (`TERM`, `KILL`, `STOP`, ...) to a process.
pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
}

pub fn write(dir: &Path, file: &str, text: &str) {
    std::fs::write(dir.join(file), text).unwrap();
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
