//! Injecting faults into a running cluster of `caxton` processes, and
//! healing them. Network faults are iptables rules on each node's own
//! loopback address (the RPC client binds it, gossip listens on it), so a
//! rule between two addresses cuts exactly those two nodes apart.

use std::process::Command;
use std::time::{Duration, Instant};

use caxton_testing::{signal, TestCluster};
use serde_json::Value;

use crate::schedule::{FaultKind, Planned};

/// Commands that undo what the run did to the machine (rules, mounts), run
/// by `heal`/drop, or by `undo_all` when the run is interrupted.
static UNDO: std::sync::Mutex<Vec<Vec<String>>> = std::sync::Mutex::new(Vec::new());

fn remember_undo(cmd: Vec<String>) {
    UNDO.lock().unwrap_or_else(|p| p.into_inner()).push(cmd);
}

fn forget_undo(cmd: &[String]) {
    UNDO.lock().unwrap_or_else(|p| p.into_inner()).retain(|c| c != cmd);
}

/// Undoes every rule and mount still in place (on SIGINT/SIGTERM).
pub fn undo_all() {
    for cmd in UNDO.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
        let _ = Command::new(&cmd[0]).args(&cmd[1..]).status();
    }
}

fn iptables_delete(rule: &[String]) -> Vec<String> {
    let mut cmd = vec!["iptables".to_owned(), "-D".to_owned(), "OUTPUT".to_owned()];
    cmd.extend(rule.iter().cloned());
    cmd
}

/// iptables rules in force; all removed on `heal` and on drop.
#[derive(Default)]
pub struct Firewall {
    rules: Vec<Vec<String>>,
}

impl Firewall {
    fn add(&mut self, rule: Vec<String>) -> anyhow::Result<()> {
        let mut args = vec!["-I".to_owned(), "OUTPUT".to_owned()];
        args.extend(rule.iter().cloned());
        let ok = Command::new("iptables").args(&args).status().map(|s| s.success()).unwrap_or(false);
        anyhow::ensure!(ok, "iptables {args:?} failed (root is needed to partition nodes)");
        remember_undo(iptables_delete(&rule));
        self.rules.push(rule);
        Ok(())
    }

    /// Cuts `a` and `b` apart, both ways.
    pub fn cut(&mut self, a: &str, b: &str) -> anyhow::Result<()> {
        for (s, d) in [(a, b), (b, a)] {
            self.add(["-s", s, "-d", d, "-j", "DROP"].map(str::to_owned).to_vec())?;
        }
        Ok(())
    }

    /// Cuts `ip` off from everyone.
    pub fn isolate(&mut self, ip: &str) -> anyhow::Result<()> {
        for dir in ["-s", "-d"] {
            self.add([dir, ip, "-j", "DROP"].map(str::to_owned).to_vec())?;
        }
        Ok(())
    }

    pub fn heal(&mut self) {
        for rule in self.rules.drain(..) {
            let cmd = iptables_delete(&rule);
            let _ = Command::new(&cmd[0]).args(&cmd[1..]).status();
            forget_undo(&cmd);
        }
    }
}

impl Drop for Firewall {
    fn drop(&mut self) {
        self.heal();
    }
}

/// A node whose data directory is a small filesystem of its own.
pub struct SmallDisk {
    pub node: u64,
    mount: std::path::PathBuf,
}

impl SmallDisk {
    fn filler(&self) -> std::path::PathBuf {
        self.mount.join("filler")
    }
}

fn umount(path: &std::path::Path) -> Vec<String> {
    vec!["umount".to_owned(), "-l".to_owned(), path.display().to_string()]
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let cmd = umount(&self.mount);
        let _ = Command::new(&cmd[0]).args(&cmd[1..]).status();
        forget_undo(&cmd);
    }
}

pub struct Faults {
    pub cluster: TestCluster,
    pub ips: Vec<String>,
    pub firewall: Firewall,
    pub disk: Option<SmallDisk>,
    http: reqwest::Client,
}

async fn json(http: &reqwest::Client, url: String) -> Option<Value> {
    let r = http.get(url).timeout(Duration::from_secs(2)).send().await.ok()?;
    r.status().is_success().then_some(())?;
    r.json().await.ok()
}

impl Faults {
    pub fn new(cluster: TestCluster, ips: Vec<String>) -> Self {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("http client");
        Self { cluster, ips, firewall: Firewall::default(), disk: None, http }
    }

    fn ids(&self) -> Vec<u64> {
        (1..=self.cluster.nodes.len() as u64).collect()
    }

    fn ip(&self, id: u64) -> &str {
        &self.ips[id as usize - 1]
    }

