//! A real Prometheus (Debian's `prometheus`, installed by `make test`)
//! scrapes a three-node cluster's metrics listeners, and the shipped
//! Prometheus files pass `promtool`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use caxton::testing::*;

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
