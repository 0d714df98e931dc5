//! Day-2 operations on real clusters: backup and restore, recovery from
//! losing a majority for good, scaling down, and rotating the cluster secret.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use caxton_testing::*;
use serde_json::json;

async fn deploy_on(node: &TestNode, name: &str) -> u16 {
    node.post_toml("/v1/agents", &agent_toml(name, "x")).await.0
}

fn keyed() -> ClusterOptions {
    ClusterOptions { voters: 3, admin_key: Some(TEST_ADMIN_KEY.into()), ..Default::default() }
}

/// Deploys agents on `node` until told to stop; returns what was acknowledged.
fn write_continuously(
    node: &TestNode,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (Arc<Mutex<Vec<String>>>, tokio::task::JoinHandle<()>) {
    let acked = Arc::new(Mutex::new(Vec::new()));
    let (http, url, seen) = (node.http.clone(), node.url("/v1/agents"), acked.clone());
    let task = tokio::spawn(async move {
        let mut i = 0;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let name = format!("load-{i}");
            i += 1;
            let sent = http.post(&url).header("content-type", "application/toml").body(agent_toml(&name, "x")).send();
            if sent.await.map(|r| r.status().as_u16() == 201).unwrap_or(false) {
                seen.lock().unwrap().push(name);
            }
        }
    });
    (acked, task)
}

