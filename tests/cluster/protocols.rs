//! Interaction protocols across nodes: notifications delivered and
//! processed (never answered), contract-net losers told, topics fanned
//! out to subscribers wherever they run, through a node's death.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use caxton_testing::{eventually, last_of_role, ClusterOptions, OpenAiStub, StubReply, TestCluster, TestNode};
use serde_json::{json, Value};

/// Which node owns each agent, from the placement view.
async fn owners(node: &TestNode) -> BTreeMap<String, u64> {
    let (_, p) = node.get("/v1/cluster/placement").await;
    let mut out = BTreeMap::new();
    for n in p["nodes"].as_array().into_iter().flatten() {
        for a in n["agents"].as_array().into_iter().flatten() {
            out.insert(a.as_str().unwrap().to_ascii_lowercase(), n["node"].as_u64().unwrap());
        }
    }
    out
}

/// Waits until every agent is placed and shards are spread over all
/// three nodes (placement follows gossip's readiness, a moment after start).
async fn placed(cluster: &TestCluster, node: u64, agents: usize) {
    eventually("agents placed on every node", Duration::from_secs(30), || async {
        let (_, p) = cluster.node(node).get("/v1/cluster/placement").await;
        p["nodes"].as_array().map(|n| n.len()) == Some(3) && owners(cluster.node(node)).await.len() == agents
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_reach_agents_on_other_nodes_and_are_processed_not_answered() {
    let stub = OpenAiStub::start().await;
    stub.respond_with(|req| {
        let asked = last_of_role(req, "user").unwrap()["content"].as_str().unwrap_or("").to_owned();
        if asked.contains("CALL FOR PROPOSALS") {
            let system = req["messages"][0]["content"].as_str().unwrap_or("");
            let cost = system.trim_start_matches("Bidder ").trim_end_matches('.');
            return StubReply::text(&format!("I can. cost: {cost}"));
        }
        StubReply::text("noted")
    });
    let opts = ClusterOptions { voters: 3, tables: stub.provider_config("stub", ""), ..Default::default() };
    let cluster = TestCluster::start_with(3, opts).await;
    let leader = cluster.wait_leader().await;
    let node = cluster.node(leader);
    for i in 1..=6 {
        let toml = format!(
            "name = \"bidder-{i}\"\nprovider = \"stub\"\ncapabilities = [\"haul\"]\nsystem_prompt = \"Bidder {i}.\"\n"
        );
        assert_eq!(node.post_toml("/v1/agents", &toml).await.0, 201);
    }
    placed(&cluster, leader, 6).await;
    // Shards are hashed: which node owns which agent is not ours to pick,
    // but the notification below is sent through a node that does not own
    // its receiver, and the others land wherever placement put them.
    let owners = owners(node).await;

    // A notification to one agent, sent through a node that does not own it.
    let far = (1..=3).find(|id| Some(id) != owners.get("bidder-1")).unwrap();
    let (s, v) = cluster
        .node(far)
        .post_json(
            "/v1/messages",
            json!({"to": "bidder-1", "kind": "notification", "content": "road closed", "id": "n-road"}),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["message"]["status"], "accepted", "delivered, not filed: {v}");
    eventually("the notification is processed", Duration::from_secs(20), || async {
        node.get("/v1/messages/n-road").await.1["message"]["status"] == "processed"
    })
    .await;
    let (_, m) = node.get("/v1/messages/n-road").await;
    assert!(m["reply"].is_null(), "a notification is never answered: {m}");
    let prompts: Vec<String> =
        stub.requests().iter().filter_map(|r| last_of_role(r, "user")).map(|u| u["content"].to_string()).collect();
    assert!(prompts.iter().any(|p| p.contains("[notification from user") && p.contains("road closed")), "{prompts:?}");
    let conv = m["message"]["conversation_id"].as_str().unwrap();
    let (_, c) = node.get(&format!("/v1/conversations/{conv}")).await;
    assert_eq!(c["messages"].as_array().unwrap().len(), 1, "visible in its conversation: {c}");

    // A notification to a capability reaches every agent declaring it.
    let (s, v) = node
        .post_json("/v1/messages", json!({"capability": "haul", "kind": "notification", "content": "fuel prices up"}))
        .await;
    assert_eq!(s, 202, "{v}");
    let notified: Vec<String> =
        v["notified"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(notified.len(), 6, "{v}");
    for id in &notified {
        eventually(&format!("{id} processed"), Duration::from_secs(20), || async {
            node.get(&format!("/v1/messages/{id}")).await.1["message"]["status"] == "processed"
        })
        .await;
    }

    // Contract-net: the cheapest wins; every loser is told, and processes it.
    let (s, outcome) = node
        .post_json("/v1/contract-net", json!({"capability": "haul", "task": "move 3 crates", "deadline_ms": 15000}))
        .await;
    assert_eq!(s, 200, "{outcome}");
    assert_eq!(outcome["awarded_to"], "bidder-1", "{outcome}");
    let id = outcome["conversation_id"].as_str().unwrap();
    eventually("every loser processed its reject notice", Duration::from_secs(30), || async {
        let (_, c) = node.get(&format!("/v1/conversations/{id}")).await;
        let rejects: Vec<&Value> = c["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["kind"] == "notification" && m["content"].as_str().unwrap().starts_with("REJECT"))
            .collect();
        rejects.len() == 5 && rejects.iter().all(|m| m["status"] == "processed")
    })
    .await;
    let (_, list) = node.get("/v1/conversations?protocol=contract_net&participant=bidder-3").await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert!(list[0]["participants"].as_array().unwrap().iter().any(|p| p == "bidder-3"), "{list}");
    let (_, none) = node.get("/v1/conversations?protocol=contract_net&state=failed").await;
    assert_eq!(none, json!([]));
    let (s, p) = node.get("/v1/conversations?state=sleeping").await;
    assert_eq!(s, 400, "{p}");
}

/// Publishes `count` publications `{prefix}-{i}` to `topic`, spreading them
/// over the running nodes; a refused or failed attempt is retried with the
/// same id on the next node, so each is acknowledged exactly once.
async fn publish_all(nodes: Vec<(reqwest::Client, String)>, prefix: String, count: usize) -> usize {
    let mut retries = 0;
    for i in 0..count {
        let id = format!("{prefix}-{i}");
        let body = json!({"content": format!("order {i} from {prefix}"), "id": id});
        let mut attempt = i;
        loop {
            let (http, base) = &nodes[attempt % nodes.len()];
            let sent = http
                .post(format!("{base}/v1/topics/orders.created/publications"))
                .json(&body)
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => break,
                _ => {
                    retries += 1;
                    attempt += 1;
                    assert!(retries < 2000, "publications keep failing");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    retries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_publications_reach_a_hundred_subscribers_through_a_node_restart() {
    let mut cluster = TestCluster::start_with(3, ClusterOptions { voters: 3, ..Default::default() }).await;
    let leader = cluster.wait_leader().await;
    const SUBSCRIBERS: usize = 100;
    const PUBLICATIONS: usize = 1000;
    for i in 0..SUBSCRIBERS {
        // Half subscribe in their definition, half through the API.
        let subs = if i % 2 == 0 { "subscriptions = [\"orders.*\"]\n" } else { "" };
        let toml = format!("name = \"sub-{i}\"\nprovider = \"echo\"\nsystem_prompt = \"Echo.\"\n{subs}");
        assert_eq!(cluster.node(leader).post_toml("/v1/agents", &toml).await.0, 201);
        if i % 2 == 1 {
            let (s, v) = cluster
                .node(leader)
                .post_json(&format!("/v1/agents/sub-{i}/subscriptions"), json!({"pattern": "orders.>"}))
                .await;
            assert_eq!(s, 201, "{v}");
        }
    }
    placed(&cluster, leader, SUBSCRIBERS).await;
    let spread = owners(cluster.node(leader)).await.values().copied().collect::<HashSet<_>>();
    assert_eq!(spread.len(), 3, "subscribers on every node");
    let victim = (1..=3).find(|id| *id != leader).unwrap();

    let nodes: Vec<(reqwest::Client, String)> =
        (1..=3).map(|id| (cluster.node(id).http.clone(), cluster.node(id).url(""))).collect();
    let per = PUBLICATIONS / 4;
    let publishers: Vec<_> = (0..4).map(|p| tokio::spawn(publish_all(nodes.clone(), format!("pub{p}"), per))).collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.node_mut(victim).kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.node_mut(victim).restart().await;
    for p in publishers {
        p.await.unwrap();
    }

    // Every subscriber's subscription conversation holds every publication,
    // each once, each processed.
    let node = cluster.node(leader);
    let (_, topics) = node.get("/v1/topics").await;
    assert_eq!(topics[0]["publications"], PUBLICATIONS, "{topics}");
    for i in 0..SUBSCRIBERS {
        let (_, subs) = node.get(&format!("/v1/agents/sub-{i}/subscriptions")).await;
        let conv = subs[0]["conversation_id"].as_str().unwrap().to_owned();
        eventually(&format!("sub-{i} processed every publication"), Duration::from_secs(300), || async {
            let (_, c) = node.get(&format!("/v1/conversations/{conv}")).await;
            let messages = c["messages"].as_array().cloned().unwrap_or_default();
            let ids: HashSet<&str> = messages.iter().map(|m| m["id"].as_str().unwrap()).collect();
            messages.len() == PUBLICATIONS
                && ids.len() == PUBLICATIONS
                && messages.iter().all(|m| m["status"] == "processed" && m["topic"] == "orders.created")
        })
        .await;
    }
    let (_, list) = node.get("/v1/conversations?protocol=subscribe&participant=sub-7").await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
}

/// A bidder's rule: `Bidder N.` values the item at 10 × N; bidder 4
/// answers nonsense; a sealed call is answered with the valuation; an
/// English one with the least raise it can afford, or `pass`.
fn bidder_rule(req: &Value) -> StubReply {
    let system = req["messages"][0]["content"].as_str().unwrap_or("");
    let asked = last_of_role(req, "user").unwrap()["content"].as_str().unwrap_or("").to_owned();
    let n: f64 = system.trim_start_matches("Bidder ").trim_end_matches('.').parse().unwrap_or(0.0);
    if !asked.contains("AUCTION ") || asked.starts_with('[') {
        return StubReply::text("noted");
    }
    if n == 4.0 {
        return StubReply::text("I would like it very much");
    }
    if n == 0.0 {
        return StubReply::text("pass");
    }
    let value = 10.0 * n;
    if asked.contains("sealed bid") {
        return StubReply::text(&format!("bid: {value}"));
    }
    let least = asked
        .split("of at least ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.trim_end_matches([',', '.']).parse::<f64>().ok())
        .unwrap_or(5.0);
    if least <= value {
        StubReply::text(&format!("bid: {least}"))
    } else {
        StubReply::text("pass")
    }
}

async fn auction_cluster(stub: &OpenAiStub, bidders: &[&str]) -> TestCluster {
    let opts = ClusterOptions { voters: 3, tables: stub.provider_config("stub", ""), ..Default::default() };
    let cluster = TestCluster::start_with(3, opts).await;
    let leader = cluster.wait_leader().await;
    for name in bidders {
        let n = name.trim_start_matches("bidder-").trim_start_matches("idle-");
        let n = if name.starts_with("idle-") { "0".to_owned() } else { n.to_owned() };
        let cap = if name.starts_with("idle-") { "idle" } else { "buying" };
        let toml = format!(
            "name = \"{name}\"\nprovider = \"stub\"\ncapabilities = [\"{cap}\"]\nsystem_prompt = \"Bidder {n}.\"\n"
        );
        assert_eq!(cluster.node(leader).post_toml("/v1/agents", &toml).await.0, 201);
    }
    // On every node: an auction opened on a follower finds its bidders in
    // that follower's replica, which may not have applied the last deploy
    // when the leader already answered it.
    for id in 1..=3 {
        placed(&cluster, id, bidders.len()).await;
    }
    cluster
}

async fn finished(node: &TestNode, path: &str) -> Value {
    let (s, v) = node.get(&format!("{path}?wait_ms=50000")).await;
    assert_eq!(s, 200, "{v}");
    assert_ne!(v["state"], "open", "still open after a minute: {v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auctions_english_and_sealed_end_with_one_result_and_tell_every_bidder() {
    let stub = OpenAiStub::start().await;
    stub.respond_with(bidder_rule);
    let cluster = auction_cluster(&stub, &["bidder-1", "bidder-2", "bidder-3", "bidder-4", "idle-1", "idle-2"]).await;
    let node = cluster.node(1);

    // English among 1-3 (values 10, 20, 30; raises of 5): 3 wins at 25.
    let body = json!({"kind": "english", "item": "a crate", "bidders": ["bidder-1", "bidder-2", "bidder-3"],
                      "increment": 5, "reserve": 12, "round_ms": 10000, "id": "eng-1"});
    let (s, v) = node.post_json("/v1/auctions", body.clone()).await;
    assert_eq!(s, 201, "{v}");
    let english = finished(node, "/v1/auctions/eng-1").await;
    assert_eq!(
        (english["state"].as_str(), english["result"]["winner"].as_str()),
        (Some("sold"), Some("bidder-3")),
        "{english}"
    );
    assert_eq!(english["result"]["price"], 25.0, "{english}");
    let (_, again) = node.post_json("/v1/auctions", body).await;
    assert_eq!(again["result"], english["result"], "starting it again changes nothing");

    // Sealed, second price, by capability: bidder-4's answer is no bid.
    let (s, v) = node
        .post_json("/v1/auctions", json!({"kind": "sealed_bid", "pricing": "second_price", "item": "a truck", "capability": "buying", "deadline_ms": 20000}))
        .await;
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let sealed = finished(node, &format!("/v1/auctions/{id}")).await;
    assert_eq!(
        (sealed["result"]["winner"].as_str(), sealed["result"]["price"].as_f64()),
        (Some("bidder-3"), Some(20.0)),
        "{sealed}"
    );
    let rejected: Vec<&Value> =
        sealed["bids"].as_array().unwrap().iter().filter(|b| b["rejected"].is_string()).collect();
    assert_eq!(rejected.len(), 1, "{sealed}");
    assert_eq!(rejected[0]["bidder"], "bidder-4");
    // The conversation records every bid, the rejection and one result per bidder.
    eventually("every bidder processed its notices", Duration::from_secs(30), || async {
        let (_, c) = node.get(&format!("/v1/conversations/{id}")).await;
        let m = c["messages"].as_array().cloned().unwrap_or_default();
        let notices: Vec<&Value> = m.iter().filter(|m| m["kind"] == "notification").collect();
        let won = notices.iter().filter(|n| n["content"].as_str().unwrap().starts_with("AUCTION WON")).count();
        let told = notices.iter().filter(|n| n["content"].as_str().unwrap().starts_with("BID REJECTED")).count();
        c["protocol"] == "auction"
            && m.iter().filter(|m| m["kind"] == "request").count() == 4
            && won == 1
            && told == 1
            && notices.len() == 5
            && notices.iter().all(|n| n["status"] == "processed")
    })
    .await;

    // Nobody bids: unsold, and why.
    let (_, v) = node
        .post_json(
            "/v1/auctions",
            json!({"kind": "sealed_bid", "item": "dust", "capability": "idle", "deadline_ms": 20000}),
        )
        .await;
    let none = finished(node, &format!("/v1/auctions/{}", v["id"].as_str().unwrap())).await;
    assert_eq!(
        (none["state"].as_str(), none["result"]["reason"].as_str()),
        (Some("unsold"), Some("no valid bid")),
        "{none}"
    );

    // Refusals.
    let (s, p) =
        node.post_json("/v1/auctions", json!({"kind": "english", "item": "x", "capability": "astrology"})).await;
    assert_eq!((s, p["type"].as_str()), (404, Some("https://caxton.dev/problems/no-agent-for-capability")));
    let (s, p) = node
        .post_json("/v1/auctions", json!({"kind": "english", "item": "x", "bidders": ["bidder-1"], "increment": 0}))
        .await;
    assert_eq!(s, 400, "{p}");
    let (s, p) = node.get("/v1/auctions/nope").await;
    assert_eq!((s, p["type"].as_str()), (404, Some("https://caxton.dev/problems/auction-not-found")));
    let (_, list) = node.get("/v1/conversations?protocol=auction&participant=bidder-2").await;
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auction_whose_driver_and_bidders_die_still_ends_once() {
    let stub = OpenAiStub::start().await;
    stub.respond_with(|req| bidder_rule(req).after(Duration::from_millis(700)));
    let mut cluster = auction_cluster(&stub, &["bidder-1", "bidder-2", "bidder-3"]).await;
    let leader = cluster.wait_leader().await;
    let survivor = (1..=3).find(|id| *id != leader).unwrap();
    let body = json!({"kind": "english", "item": "a crate", "capability": "buying", "increment": 5, "round_ms": 6000, "id": "crash-1"});
    let (s, v) = cluster.node(survivor).post_json("/v1/auctions", body).await;
    assert_eq!(s, 201, "{v}");
    // The leader drives it, and owns some bidders: kill it mid-auction.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cluster.node_mut(leader).kill();
    let result = {
        let node = cluster.node(survivor);
        let mut v = Value::Null;
        for _ in 0..3 {
            v = node.get("/v1/auctions/crash-1?wait_ms=40000").await.1;
            if v["state"] != "open" {
                break;
            }
        }
        v
    };
    // Which bids arrived in time depends on how fast the agents moved;
    // what is certain: it ended, and the winner is the highest valid bid.
    assert_ne!(result["state"], "open", "{result}");
    if result["state"] == "sold" {
        assert_eq!(result["result"]["winner"], result["high"]["bidder"], "{result}");
        assert_eq!(result["result"]["price"], result["high"]["amount"], "{result}");
    }
    cluster.node_mut(leader).restart().await;
    // Every node holds the same one result, and one set of result notices.
    for id in 1..=3 {
        eventually(&format!("node {id} has the result"), Duration::from_secs(20), || async {
            cluster.node(id).get("/v1/auctions/crash-1").await.1["result"] == result["result"]
        })
        .await;
    }
    let (_, c) = cluster.node(survivor).get("/v1/conversations/crash-1").await;
    let results = c["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["id"].as_str().unwrap().starts_with("crash-1.result."))
        .count();
    assert_eq!(results, 3, "one result notice per bidder: {c}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negotiations_agree_or_fail_with_the_reason() {
    let stub = OpenAiStub::start().await;
    stub.respond_with(|req| {
        let system = req["messages"][0]["content"].as_str().unwrap_or("");
        let asked = last_of_role(req, "user").unwrap()["content"].as_str().unwrap_or("").to_owned();
        if !asked.starts_with("NEGOTIATION") {
            return StubReply::text("noted");
        }
        let reply = match system {
            "Buyer." if asked.contains("No offer yet") => "offer: 80 EUR".to_owned(),
            "Buyer." => "accept".to_owned(),
            "Seller." => "Let me see.\noffer: 95 EUR".to_owned(),
            "Stubborn." => "reject: far too low".to_owned(),
            "Sleepy." => return StubReply::text("zzz").after(Duration::from_secs(8)),
            _ => "hmm".to_owned(),
        };
        StubReply::text(&reply)
    });
    let opts = ClusterOptions { voters: 3, tables: stub.provider_config("stub", ""), ..Default::default() };
    let cluster = TestCluster::start_with(3, opts).await;
    let leader = cluster.wait_leader().await;
    let node = cluster.node(leader);
    for (name, prompt) in [
        ("buyer", "Buyer."),
        ("seller", "Seller."),
        ("stubborn", "Stubborn."),
        ("sleepy", "Sleepy."),
        ("vague", "Vague."),
    ] {
        let toml = format!("name = \"{name}\"\nprovider = \"stub\"\nsystem_prompt = \"{prompt}\"\n");
        assert_eq!(node.post_toml("/v1/agents", &toml).await.0, 201);
    }
    placed(&cluster, leader, 5).await;
    let start = |parties: &[&str], extra: Value| {
        let mut body = json!({"subject": "3 crates", "parties": parties});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    let run = |body: Value| async move {
        let (s, v) = node.post_json("/v1/negotiations", body).await;
        assert_eq!(s, 201, "{v}");
        finished(node, &format!("/v1/negotiations/{}", v["id"].as_str().unwrap())).await
    };

    let agreed = run(start(&["buyer", "seller"], json!({}))).await;
    assert_eq!((agreed["state"].as_str(), agreed["terms"].as_str()), (Some("agreed"), Some("95 EUR")), "{agreed}");
    assert_eq!(agreed["moves"].as_array().unwrap().len(), 3);
    let id = agreed["id"].as_str().unwrap();
    let (_, c) = node.get(&format!("/v1/conversations/{id}")).await;
    assert_eq!((c["protocol"].as_str(), c["state"].as_str()), (Some("negotiation"), Some("completed")), "{c}");

    let exhausted = run(start(&["buyer", "seller"], json!({"max_rounds": 2}))).await;
    assert_eq!(exhausted["reason"], "2 rounds exhausted without agreement", "{exhausted}");
    let rejected = run(start(&["buyer", "stubborn"], json!({}))).await;
    assert_eq!(rejected["reason"], "rejected by stubborn: far too low", "{rejected}");
    let vague = run(start(&["vague", "buyer"], json!({}))).await;
    assert!(vague["reason"].as_str().unwrap().starts_with("vague made no move"), "{vague}");
    let late = run(start(&["sleepy", "buyer"], json!({"deadline_ms": 2000}))).await;
    assert_eq!(late["reason"], "sleepy made no move: the deadline passed", "{late}");

    // Past its expiry, the conversation takes no further messages.
    let late_id = late["id"].as_str().unwrap();
    let (s, p) = node
        .post_json(
            "/v1/messages",
            json!({"to": "buyer", "content": "one more thing", "conversation_id": late_id, "mode": "async"}),
        )
        .await;
    assert_eq!((s, p["type"].as_str()), (409, Some("https://caxton.dev/problems/conversation-expired")), "{p}");
    let (s, p) = node.post_json("/v1/negotiations", json!({"subject": "x", "parties": ["buyer"]})).await;
    assert_eq!(s, 400, "{p}");
    let (s, p) = node.get("/v1/negotiations/nope").await;
    assert_eq!((s, p["type"].as_str()), (404, Some("https://caxton.dev/problems/negotiation-not-found")));
}
