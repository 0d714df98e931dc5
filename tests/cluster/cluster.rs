//! Multi-process clusters on loopback: formation from seeds, failover,
//! placement, snapshot catch-up and quorum loss.

use std::collections::HashSet;
use std::time::Duration;

use caxton_testing::*;
use serde_json::json;

async fn deploy_on(node: &TestNode, name: &str) -> u16 {
    node.post_toml("/v1/agents", &agent_toml(name, "x")).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_form_from_seeds_and_a_follower_write_is_visible_everywhere() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.wait_leader().await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();

    assert_eq!(deploy_on(cluster.node(follower), "written-on-follower").await, 201);
    for (id, node) in cluster.running() {
        eventually(&format!("agent visible on node {id}"), Duration::from_secs(10), || async {
            node.get("/v1/agents/written-on-follower").await.0 == 200
        })
        .await;
    }
    // Every node agrees on the membership and the leader.
    for (_, node) in cluster.running() {
        let (_, st) = node.get("/v1/cluster/status").await;
        assert_eq!(st["members"].as_array().unwrap().len(), 3);
        assert_eq!(st["leader"], leader);
    }
    // The CLI sees it too.
    let out = cluster.node(follower).cli(&["cluster", "members"]);
    let text = stdout(&out);
    assert_eq!(text.lines().filter(|l| l.contains("voter")).count(), 3, "{text}");
    // Placement spread shards over all three nodes.
    eventually("every node owns shards", Duration::from_secs(10), || async {
        let (_, p) = cluster.node(1).get("/v1/cluster/placement").await;
        p["assigned"] == 256
            && p["nodes"].as_array().map(|n| n.iter().filter(|n| n["shards"].as_u64() > Some(0)).count()) == Some(3)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_elects_another_and_loses_no_acknowledged_write() {
    let mut cluster = TestCluster::start(3).await;
    let old = cluster.wait_leader().await;
    let survivor = (1..=3).find(|id| *id != old).unwrap();
    let mut acked = Vec::new();
    for i in 0..30 {
        let name = format!("before-{i}");
        if deploy_on(cluster.node(survivor), &name).await == 201 {
            acked.push(name);
        }
    }
    cluster.node_mut(old).kill();
    let killed_at = std::time::Instant::now();
    // Writes continue through a survivor (retried while the election runs).
    let mut first_write = None;
    for i in 0..30 {
        let name = format!("after-{i}");
        loop {
            let s = deploy_on(cluster.node(survivor), &name).await;
            if s == 201 {
                first_write.get_or_insert(killed_at.elapsed());
                acked.push(name);
                break;
            }
            assert!(killed_at.elapsed() < Duration::from_secs(20), "writes did not resume: last status {s}");
            // Retry interval of a poll bounded by the assertion above.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let new = cluster.wait_leader().await;
    assert_ne!(new, old);
    assert!(first_write.unwrap() < Duration::from_secs(10), "failover took {:?}", first_write);
    for (_, node) in cluster.running() {
        let present: HashSet<String> = node.agent_names().await.into_iter().collect();
        for name in &acked {
            assert!(present.contains(name), "acknowledged {name} missing on a survivor");
        }
    }
    // The old leader comes back as a follower and catches up.
    cluster.node_mut(old).restart().await;
    let node = cluster.node(old);
    eventually("restarted node caught up", Duration::from_secs(20), || async {
        node.agent_names().await.len() == acked.len()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_an_owner_moves_its_agents_and_every_message_is_answered_once() {
    let stub = OpenAiStub::start().await;
    // Slow enough that requests are in flight when the owner dies.
    stub.respond_with(|req| {
        let q = last_of_role(req, "user").unwrap()["content"].as_str().unwrap().to_owned();
        StubReply::text(&format!("answer to {q}")).after(Duration::from_millis(300))
    });
    let opts = ClusterOptions { voters: 3, tables: stub.provider_config("stub", ""), ..Default::default() };
    let mut cluster = TestCluster::start_with(3, opts).await;
    let leader = cluster.wait_leader().await;
    // Enough agents that every node owns some.
    let names: Vec<String> = (0..12).map(|i| format!("worker-{i}")).collect();
    for n in &names {
        let toml = format!("name = \"{n}\"\nprovider = \"stub\"\nsystem_prompt = \"You are {n}.\"\n");
        assert_eq!(cluster.node(leader).post_toml("/v1/agents", &toml).await.0, 201);
    }
    eventually("agents placed", Duration::from_secs(10), || async {
        let (_, p) = cluster.node(leader).get("/v1/cluster/placement").await;
        p["nodes"].as_array().map(|n| n.len()) == Some(3)
    })
    .await;
    let victim = (1..=3).find(|id| *id != leader).unwrap();
    let (_, p) = cluster.node(leader).get("/v1/cluster/placement").await;
    let victims_agents: Vec<String> = p["nodes"].as_array().unwrap().iter().find(|n| n["node"] == victim).unwrap()
        ["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    assert!(!victims_agents.is_empty());

    let send = |node: &TestNode, to: &str, i: usize| {
        let body = json!({"to": to, "content": format!("q{i}"), "mode": "async"}).to_string();
        let (http, url) = (node.http.clone(), node.url("/v1/messages"));
        async move {
            let r = http.post(url).header("content-type", "application/json").body(body).send().await.unwrap();
            assert_eq!(r.status(), 202);
            r.json::<serde_json::Value>().await.unwrap()["message"]["id"].as_str().unwrap().to_owned()
        }
    };
    let mut ids = Vec::new();
    for (i, a) in victims_agents.iter().cycle().take(10).enumerate() {
        ids.push(send(cluster.node(leader), a, i).await);
    }
    cluster.node_mut(victim).kill();
    for (i, a) in victims_agents.iter().cycle().take(10).enumerate() {
        ids.push(send(cluster.node(leader), a, 100 + i).await);
    }
    // The dead node's agents move to survivors, who answer everything.
    eventually("agents moved off the dead node", Duration::from_secs(20), || async {
        let (_, p) = cluster.node(leader).get("/v1/cluster/placement").await;
        p["nodes"].as_array().unwrap().iter().all(|n| n["node"] != victim || n["agents"].as_array().unwrap().is_empty())
    })
    .await;
    let node = cluster.node(leader);
    for id in &ids {
        eventually(&format!("message {id} answered"), Duration::from_secs(30), || async {
            node.get(&format!("/v1/messages/{id}")).await.1["reply"]["kind"] == "response"
        })
        .await;
    }
    // Deliberate pause, not a wait for a condition: a second answer would
    // be an event that never comes if all is well; give it time to show.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for id in &ids {
        let (_, m) = node.get(&format!("/v1/messages/{id}")).await;
        let conv = m["message"]["conversation_id"].as_str().unwrap();
        let (_, c) = node.get(&format!("/v1/conversations/{conv}")).await;
        let replies = c["messages"].as_array().unwrap().iter().filter(|x| x["reply_to"] == id.as_str()).count();
        assert_eq!(replies, 1, "message {id} answered {replies} times");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_behind_a_compacted_log_catches_up_by_snapshot() {
    let opts = ClusterOptions { voters: 3, cluster_extra: "logs_to_keep = 0".into(), ..Default::default() };
    let mut cluster = TestCluster::start_with(3, opts).await;
    let leader = cluster.wait_leader().await;
    let lagger = (1..=3).find(|id| *id != leader).unwrap();
    cluster.node_mut(lagger).kill();
    for i in 0..60 {
        assert_eq!(deploy_on(cluster.node(leader), &format!("while-down-{i}")).await, 201);
    }
    // Snapshot and purge on every survivor, so the lagger's next entry is gone.
    cluster.snapshot_and_purge(leader).await;
    cluster.node_mut(lagger).restart().await;
    let node = cluster.node(lagger);
    eventually("lagging node has everything", Duration::from_secs(30), || async {
        node.agent_names().await.len() == 60
    })
    .await;
    // The replica is swapped before Raft's metrics report the installed
    // snapshot: the agents can be readable a moment before the status says how.
    eventually("the status reports the installed snapshot", Duration::from_secs(10), || async {
        node.get("/v1/cluster/status").await.1["snapshot_index"].as_u64().is_some()
    })
    .await;
    let (_, st) = node.get("/v1/cluster/status").await;
    assert!(st["applied_index"].as_u64() >= st["snapshot_index"].as_u64(), "{st}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_survive_two_failures_and_refuse_writes_after_three() {
    let opts = ClusterOptions { voters: 5, ..Default::default() };
    let mut cluster = TestCluster::start_with(5, opts).await;
    let leader = cluster.wait_leader().await;
    // Kill two nodes that are not the leader, then the leader is still fine.
    let others: Vec<u64> = (1..=5).filter(|id| *id != leader).collect();
    cluster.node_mut(others[0]).kill();
    cluster.node_mut(others[1]).kill();
    assert_eq!(deploy_on(cluster.node(leader), "with-two-down").await, 201);
    // A third failure (the leader itself) leaves two of five: no quorum.
    cluster.node_mut(leader).kill();
    let remaining: Vec<u64> = vec![others[2], others[3]];
    let node = cluster.node(remaining[0]);
    let r = node
        .http
        .post(node.url("/v1/agents"))
        .header("content-type", "application/toml")
        .body(agent_toml("without-quorum", "x"))
        .timeout(Duration::from_secs(40))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let p: serde_json::Value = r.json().await.unwrap();
    assert_eq!(p["type"], "https://caxton.dev/problems/cluster-unavailable", "{p}");
    assert!(!p["detail"].as_str().unwrap().is_empty());
    // Nobody won an election with two votes out of five, watched for two
    // seconds (several election timeouts): the pause is the point.
    for _ in 0..10 {
        assert!(cluster.self_declared_leaders().await.is_empty(), "a minority elected a leader");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Reads still answer from the local replica.
    assert_eq!(node.get("/v1/agents/with-two-down").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_cli_transfers_leadership_leaves_and_removes() {
    let mut cluster = TestCluster::start(4).await;
    let leader = cluster.wait_leader().await;
    let (_, st) = cluster.node(leader).get("/v1/cluster/status").await;
    let voters: Vec<u64> = st["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "voter")
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    let learner =
        st["members"].as_array().unwrap().iter().find(|m| m["role"] == "learner").unwrap()["id"].as_u64().unwrap();
    let target = *voters.iter().find(|v| **v != leader).unwrap();

    let out = cluster.node(learner).cli(&["cluster", "transfer-leader", &target.to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(cluster.wait_leader().await, target);
    let out = cluster.node(target).cli(&["cluster", "transfer-leader", &learner.to_string()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("learner"), "{}", stderr(&out));

    // The learner leaves gracefully, then stops; it is not re-added.
    let out = cluster.node(learner).cli(&["cluster", "leave"]);
    assert!(out.status.success(), "{}", stderr(&out));
    cluster.node_mut(learner).terminate().await;
    cluster.wait_members(3, 3).await;

    // A dead voter is removed by the operator.
    let victim = *voters.iter().find(|v| **v != target).unwrap();
    cluster.node_mut(victim).kill();
    let out = cluster.node(target).cli(&["cluster", "remove", &victim.to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    cluster.wait_members(2, 2).await;
    let out = cluster.node(target).cli(&["cluster", "remove", "99"]);
    assert!(stderr(&out).contains("node 99 is not a member"), "{}", stderr(&out));

    let out = cluster.node(target).cli(&["cluster", "placement"]);
    assert!(stdout(&out).contains("256 of 256 shards assigned"), "{}", stdout(&out));
    let out = cluster.node(target).cli(&["cluster", "rebalance"]);
    assert!(out.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gracefully_stopping_leader_hands_over_leadership() {
    let mut cluster = TestCluster::start(3).await;
    let leader = cluster.wait_leader().await;
    let status = cluster.node_mut(leader).terminate().await;
    assert!(status.success());
    // Handed over before exiting: a new leader exists right away, without
    // waiting out an election timeout on a dead leader.
    let new = cluster.wait_leader().await;
    assert_ne!(new, leader);
    assert!(cluster.node(leader).log().contains("transferring leadership"), "{}", cluster.node(leader).log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_traffic_loses_no_message() {
    let mut cluster = TestCluster::start(3).await;
    let leader = cluster.wait_leader().await;
    for i in 0..6 {
        let toml = format!("name = \"roll-{i}\"\nprovider = \"echo\"\nsystem_prompt = \"Echo.\"\n");
        assert_eq!(cluster.node(leader).post_toml("/v1/agents", &toml).await.0, 201);
    }
    let urls: Vec<String> = cluster.nodes.iter().map(|n| n.url("/v1/messages")).collect();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    // Four independent senders, so one request stuck on a stopping node
    // does not stall the traffic.
    let traffic: Vec<_> = (0..4usize)
        .map(|sender| {
            let (stop, acked, http, urls) = (stop.clone(), acked.clone(), http.clone(), urls.clone());
            tokio::spawn(async move {
                let mut i = sender;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let url = &urls[i % urls.len()];
                    let body = json!({"to": format!("roll-{}", i % 6), "content": format!("m{i}"), "mode": "async"});
                    if let Ok(r) = http.post(url).json(&body).send().await {
                        if r.status() == 202 {
                            let v: serde_json::Value = r.json().await.unwrap();
                            acked.lock().unwrap().push(v["message"]["id"].as_str().unwrap().to_owned());
                        }
                    }
                    i += 4;
                    // Pacing of the traffic, not a wait for a condition.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        })
        .collect();
    // The restart is paced by the traffic, not by the clock: before each
    // node stops and after the last one is back, more messages must have
    // been acknowledged, however slow the machine is.
    let acked_count = || acked.lock().unwrap().len();
    let more_traffic = |what: String| {
        let target = acked_count() + 15;
        let acked = acked.clone();
        async move {
            eventually(&what, Duration::from_secs(60), || {
                let n = acked.lock().unwrap().len();
                async move { n >= target }
            })
            .await
        }
    };
    for id in 1..=3u64 {
        more_traffic(format!("traffic acknowledged before stopping node {id}")).await;
        let status = cluster.node_mut(id).terminate().await;
        assert!(status.success());
        cluster.node_mut(id).restart().await;
        cluster.wait_members(3, 3).await;
    }
    more_traffic("traffic acknowledged after the rolling restart".into()).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for t in traffic {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let node = cluster.node(cluster.wait_leader().await);
    for id in &acked {
        eventually(&format!("{id} answered"), Duration::from_secs(30), || async {
            node.get(&format!("/v1/messages/{id}")).await.1["reply"]["kind"] == "response"
        })
        .await;
    }
}

/// Cuts every packet from and to one loopback address; undone on drop.
struct Partition {
    ip: String,
}

impl Partition {
    fn isolate(ip: &str) -> Self {
        for dir in ["-s", "-d"] {
            let ok = std::process::Command::new("iptables")
                .args(["-I", "OUTPUT", dir, ip, "-j", "DROP"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(ok, "iptables is needed (as root) to partition {ip}");
        }
        Self { ip: ip.to_owned() }
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        for dir in ["-s", "-d"] {
            let _ = std::process::Command::new("iptables").args(["-D", "OUTPUT", dir, &self.ip, "-j", "DROP"]).status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_cannot_commit_and_heals_into_one_consistent_cluster() {
    let opts = ClusterOptions { voters: 3, ip_base: Some(70 + (std::process::id() % 100) as u8), ..Default::default() };
    let ip_base = opts.ip_base.unwrap();
    let cluster = TestCluster::start_with(3, opts).await;
    let old = cluster.wait_leader().await;
    assert_eq!(deploy_on(cluster.node(old), "before-partition").await, 201);
    let majority: Vec<u64> = (1..=3).filter(|id| *id != old).collect();

    let partition = Partition::isolate(&format!("127.0.0.{}", ip_base as u64 + old));
    // The isolated leader cannot commit: its write is refused, not acknowledged.
    let node = cluster.node(old);
    let r = node
        .http
        .post(node.url("/v1/agents"))
        .header("content-type", "application/toml")
        .body(agent_toml("on-the-minority-side", "x"))
        .timeout(Duration::from_secs(40))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503, "{}", r.text().await.unwrap_or_default());
    // The majority elects its own leader and keeps accepting writes.
    let mut accepted = false;
    for _ in 0..100 {
        if deploy_on(cluster.node(majority[0]), "during-partition").await == 201 {
            accepted = true;
            break;
        }
        // Retry interval of a bounded poll (at most 100 attempts).
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(accepted, "the majority side did not accept a write");
    drop(partition);

    // After healing: one leader, everyone with the same state, the refused write nowhere.
    eventually("a single leader after healing", Duration::from_secs(20), || async {
        cluster.self_declared_leaders().await.len() == 1
    })
    .await;
    let mut states = Vec::new();
    for (id, n) in cluster.running() {
        eventually(&format!("node {id} converged"), Duration::from_secs(20), || async {
            n.agent_names().await.contains(&"during-partition".to_owned())
        })
        .await;
        let mut names = n.agent_names().await;
        names.sort();
        states.push(names);
    }
    assert!(states.windows(2).all(|w| w[0] == w[1]), "divergent state: {states:?}");
    assert!(!states[0].contains(&"on-the-minority-side".to_owned()));
    assert!(states[0].contains(&"before-partition".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answers_token_stream_is_live_on_a_node_that_does_not_run_the_agent() {
    let stub = OpenAiStub::start().await;
    // Slow enough that the stream is open before the tokens exist.
    stub.respond_with(|_| StubReply::text("streamed across nodes").after(Duration::from_millis(1500)));
    let opts = ClusterOptions { voters: 3, tables: stub.provider_config("stub", ""), ..Default::default() };
    let cluster = TestCluster::start_with(3, opts).await;
    let leader = cluster.wait_leader().await;
    let toml = "name = \"far-away\"\nprovider = \"stub\"\nsystem_prompt = \"You stream.\"\n";
    assert_eq!(cluster.node(leader).post_toml("/v1/agents", toml).await.0, 201);
    let owner = cluster.node(leader).get("/v1/agents/far-away").await.1["owner_node"].as_u64().unwrap();
    let elsewhere = cluster.node((1..=3).find(|id| *id != owner).unwrap());
    // Reads are local: the receiver is found once this node applied the deploy.
    eventually("the other node has applied the deploy", Duration::from_secs(10), || async {
        elsewhere.get("/v1/agents/far-away").await.0 == 200
    })
    .await;

    let body = json!({"to": "far-away", "content": "stream it", "mode": "async"});
    let (s, v) = elsewhere.send(reqwest::Method::POST, "/v1/messages", "application/json", body.to_string()).await;
    assert_eq!(s, 202, "{v}");
    let id = v["message"]["id"].as_str().unwrap().to_owned();
    let resp = elsewhere.http.get(elsewhere.url(&format!("/v1/messages/{id}/stream"))).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut decoder = caxton::sse::SseDecoder::default();
    let mut events = Vec::new();
    let mut body = resp.bytes_stream();
    use futures::StreamExt;
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(30), body.next()).await.expect("stream stalled") {
        events.extend(decoder.feed(&chunk.unwrap()).into_iter().map(|e| (e.event, e.data)));
        if events.iter().any(|(e, _)| e == "reply") {
            break;
        }
    }
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(names, ["token", "reply"], "a live token, relayed from node {owner}, then the reply: {events:?}");
    assert_eq!(events[0].1, "streamed across nodes");
    let reply: serde_json::Value = serde_json::from_str(&events[1].1).unwrap();
    assert_eq!(reply["content"], "streamed across nodes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_node_is_refused_under_its_old_id_until_removed_then_rejoins() {
    // The wiped node finds no leader that will have it: it serves its API
    // after two seconds instead of thirty.
    let opts = ClusterOptions { voters: 3, cluster_extra: "leader_wait_ms = 2000".into(), ..Default::default() };
    let mut cluster = TestCluster::start_with(3, opts).await;
    let leader = cluster.wait_leader().await;
    assert_eq!(deploy_on(cluster.node(leader), "before-the-wipe").await, 201);
    let victim = (2..=3).find(|id| *id != leader).unwrap();
    eventually("the victim has the agent", Duration::from_secs(10), || async {
        cluster.node(victim).get("/v1/agents/before-the-wipe").await.0 == 200
    })
    .await;

    // Its disk is lost; it comes back empty under the same node id.
    assert!(cluster.node_mut(victim).terminate().await.success());
    std::fs::remove_dir_all(cluster.node(victim).data_dir()).unwrap();
    cluster.node_mut(victim).relaunch();
    eventually("the wiped node serves HTTP", Duration::from_secs(20), || async {
        cluster.node(victim).http.get(cluster.node(victim).url("/health")).send().await.is_ok()
    })
    .await;
    // The leader keeps trying to replicate to it, and it keeps refusing:
    // a node that forgot its votes must not count toward a quorum.
    eventually("the wiped node refuses the leader", Duration::from_secs(20), || async {
        cluster.node(victim).log().contains("was wiped or replaced")
    })
    .await;
    // Deliberate pause: the leader keeps retrying meanwhile, and the wiped
    // node must still have been fed nothing afterwards.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(cluster.node(victim).get("/v1/agents/before-the-wipe").await.0, 404, "fed nothing under its old id");
    let (_, st) = cluster.node(victim).get("/v1/cluster/status").await;
    assert!(st["cluster_id"].is_null(), "adopted no cluster: {st}");
    // The cluster itself is unaffected (two voters of three answer).
    assert_eq!(deploy_on(cluster.node(leader), "while-it-was-refused").await, 201);

    // The operator removes it; it rejoins as a new member and catches up.
    let out = cluster.node(leader).cli(&["cluster", "remove", &victim.to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    for agent in ["before-the-wipe", "while-it-was-refused"] {
        eventually(&format!("the rejoined node has {agent}"), Duration::from_secs(30), || async {
            cluster.node(victim).get(&format!("/v1/agents/{agent}")).await.0 == 200
        })
        .await;
    }
    cluster.wait_members(3, 3).await;
}

/// Deploys `name` through node `live` (retrying while the cluster settles)
/// and records it in `written`.
async fn write_through(cluster: &TestCluster, live: u64, name: String, written: &mut Vec<String>) {
    eventually(&format!("writing {name} through node {live}"), Duration::from_secs(30), || async {
        deploy_on(cluster.node(live), &name).await == 201
    })
    .await;
    written.push(name);
}

/// Waits until node `id` holds every write in `written`.
async fn holds_all(cluster: &TestCluster, id: u64, written: &[String]) {
    let node = cluster.node(id);
    eventually(&format!("node {id} holds every write"), Duration::from_secs(30), || async {
        let names = node.agent_names().await;
        written.iter().all(|w| names.contains(w))
    })
    .await;
}

/// A recreated pod keeps its data and node id but gets a new address. Every
/// node in turn is stopped and started again on another loopback address,
/// as a rolling restart of pods does, with writes going on: each comes back
/// ready (caught up), the membership records its new RPC address, and at
/// the end every node holds every write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_that_come_back_on_new_addresses_are_replicated_to_there() {
    let base = 10u8;
    let opts = ClusterOptions { voters: 3, ip_base: Some(base), ..Default::default() };
    let mut cluster = TestCluster::start_with(3, opts).await;
    let mut written = Vec::new();
    for id in 1..=3u64 {
        let new_ip = format!("127.0.0.{}", base as u64 + 10 + id);
        let node = cluster.node_mut(id);
        node.terminate().await;
        node.reconfigure(|o| {
            o.rpc_host = Some(new_ip.clone());
            // Its own addresses move, and its seeds are where the nodes
            // moved before it now are (as a headless service's DNS
            // name resolves to the pods' current addresses).
            for moved in 1..=id {
                let (was, is) = (base as u64 + moved, base as u64 + 10 + moved);
                o.cluster_extra = o.cluster_extra.replace(&format!("127.0.0.{was}:"), &format!("127.0.0.{is}:"));
            }
        });
        // Writes go on while it is away.
        let live = (1..=3).find(|n| *n != id).unwrap();
        write_through(&cluster, live, format!("while-{id}-moves"), &mut written).await;
        cluster.node_mut(id).restart().await;
        let rpc = format!("{new_ip}:{}", cluster.node(id).rpc_port);
        eventually(&format!("node {id} is recorded at {rpc}"), Duration::from_secs(30), || async {
            let (_, st) = cluster.node(live).get("/v1/cluster/status").await;
            let members = st["members"].as_array().cloned().unwrap_or_default();
            members.iter().any(|m| m["id"] == id && m["rpc_addr"] == rpc.as_str())
        })
        .await;
        // And it is replicated to there: a write made now reaches it.
        write_through(&cluster, live, format!("after-{id}-moved"), &mut written).await;
        holds_all(&cluster, id, &written).await;
    }
    for (id, n) in cluster.running() {
        let names = n.agent_names().await;
        assert!(written.iter().all(|w| names.contains(w)), "node {id} lacks writes: {names:?}");
    }
}

/// The StatefulSet way: nodes advertise stable host names (the pods' DNS
/// names) and every node in turn comes back on a new address, the name
/// now resolving there. The membership keeps the names; every node dials
/// the new addresses because names are resolved at each connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_onto_new_addresses_behind_stable_host_names_keeps_every_node_replicating() {
    let opts = ClusterOptions { voters: 3, host_names: true, ip_base: Some(60), ..Default::default() };
    let mut cluster = TestCluster::start_with(3, opts).await;
    let (_, st) = cluster.node(1).get("/v1/cluster/status").await;
    for m in st["members"].as_array().unwrap() {
        let host = node_host(m["id"].as_u64().unwrap());
        assert!(m["rpc_addr"].as_str().unwrap().starts_with(&host), "members are recorded by name: {m}");
    }
    let mut written = Vec::new();
    for id in 1..=3u64 {
        let (old_ip, new_ip) = (format!("127.0.0.{}", 60 + id), format!("127.0.0.{}", 70 + id));
        cluster.node_mut(id).terminate().await;
        cluster.move_host(id, &new_ip);
        cluster.node_mut(id).reconfigure(|o| {
            o.rpc_host = Some(new_ip.clone());
            o.cluster_extra = o
                .cluster_extra
                .replace(&format!("gossip_listen = \"{old_ip}:"), &format!("gossip_listen = \"{new_ip}:"));
        });
        let live = (1..=3).find(|n| *n != id).unwrap();
        write_through(&cluster, live, format!("while-{id}-moves"), &mut written).await;
        cluster.node_mut(id).restart().await;
        write_through(&cluster, live, format!("after-{id}-moved"), &mut written).await;
        holds_all(&cluster, id, &written).await;
    }
    let (_, st) = cluster.node(2).get("/v1/cluster/status").await;
    let members = st["members"].as_array().unwrap();
    assert_eq!(members.len(), 3, "{st}");
    for m in members {
        assert!(m["rpc_addr"].as_str().unwrap().starts_with("node-"), "still recorded by name: {m}");
    }
    for (id, n) in cluster.running() {
        let names = n.agent_names().await;
        assert!(written.iter().all(|w| names.contains(w)), "node {id} lacks writes: {names:?}");
    }
}
