//! `caxton-chaos`: starts a real cluster of `caxton` processes on loopback
//! addresses of their own, drives concurrent clients through the public
//! REST API, injects faults on a seeded schedule, records the history,
//! checks it, and writes a report next to it.
//!
//! ```text
//! caxton-chaos run --seed 42 --minutes 3 --out chaos-out
//! caxton-chaos check chaos-out/history.json
//! ```

mod check;
mod faults;
mod history;
mod report;
mod schedule;
mod workload;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use caxton_testing::{ClusterOptions, TestCluster};
use clap::{Parser, Subcommand};
use serde_json::Value;

use crate::faults::Faults;
use crate::history::{Event, FaultWindow, History, Op, Outcome};
use crate::workload::{Shared, ECHO_AGENTS, KEYS};

#[derive(Parser)]
#[command(name = "caxton-chaos", about = "Fault injection with recorded, checked histories")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a schedule against a fresh cluster and check it.
    Run {
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long, default_value_t = 3.0)]
        minutes: f64,
        /// 3 or 5.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        #[arg(long, default_value_t = 6)]
        clients: usize,
        #[arg(long, default_value = "chaos-out")]
        out: PathBuf,
        /// Seconds the linearizability search may take in all.
        #[arg(long, default_value_t = 60)]
        check_budget: u64,
    },
    /// Check (and report on) a recorded history again.
    Check {
        history: PathBuf,
        #[arg(long, default_value_t = 60)]
        check_budget: u64,
    },
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    // Interrupted: leave no node, firewall rule or mount behind.
    tokio::spawn(async {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            return;
        };
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        let me = std::process::id().to_string();
        let _ = std::process::Command::new("pkill").args(["-KILL", "-P", &me]).status();
        faults::undo_all();
        std::process::exit(130);
    });
    let code = match Cli::parse().command {
        Command::Run { seed, minutes, nodes, clients, out, check_budget } => {
            anyhow::ensure!(nodes == 3 || nodes == 5, "--nodes must be 3 or 5");
            std::fs::create_dir_all(&out)?;
            let history = run(seed, minutes, nodes, clients, &out).await?;
            history.save(&out.join("history.json"))?;
            history.write_jsonl(&out.join("history.jsonl"))?;
            judge(&history, minutes, &out, check_budget)
        }
        Command::Check { history, check_budget } => {
            let h = History::load(&history)?;
            let minutes = h.events.iter().map(|e| e.complete_ms).max().unwrap_or(0) as f64 / 60_000.0;
            judge(&h, minutes, history.parent().unwrap_or(Path::new(".")), check_budget)
        }
    };
    std::process::exit(code)
}

/// Checks, writes the report and the picture; the exit code.
fn judge(h: &History, minutes: f64, out: &Path, budget: u64) -> i32 {
    let findings = check::all(h, Duration::from_secs(budget));
    let summary = report::summary(h, &findings, minutes);
    let _ = std::fs::write(out.join("report.md"), &summary);
    let _ = std::fs::write(out.join("timeline.svg"), report::timeline(h));
    println!("{summary}");
    println!("history, report.md and timeline.svg are in {}", out.display());
    let violated = findings.iter().any(|f| !f.violations.is_empty());
    i32::from(violated)
}