fn acked_now(acked: &Arc<Mutex<Vec<String>>>) -> BTreeSet<String> {
    acked.lock().unwrap().iter().cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_under_load_restores_to_a_new_cluster_that_answers_the_same_reads() {
    let source = TestCluster::start_with(3, keyed()).await;
    let node = source.node(2);
    for name in ["billing", "support"] {
        assert_eq!(deploy_on(node, name).await, 201);
    }
    // A second revision, so revisions are part of what is compared.
    let (s, v) = node.post_toml("/v1/agents", &agent_toml("billing", "second revision")).await;
    assert!(s == 200 || s == 201, "{v}");
    let reader = node.create_key(json!({"name": "reader", "scopes": ["read"]})).await;
    let (s, v) = node
        .post_json(
            "/v1/memory/entities",
            json!({"name": "window", "entity_type": "fact", "observations": ["Deployments happen on Tuesday at noon."]}),
        )
        .await;
    assert_eq!(s, 201, "{v}");

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (acked, writer) = write_continuously(source.node(3), stop.clone());
    eventually("writes under way", Duration::from_secs(20), || async { acked.lock().unwrap().len() >= 5 }).await;
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("cluster.backup");
    let before = acked_now(&acked);
    let out = node.cli(&["cluster", "backup", file.to_str().unwrap()]);
    let after = acked_now(&acked);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    writer.await.unwrap();
    assert!(out.status.success(), "backup failed: {}", stderr(&out));
    let said = stdout(&out);
    assert!(said.contains("sha256") && said.contains("at index"), "{said}");
    assert!(!work.path().join("cluster.backup.partial").exists(), "the partial file is renamed");

    // Without the admin key there is no backup.
    let refused = node.cli_as(Some(&reader), &["cluster", "backup", work.path().join("no").to_str().unwrap()]);
    assert!(!refused.status.success() && stderr(&refused).contains("403"), "{}", stderr(&refused));
    assert!(!work.path().join("no").exists() && !work.path().join("no.partial").exists());

    // Restored into an empty directory, it founds a new cluster; a damaged
    // copy or a directory in use is refused with the reason.
    let restored = work.path().join("restored");
    let out = node.cli(&["cluster", "restore", file.to_str().unwrap(), "--data-dir", restored.to_str().unwrap()]);
    assert!(out.status.success(), "restore failed: {}", stderr(&out));
    let out = node.cli(&["cluster", "restore", file.to_str().unwrap(), "--data-dir", restored.to_str().unwrap()]);
    assert!(!out.status.success() && stderr(&out).contains("empty directory"), "{}", stderr(&out));
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 100;
    bytes[last] ^= 0x55;
    std::fs::write(work.path().join("damaged.backup"), bytes).unwrap();
    let damaged = work.path().join("damaged.backup");
    let out = node.cli(&[
        "cluster",
        "restore",
        damaged.to_str().unwrap(),
        "--data-dir",
        work.path().join("d").to_str().unwrap(),
    ]);
    assert!(!out.status.success() && stderr(&out).contains("damaged"), "{}", stderr(&out));
    assert!(!work.path().join("d/state.db").exists(), "nothing half-restored is left");

    let copy = TestCluster::start_with(3, ClusterOptions { founder_data: Some(restored), ..keyed() }).await;
    let (_, old_status) = source.node(1).get("/v1/cluster/status").await;
    let (_, new_status) = copy.node(1).get("/v1/cluster/status").await;
    assert_ne!(old_status["cluster_id"], new_status["cluster_id"], "a restore is a new cluster");

    // It holds every write acknowledged before the backup was asked for,
    // and nothing that was never acknowledged.
    let names: BTreeSet<String> = copy.node(2).agent_names().await.into_iter().collect();
    let load: BTreeSet<String> = names.iter().filter(|n| n.starts_with("load-")).cloned().collect();
    assert!(before.is_subset(&load), "lost acknowledged writes: {:?}", before.difference(&load).collect::<Vec<_>>());
    // (At most the one write in flight when the backup was made, acknowledged
    // after the count was taken.)
    assert!(load.difference(&after).count() <= 1, "unacknowledged writes appeared: {load:?}");
    // And answers the same reads as the source for everything it holds.
    for name in names.iter().filter(|n| !n.starts_with("load-")).chain(load.iter().take(3)) {
        let path = format!("/v1/agents/{name}");
        let (_, was) = source.node(1).get(&path).await;
        let (_, is) = copy.node(3).get(&path).await;
        for field in ["name", "version", "revision", "capabilities", "tools", "deployed_at", "updated_at", "toml"] {
            assert_eq!(was[field], is[field], "{name}.{field}");
        }
    }
    let (s, revisions) = copy.node(1).get("/v1/agents/billing/revisions").await;
    assert_eq!(s, 200, "{revisions}");
    assert_eq!(revisions, source.node(1).get("/v1/agents/billing/revisions").await.1);
    let (s, found) = copy.node(3).get("/v1/memory/search?q=when%20do%20we%20deploy&limit=1").await;
    assert_eq!((s, &found["results"][0]["name"]), (200, &json!("window")), "{found}");
    let restored_key = keyed_client(&reader);
    let r = restored_key.get(copy.node(2).url("/v1/agents")).send().await.unwrap();
    assert_eq!(r.status(), 200, "a key created before the backup works in the restored cluster");
    // The new cluster takes writes and replicates them.
    assert_eq!(deploy_on(copy.node(3), "after-restore").await, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_losing_a_majority_for_good_a_survivor_founds_a_new_cluster_and_loses_no_acknowledged_write() {
    let mut cluster = TestCluster::start_with(5, ClusterOptions { voters: 5, ..Default::default() }).await;
    let mut acked = Vec::new();
    for i in 0..20 {
        let name = format!("kept-{i}");
        if deploy_on(cluster.node(1 + i % 5), &name).await == 201 {
            acked.push(name);
        }
    }
    assert_eq!(acked.len(), 20);
    for (id, n) in cluster.running() {
        eventually(&format!("node {id} has every write"), Duration::from_secs(20), || async {
            let names = n.agent_names().await;
            acked.iter().all(|a| names.contains(a))
        })
        .await;
    }
    // The leader and two more are gone for good.
    let leader = cluster.wait_leader().await;
    let mut doomed: Vec<u64> = vec![leader];
    doomed.extend((1..=5).filter(|id| *id != leader).take(2));
    for id in &doomed {
        cluster.node_mut(*id).kill();
    }
    let survivors: Vec<u64> = (1..=5).filter(|id| !doomed.contains(id)).collect();
    // Recovery starts from the survivor whose log is longest.
    let mut last_index = Vec::new();
    for id in &survivors {
        let (_, st) = cluster.node(*id).get("/v1/cluster/status").await;
        last_index.push((st["last_log_index"].as_u64().unwrap_or(0), *id));
    }
    last_index.sort();
    let (founder, other) = (last_index[1].1, last_index[0].1);
    for id in &survivors {
        cluster.node_mut(*id).terminate().await;
    }
    let data = cluster.node(founder).data_dir();
    let refused = cluster.node(founder).cli(&["cluster", "recover", "--data-dir", data.to_str().unwrap()]);
    assert!(!refused.status.success() && stderr(&refused).contains("--force-new-cluster"), "{}", stderr(&refused));
    let out = cluster.node(founder).cli(&[
        "cluster",
        "recover",
        "--data-dir",
        data.to_str().unwrap(),
        "--force-new-cluster",
        "--json",
    ]);
    assert!(out.status.success(), "recover failed: {}", stderr(&out));
    let founded: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(founded["node_id"], founder);

    cluster.node_mut(founder).restart().await;
    eventually("the survivor leads alone", Duration::from_secs(30), || async {
        let (_, st) = cluster.node(founder).get("/v1/cluster/status").await;
        st["leader"] == founder && st["members"].as_array().map(Vec::len) == Some(1)
    })
    .await;
    assert_eq!(deploy_on(cluster.node(founder), "after-recovery").await, 201);
    acked.push("after-recovery".into());

    // The other survivor comes back with an empty data directory, and a
    // brand-new node joins: three voters again.
    std::fs::remove_dir_all(cluster.node(other).data_dir()).unwrap();
    cluster.node_mut(other).restart().await;
    let newcomer = cluster.add_node().await;
    cluster.wait_members(3, 3).await;
    for id in [founder, other, newcomer] {
        let n = cluster.node(id);
        eventually(&format!("node {id} holds every acknowledged write"), Duration::from_secs(30), || async {
            let names = n.agent_names().await;
            acked.iter().all(|a| names.contains(a))
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_down_from_five_to_three_leaves_three_voters_and_no_dead_members() {
    let opts = ClusterOptions {
        voters: 5,
        cluster_extra: "remove_dead_after = \"8s\"".into(),
        server_extra: String::new(),
        ..Default::default()
    };
    let mut cluster = TestCluster::start_with(5, opts).await;
    assert_eq!(deploy_on(cluster.node(1), "before-scale-down").await, 201);
    // The StatefulSet goes from 5 to 3: the two highest ordinals go away
    // for good, while another pod merely restarts (and must stay).
    cluster.node_mut(5).kill();
    cluster.node_mut(4).kill();
    cluster.node_mut(3).terminate().await;
    cluster.node_mut(3).restart().await;
    // The dead voters are reported before they are removed.
    let metrics = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{}/metrics", cluster.node(1).metrics_port);
    eventually("two unreachable voters reported", Duration::from_secs(8), || async {
        let Ok(r) = metrics.get(&url).send().await else { return false };
        let text = r.text().await.unwrap_or_default();
        metric_value(&text, "caxton_cluster_voters", &[("state", "unreachable")]) == Some(2.0)
    })
    .await;
    eventually("members 1, 2 and 3 only, all voters", Duration::from_secs(60), || async {
        let (_, st) = cluster.node(1).get("/v1/cluster/status").await;
        let members = st["members"].as_array().cloned().unwrap_or_default();
        let ids: BTreeSet<u64> = members.iter().filter_map(|m| m["id"].as_u64()).collect();
        ids == BTreeSet::from([1, 2, 3]) && members.iter().all(|m| m["role"] == "voter")
    })
    .await;
    assert_eq!(deploy_on(cluster.node(3), "after-scale-down").await, 201);
    for (id, n) in cluster.running() {
        eventually(&format!("node {id} replicates"), Duration::from_secs(20), || async {
            let names = n.agent_names().await;
            names.contains(&"before-scale-down".to_owned()) && names.contains(&"after-scale-down".to_owned())
        })
        .await;
    }
}

/// Whether every running node hears every other through gossip right now.
async fn everyone_hears_everyone(cluster: &TestCluster) -> bool {
    let running: BTreeSet<u64> = cluster.running().map(|(id, _)| id).collect();
    for (_, n) in cluster.running() {
        let (s, v) = n.get("/v1/cluster/members").await;
        if s != 200 {
            return false;
        }
        let alive: BTreeSet<u64> = v["members"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["alive"] == true)
            .filter_map(|m| m["id"].as_u64())
            .collect();
        if !running.is_subset(&alive) {
            return false;
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_secret_rotates_in_three_rolling_steps_without_a_partition() {
    let (old, new) = ("old-secret-0123456789abcdef0123456789", "new-secret-0123456789abcdef0123456789");
    let secret = |s: &str| ("CAXTON_CLUSTER_SECRET".to_owned(), s.to_owned());
    let opts = ClusterOptions { voters: 3, env: vec![secret(old)], ..Default::default() };
    let mut cluster = TestCluster::start_with(3, opts).await;
    let steps = [format!("{old}\n{new}"), format!("{new}\n{old}"), new.to_owned()];
    let mut written = Vec::new();
    for (step, value) in steps.iter().enumerate() {
        for id in 1..=3u64 {
            let node = cluster.node_mut(id);
            node.terminate().await;
            node.reconfigure(|o| o.env = vec![secret(value)]);
            node.restart().await;
            eventually(&format!("step {step}, node {id}: everyone hears everyone"), Duration::from_secs(30), || {
                everyone_hears_everyone(&cluster)
            })
            .await;
            let name = format!("step-{step}-node-{id}");
            eventually("a write", Duration::from_secs(30), || async {
                deploy_on(cluster.node(id), &name).await == 201
            })
            .await;
            written.push(name);
        }
    }
    // The old secret is now refused: a node still holding only it is a stranger.
    let (_, members_before) = cluster.node(1).get("/v1/cluster/members").await;
    let stranger = cluster.node_mut(3);
    stranger.terminate().await;
    stranger.reconfigure(|o| o.env = vec![secret(old)]);
    stranger.relaunch();
    let not_heard = || async {
        let (_, members) = cluster.node(1).get("/v1/cluster/members").await;
        let three = members["members"].as_array().into_iter().flatten().find(|m| m["id"] == 3).cloned();
        three.is_some_and(|m| m["alive"] == false)
    };
    eventually("a node with only the retired secret is not heard", Duration::from_secs(20), not_heard).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(not_heard().await, "it stays unheard (was: {members_before})");
    for id in [1u64, 2] {
        let names = cluster.node(id).agent_names().await;
        assert!(written.iter().all(|w| names.contains(w)), "node {id} lacks writes");
    }
}