    fn running(&mut self, id: u64) -> bool {
        let node = self.cluster.node_mut(id);
        node.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// The leader as the running nodes agree on it.
    pub async fn leader(&mut self) -> Option<u64> {
        for id in self.ids() {
            if !self.running(id) {
                continue;
            }
            let url = self.cluster.node(id).url("/v1/cluster/status");
            if let Some(s) = json(&self.http, url).await {
                if s["state"] == "leader" {
                    return Some(id);
                }
            }
        }
        None
    }

    async fn leader_or_any(&mut self) -> u64 {
        for _ in 0..50 {
            if let Some(l) = self.leader().await {
                return l;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        1
    }

    fn pick_other(&self, not: &[u64], pick: u64) -> u64 {
        let candidates: Vec<u64> = self.ids().into_iter().filter(|i| !not.contains(i)).collect();
        candidates[(pick % candidates.len() as u64) as usize]
    }

    /// Gives node `id`'s data directory a filesystem of its own (tmpfs,
    /// `size_mb`): stops the node, moves its data onto it, starts it again.
    pub async fn small_disk(&mut self, id: u64, size_mb: u64) -> anyhow::Result<()> {
        let node = self.cluster.node_mut(id);
        let data = node.data_dir();
        node.terminate().await;
        let saved = data.with_extension("saved");
        std::fs::rename(&data, &saved)?;
        std::fs::create_dir_all(&data)?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mb}m"), "tmpfs"])
            .arg(&data)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        anyhow::ensure!(ok, "mounting a {size_mb} MB tmpfs on {} failed (root is needed)", data.display());
        remember_undo(umount(&data));
        let copied = Command::new("cp").arg("-a").arg(format!("{}/.", saved.display())).arg(&data).status()?;
        anyhow::ensure!(copied.success(), "copying the data directory onto the small disk failed");
        std::fs::remove_dir_all(&saved)?;
        self.disk = Some(SmallDisk { node: id, mount: data });
        self.start(id).await
    }

    /// Starts a stopped node and waits (bounded) until it is ready.
    pub async fn start(&mut self, id: u64) -> anyhow::Result<()> {
        if !self.running(id) {
            let node = self.cluster.node_mut(id);
            node.child = None;
            node.relaunch();
        }
        self.wait_ready(id, Duration::from_secs(60)).await
    }

    async fn wait_ready(&mut self, id: u64, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        let url = self.cluster.node(id).url("/ready");
        while Instant::now() < deadline {
            if self.http.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("node {id} was not ready within {within:?}")
    }

    /// Injects `p`, holds it, and heals it. Returns a description.
    pub async fn inject(&mut self, p: &Planned) -> anyhow::Result<String> {
        let hold = Duration::from_secs_f64(p.hold_s);
        let leader = self.leader_or_any().await;
        match p.kind {
            FaultKind::KillLeader | FaultKind::KillFollower | FaultKind::KillOwner => {
                let victim = match p.kind {
                    FaultKind::KillLeader => leader,
                    FaultKind::KillFollower => self.pick_other(&[leader], p.pick),
                    _ => self.owner_of("echo-0").await.unwrap_or(leader),
                };
                self.cluster.node_mut(victim).kill();
                tokio::time::sleep(hold).await;
                self.start(victim).await?;
                Ok(format!("node {victim}"))
            }
            FaultKind::PauseNode => {
                let victim = self.pick_other(&[], p.pick);
                let pid = self.cluster.node(victim).pid();
                signal(pid, "STOP");
                tokio::time::sleep(hold.max(Duration::from_secs(3))).await;
                signal(pid, "CONT");
                Ok(format!("node {victim} for {:.1} s", hold.max(Duration::from_secs(3)).as_secs_f64()))
            }
            FaultKind::IsolateLeader => {
                let ip = self.ip(leader).to_owned();
                self.firewall.isolate(&ip)?;
                tokio::time::sleep(hold).await;
                self.firewall.heal();
                Ok(format!("node {leader}"))
            }
            FaultKind::SplitMinority => {
                let n = self.ids().len();
                let mut minority = vec![self.pick_other(&[], p.pick)];
                while minority.len() < (n - 1) / 2 {
                    let next = self.pick_other(&minority, p.pick / 7 + minority.len() as u64);
                    minority.push(next);
                }
                let majority: Vec<u64> = self.ids().into_iter().filter(|i| !minority.contains(i)).collect();
                self.split(&minority, &majority, hold).await?;
                Ok(format!("{minority:?} | {majority:?}"))
            }
            FaultKind::Bridge => {
                // Two halves sharing one node: every pair across the halves
                // is cut except through the bridge.
                let ids = self.ids();
                let bridge = self.pick_other(&[], p.pick);
                let rest: Vec<u64> = ids.iter().copied().filter(|i| *i != bridge).collect();
                let (left, right) = rest.split_at(rest.len() / 2);
                self.split(left, right, hold).await?;
                Ok(format!("{left:?} - {bridge} - {right:?}"))
            }
            FaultKind::RollingRestart => {
                for id in self.ids() {
                    if self.running(id) {
                        self.cluster.node_mut(id).terminate().await;
                    }
                    self.start(id).await?;
                }
                Ok("every node, one at a time".into())
            }
            FaultKind::TransferLeader => {
                let to = self.pick_other(&[leader], p.pick);
                let url = self.cluster.node(leader).url("/v1/cluster/transfer-leader");
                // The leader lets the target catch up and asks it to stand,
                // up to five times (3 s + 4 s each): the answer can take 35 s.
                let body = serde_json::json!({ "node": to });
                let r = self.http.post(url).json(&body).timeout(Duration::from_secs(40)).send().await?;
                tokio::time::sleep(hold).await;
                Ok(format!("{leader} -> {to} ({})", r.status()))
            }
            FaultKind::DiskFull => {
                let Some(disk) = &self.disk else { anyhow::bail!("no node has a small disk") };
                let (victim, filler) = (disk.node, disk.filler());
                // Writes until the filesystem refuses: ENOSPC is the point.
                let _ = Command::new("dd")
                    .args(["if=/dev/zero", "bs=1M"])
                    .arg(format!("of={}", filler.display()))
                    .stderr(std::process::Stdio::null())
                    .status();
                tokio::time::sleep(hold).await;
                let _ = std::fs::remove_file(&filler);
                // A node whose storage failed stops taking part; restart it.
                if self.wait_ready(victim, Duration::from_secs(5)).await.is_err() || !self.running(victim) {
                    if self.running(victim) {
                        self.cluster.node_mut(victim).kill();
                    }
                    self.start(victim).await?;
                }
                Ok(format!("node {victim}"))
            }
            FaultKind::RemoveReadd => {
                let small = self.disk.as_ref().map(|d| d.node).unwrap_or(0);
                let victim = self.pick_other(&[leader, small], p.pick);
                let url = self.cluster.node(leader).url(&format!("/v1/cluster/members/{victim}/remove"));
                let r = self.http.post(url).send().await?;
                anyhow::ensure!(r.status().is_success(), "removing node {victim}: {}", r.status());
                self.cluster.node_mut(victim).kill();
                let data = self.cluster.node(victim).data_dir();
                std::fs::remove_dir_all(&data)?;
                tokio::time::sleep(hold).await;
                self.start(victim).await?;
                self.wait_voters(self.ids().len(), Duration::from_secs(60)).await?;
                Ok(format!("node {victim}"))
            }
        }
    }

    /// Cuts every pair across the two groups for `hold`, then heals.
    async fn split(&mut self, one: &[u64], other: &[u64], hold: Duration) -> anyhow::Result<()> {
        for a in one {
            for b in other {
                let (ia, ib) = (self.ip(*a).to_owned(), self.ip(*b).to_owned());
                self.firewall.cut(&ia, &ib)?;
            }
        }
        tokio::time::sleep(hold).await;
        self.firewall.heal();
        Ok(())
    }

    async fn owner_of(&self, agent: &str) -> Option<u64> {
        for id in self.ids() {
            if let Some(a) = json(&self.http, self.cluster.node(id).url(&format!("/v1/agents/{agent}"))).await {
                return a["owner_node"].as_u64();
            }
        }
        None
    }

    async fn wait_voters(&mut self, n: usize, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(l) = self.leader().await {
                if let Some(s) = json(&self.http, self.cluster.node(l).url("/v1/cluster/status")).await {
                    let voters = s["members"].as_array().map(|m| m.iter().filter(|m| m["role"] == "voter").count());
                    if voters == Some(n) {
                        return Ok(());
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        anyhow::bail!("the membership did not get back to {n} voters within {within:?}")
    }

    /// Undoes every fault: rules removed, paused nodes continued, the disk
    /// freed, stopped nodes started; waits for a ready cluster.
    pub async fn heal_all(&mut self) -> anyhow::Result<()> {
        self.firewall.heal();
        if let Some(d) = &self.disk {
            let _ = std::fs::remove_file(d.filler());
        }
        for id in self.ids() {
            if let Some(pid) = self.cluster.node(id).child.as_ref().map(|c| c.id()) {
                signal(pid, "CONT");
            }
            self.start(id).await?;
        }
        self.wait_voters(self.ids().len(), Duration::from_secs(60)).await
    }
}