async fn run(seed: u64, minutes: f64, n: usize, clients: usize, out: &Path) -> anyhow::Result<History> {
    let total_s = minutes * 60.0;
    let plan = schedule::plan(seed, total_s);
    println!("seed {seed}: {} faults planned over {minutes} minutes on {n} nodes", plan.len());
    // Loopback addresses of their own, so iptables can cut single nodes.
    let base = 150 + (std::process::id() % 90) as u8;
    let opts = ClusterOptions {
        voters: n,
        ip_base: Some(base),
        server_extra: "agent_versions_kept = 1000000".into(),
        ..Default::default()
    };
    let cluster = TestCluster::start_with(n, opts).await;
    let ips = (0..n).map(|i| format!("127.0.0.{}", base as usize + i + 1)).collect();
    let nodes: Vec<String> = cluster.nodes.iter().map(|node| node.url("")).collect();
    let mut faults = Faults::new(cluster, ips);
    faults.small_disk(n as u64, 1024).await?;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build()?;
    for i in 0..ECHO_AGENTS {
        deploy_with_retries(&http, &nodes, &workload::echo_toml(&format!("echo-{i}"))).await?;
    }
    deploy_with_retries(&http, &nodes, &workload::subscriber_toml()).await?;

    let shared = Arc::new(Shared {
        start: Instant::now(),
        nodes: nodes.clone(),
        events: Default::default(),
        leaders: Default::default(),
        stop: Default::default(),
    });
    let mut tasks = Vec::new();
    for c in 0..clients {
        tasks.push(tokio::spawn(workload::client(shared.clone(), c, seed)));
    }
    let sampler = tokio::spawn(workload::sample_leaders(shared.clone()));

    let mut windows = Vec::new();
    let mut recovery = Vec::new();
    for p in &plan {
        let at = Duration::from_secs_f64(p.at_s);
        if let Some(wait) = at.checked_sub(shared.start.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        let start_ms = shared.ms();
        let detail = match faults.inject(p).await {
            Ok(d) => d,
            Err(e) => {
                eprintln!("fault {} failed: {e:#}; healing everything", p.kind.name());
                if let Err(again) = faults.heal_all().await {
                    let at = shared.ms() as f64 / 1e3;
                    recovery.push(format!("after {} at {at:.1} s: {e:#}; then {again:#}", p.kind.name()));
                }
                format!("ERROR: {e:#}")
            }
        };
        println!("{:>6.1}s {}: {detail}", start_ms as f64 / 1e3, p.kind.name());
        windows.push(FaultWindow { kind: p.kind.name().into(), detail, start_ms, end_ms: shared.ms() });
    }
    if let Some(rest) = Duration::from_secs_f64(total_s).checked_sub(shared.start.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    shared.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await?;
    }
    sampler.await?;
    if let Err(e) = faults.heal_all().await {
        recovery.push(format!("at the end of the schedule: {e:#}"));
    }

    let mut h = History {
        seed,
        events: std::mem::take(&mut *shared.events.lock().unwrap()),
        faults: windows,
        leaders: std::mem::take(&mut *shared.leaders.lock().unwrap()),
        recovery,
        ..Default::default()
    };
    if let Err(e) = finish(&mut h, &shared, &faults, &http).await {
        h.recovery.push(format!("the final checks could not read the cluster: {e:#}"));
    }
    // The nodes' logs go next to the history: a violation needs them.
    for (i, node) in faults.cluster.nodes.iter().enumerate() {
        let _ = std::fs::copy(node.log_path(), out.join(format!("node-{}.log", i + 1)));
    }
    Ok(h)
}

/// Every publication's notification and every auction's end, waiting
/// (up to two minutes in all) for what is acknowledged to settle.
async fn protocols(h: &mut History, leader: &str, http: &reqwest::Client) {
    let mut publications = Vec::new();
    let mut auctions = Vec::new();
    for e in &h.events {
        match &e.op {
            Op::Publish { id } => publications.push(id.clone()),
            Op::Auction { id } => auctions.push(id.clone()),
            _ => {}
        }
    }
    publications.sort();
    publications.dedup();
    auctions.sort();
    auctions.dedup();
    let deadline = Instant::now() + Duration::from_secs(120);
    for id in publications {
        let mut fate = (false, false);
        loop {
            if let Some((200, v)) = get(http, format!("{leader}/v1/messages/{id}.0?consistency=linearizable")).await {
                fate = (true, v["message"]["status"] == "processed");
            }
            if fate.1 || !fate.0 || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        h.publications.push((id, fate.0, fate.1));
    }
    for id in auctions {
        let mut fate = (false, String::new(), 0);
        loop {
            if let Some((200, a)) = get(http, format!("{leader}/v1/auctions/{id}?wait_ms=5000")).await {
                let notices = match get(http, format!("{leader}/v1/conversations/{id}")).await {
                    Some((200, c)) => c["messages"]
                        .as_array()
                        .map(|m| {
                            m.iter()
                                .filter(|m| m["id"].as_str().is_some_and(|i| i.starts_with(&format!("{id}.result."))))
                                .count()
                        })
                        .unwrap_or(0),
                    _ => 0,
                };
                fate = (true, a["state"].as_str().unwrap_or("").to_owned(), notices as u64);
            }
            if !fate.0 || fate.1 != "open" || Instant::now() > deadline {
                break;
            }
        }
        h.auctions.push((id, fate.0, fate.1, fate.2));
    }
}

async fn deploy_with_retries(http: &reqwest::Client, nodes: &[String], toml: &str) -> anyhow::Result<()> {
    for attempt in 0..100 {
        let base = &nodes[attempt % nodes.len()];
        let r = http.post(format!("{base}/v1/agents")).header("content-type", "application/toml").body(toml.to_owned());
        if r.send().await.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("could not deploy {toml}")
}

async fn get(http: &reqwest::Client, url: String) -> Option<(u16, Value)> {
    let r = http.get(url).send().await.ok()?;
    let status = r.status().as_u16();
    Some((status, r.json().await.unwrap_or(Value::Null)))
}

/// After healing: final reads, every message's fate, kept revisions,
/// memory, and the replicas' digests.
async fn finish(h: &mut History, shared: &Shared, faults: &Faults, http: &reqwest::Client) -> anyhow::Result<()> {
    let leader = faults.cluster.nodes.iter().map(|n| n.url("")).next().unwrap_or_default();
    // Acknowledged requests are answered by now, or soon: wait for them.
    let acked: Vec<String> = h
        .events
        .iter()
        .filter_map(|e| match (&e.op, &e.outcome) {
            (Op::Send { id, .. }, Outcome::Ok { .. }) => Some(id.clone()),
            _ => None,
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    for id in &acked {
        while Instant::now() < deadline {
            let url = format!("{leader}/v1/messages/{id}?consistency=linearizable");
            if get(http, url).await.is_some_and(|(s, v)| s == 200 && v["reply"].is_object()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    for k in 0..KEYS {
        let key = format!("kv-{k}");
        let invoke_ms = shared.ms();
        let outcome = workload::read(http, &leader, &key).await;
        h.events.push(Event {
            client: usize::MAX,
            invoke_ms,
            complete_ms: shared.ms(),
            node: 1,
            op: Op::Read { key: key.clone() },
            outcome,
        });
        if let Some((200, v)) = get(http, format!("{leader}/v1/agents/{key}/revisions")).await {
            let hashes = v["revisions"]
                .as_array()
                .map(|a| a.iter().filter_map(|r| r["hash"].as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
            h.revisions.push((key, hashes));
        }
        let mem = format!("mem-{k}");
        if let Some((200, v)) = get(http, format!("{leader}/v1/memory/entities/{mem}")).await {
            let texts = v["observations"]
                .as_array()
                .map(|a| a.iter().filter_map(|o| o["text"].as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
            h.memory.push((mem, texts));
        }
    }
    let mut ids: Vec<String> = h
        .events
        .iter()
        .filter_map(|e| match &e.op {
            Op::Send { id, .. } => Some(id.clone()),
            _ => None,
        })
        .collect();
    ids.sort();
    ids.dedup();
    for id in ids {
        let fate = match get(http, format!("{leader}/v1/conversations/conv-{id}")).await {
            Some((200, c)) => {
                let replies = c["messages"]
                    .as_array()
                    .map(|m| m.iter().filter(|m| m["reply_to"] == id.as_str()).count())
                    .unwrap_or(0);
                let exists = c["messages"].as_array().is_some_and(|m| m.iter().any(|m| m["id"] == id.as_str()));
                (exists, replies as u64)
            }
            _ => (false, 0),
        };
        h.messages.push((id, fate.0, fate.1));
    }
    protocols(h, &leader, http).await;
    // Digests once every replica has applied the same index.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut digests = Vec::new();
        for node in &faults.cluster.nodes {
            if let Some((200, d)) = get(http, node.url("/v1/cluster/digest")).await {
                digests.push((
                    d["node"].as_u64().unwrap_or(0),
                    d["applied_index"].as_u64().unwrap_or(0),
                    d["digest"].as_str().unwrap_or("").to_owned(),
                ));
            }
        }
        let same_index = digests.len() == faults.cluster.nodes.len() && digests.windows(2).all(|w| w[0].1 == w[1].1);
        if same_index || Instant::now() > deadline {
            h.digests = digests;
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok(())
}
