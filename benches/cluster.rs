//! Three-node cluster benchmarks with the real binary on loopback:
//! committed writes/s, the added latency of a message answered on another
//! node, and failover time from a leader kill -9 to the first accepted write.
//!
//! Run: `cargo bench --bench cluster` (plain HTTP between nodes, as on a
//! loopback dev cluster), `cargo bench --bench cluster -- --tls` (mutual TLS
//! with certificates from a cluster CA, as off loopback), or
//! `-- --compare` for both, one after the other; `-- --failover` kills the
//! leader five times at the server's default Raft timing and reports each
//! (`-- --failover --before`: at the former defaults, for comparison).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use caxton_testing::{agent_toml, echo_agent_toml, eventually, figures, percentile, ClusterOptions, TestCluster};
use serde_json::json;

fn ms(v: &mut [Duration], p: f64) -> f64 {
    percentile(v, p).as_secs_f64() * 1e3
}

async fn writes_per_second(cluster: &TestCluster, leader: u64) {
    let node = cluster.node(leader);
    for writers in [1usize, 32, 128] {
        let done = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut tasks = Vec::new();
        for w in 0..writers {
            let (http, url, done) = (node.http.clone(), node.url("/v1/agents"), done.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = 0;
                while Instant::now() < deadline {
                    let body = agent_toml(&format!("w{writers}-{w}-{i}"), "x");
                    if let Ok(r) = http.post(&url).header("content-type", "application/toml").body(body).send().await {
                        if r.status() == 201 {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    i += 1;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let rate = done.load(Ordering::Relaxed) as f64 / 5.0;
        println!("committed writes/s on 3 nodes, {writers:>3} writers at the leader: {rate:.0}");
        if writers == 32 {
            figures::record("cluster.deploys_32.rate", rate);
        }
    }
}

async fn routed_latency(cluster: &TestCluster, leader: u64) {
    let node = cluster.node(leader);
    // After the write load, followers may still be applying (not ready,
    // so owning nothing): measure once placement has settled on all three.
    let t = Instant::now();
    eventually("every node owns shards again", Duration::from_secs(120), || async {
        node.get("/v1/cluster/placement").await.1["nodes"].as_array().is_some_and(|n| n.len() == 3)
    })
    .await;
    println!("placement settled on 3 nodes {:.1} s after the write load", t.elapsed().as_secs_f64());
    for i in 0..24 {
        node.post_toml("/v1/agents", &echo_agent_toml(&format!("lat-{i}"), &[])).await;
    }
    // Measure once every agent runs on its owner (not its start-up).
    eventually("the 24 agents running on their owners", Duration::from_secs(30), || async {
        for i in 0..24 {
            let path = format!("/v1/agents/lat-{i}");
            let owner = node.get(&path).await.1["owner_node"].as_u64().unwrap_or(0);
            if owner == 0 || cluster.node(owner).get(&path).await.1["state"] != "running" {
                return false;
            }
        }
        true
    })
    .await;
    let (_, agents) = node.get("/v1/agents?limit=500").await;
    let owner_of = |name: &str| {
        agents["agents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == name)
            .map(|a| a["owner_node"].as_u64().unwrap())
    };
    let local: Vec<String> = (0..24).map(|i| format!("lat-{i}")).filter(|n| owner_of(n) == Some(leader)).collect();
    let remote: Vec<String> =
        (0..24).map(|i| format!("lat-{i}")).filter(|n| owner_of(n).is_some_and(|o| o != leader)).collect();
    if local.is_empty() || remote.is_empty() {
        let owners: Vec<Option<u64>> = (0..24).map(|i| owner_of(&format!("lat-{i}"))).collect();
        println!("routed latency: placement put no agent on one side (leader {leader}, owners {owners:?}); skipped");
        return;
    }
    let measure = |names: Vec<String>| async move {
        let mut lat = Vec::new();
        for i in 0..300 {
            let body = json!({"to": names[i % names.len()], "content": "ping"});
            let t = Instant::now();
            let r = node.http.post(node.url("/v1/messages")).json(&body).send().await.unwrap();
            assert_eq!(r.status(), 200);
            lat.push(t.elapsed());
        }
        lat
    };
    let mut same = measure(local).await;
    let mut other = measure(remote).await;
    let (s50, s99, o50, o99) = (ms(&mut same, 0.5), ms(&mut same, 0.99), ms(&mut other, 0.5), ms(&mut other, 0.99));
    println!("message answered on the receiving node: p50 {s50:.2} ms, p99 {s99:.2} ms");
    println!(
        "message answered on another node:       p50 {o50:.2} ms, p99 {o99:.2} ms (added p50 {:.2} ms, p99 {:.2} ms)",
        o50 - s50,
        o99 - s99
    );
}

/// Kills the leader, then deploys through a survivor until one is
/// accepted: the leader killed and the time that took.
async fn kill_leader_until_a_write(cluster: &mut TestCluster, name: &str) -> (u64, Duration) {
    let leader = cluster.wait_leader().await;
    let survivor = (1..=3).find(|id| *id != leader).unwrap();
    cluster.node_mut(leader).kill();
    let t = Instant::now();
    for i in 0.. {
        let r = cluster.node(survivor).post_toml("/v1/agents", &agent_toml(&format!("{name}-{i}"), "x")).await;
        if r.0 == 201 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (leader, t.elapsed())
}

async fn failover(cluster: &mut TestCluster) {
    let (_, took) = kill_leader_until_a_write(cluster, "failover").await;
    println!(
        "failover: leader kill -9 to first accepted write: {:.0} ms (lease 600 + election timeout 300-600 ms in this run)",
        took.as_secs_f64() * 1e3
    );
}

/// Kills the leader of a 3-node cluster at the server's default Raft
/// timing `rounds` times, each time timing kill -9 → the first write a
/// survivor accepts, then bringing the node back and waiting for three
/// ready members before the next round.
/// `before`: the defaults until 2026-12 (heartbeat 500 ms, election
/// 1500-3000 ms), set through the environment, for a side-by-side figure.
async fn failover_at_defaults(rounds: usize, before: bool) {
    let env: Vec<(String, String)> = if before {
        [
            ("CAXTON_CLUSTER_HEARTBEAT_MS", "500"),
            ("CAXTON_CLUSTER_ELECTION_TIMEOUT_MIN_MS", "1500"),
            ("CAXTON_CLUSTER_ELECTION_TIMEOUT_MAX_MS", "3000"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into()
    } else {
        Vec::new()
    };
    println!(
        "== failover at {} Raft timing",
        if before { "the former default (500 / 1500-3000 ms)" } else { "the default (as shipped)" }
    );
    let opts = ClusterOptions { voters: 3, default_raft_timing: true, env, ..Default::default() };
    let mut cluster = TestCluster::start_with(3, opts).await;
    // Steady state first: no election while the leader lives, idle or under
    // 32 writers (the term would move).
    let leader = cluster.wait_leader().await;
    let term = |c: &TestCluster| {
        let url = c.node(leader).url("/v1/cluster/status");
        async move { reqwest::get(url).await.unwrap().json::<serde_json::Value>().await.unwrap()["term"].as_u64().unwrap() }
    };
    let term_before = term(&cluster).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    writes_per_second(&cluster, leader).await;
    let term_after = term(&cluster).await;
    println!(
        "steady state, 10 s idle then 15 s of writes: term {term_before} -> {term_after} ({} elections)",
        term_after - term_before
    );
    let mut times = Vec::new();
    for round in 1..=rounds {
        cluster.wait_members(3, 3).await;
        let (leader, took) = kill_leader_until_a_write(&mut cluster, &format!("failover-{round}")).await;
        println!(
            "round {round}: leader node {leader} killed, first accepted write after {:.0} ms",
            took.as_secs_f64() * 1e3
        );
        times.push(took);
        cluster.node_mut(leader).restart().await;
    }
    let median = ms(&mut times, 0.5);
    println!(
        "failover at defaults over {rounds} kills: median {median:.0} ms, max {:.0} ms",
        times.iter().max().unwrap().as_secs_f64() * 1e3
    );
    if !before {
        figures::record("cluster.failover.median_ms", median);
    }
}

async fn run(tls: bool) {
    println!("== between nodes: {}", if tls { "mutual TLS" } else { "plain HTTP (loopback dev mode)" });
    let opts = ClusterOptions { voters: 3, tls, ..Default::default() };
    let mut cluster = TestCluster::start_with(3, opts).await;
    let leader = cluster.wait_leader().await;
    writes_per_second(&cluster, leader).await;
    routed_latency(&cluster, leader).await;
    failover(&mut cluster).await;
}

/// The reference for committed writes: how many fsyncs/s this disk does
/// (4 KiB appended, then `fdatasync`, as a log append). A design that syncs
/// once per commit, as etcd's and ours do, reaches this rate times the
/// writes each commit carries.
fn fsyncs_per_second() -> f64 {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let mut file = std::fs::File::create(dir.path().join("log")).unwrap();
    let block = [7u8; 4096];
    let n = 300;
    let t = Instant::now();
    for _ in 0..n {
        file.write_all(&block).unwrap();
        file.sync_data().unwrap();
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    println!("this disk: {rate:.0} fsyncs/s (4 KiB append + fdatasync)");
    figures::record("disk.fsync.rate", rate);
    rate
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    fsyncs_per_second();
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    if has("--failover") {
        failover_at_defaults(5, has("--before")).await;
    } else if has("--compare") {
        run(false).await;
        run(true).await;
    } else {
        run(has("--tls")).await;
    }
}
