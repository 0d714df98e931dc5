//! Revisions, rollback, `NAME@N`, and rollouts judged by live traffic,
//! through the real binary with an OpenAI-wire stand-in for the model.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use caxton_testing::*;
use serde_json::json;

fn agent(name: &str, prompt: &str, extra: &str) -> String {
    format!("name = \"{name}\"\nprovider = \"stub\"\nsystem_prompt = \"{prompt}\"\n{extra}\n")
}

/// Answers every request with the system prompt it was given, so a reply
/// shows which revision served it; a prompt containing `flaky` fails every
/// other request it serves (400: not retried).
fn answer_with_prompt(stub: &OpenAiStub) {
    let calls = Arc::new(AtomicU64::new(0));
    stub.respond_with(move |req| {
        let prompt = req["messages"][0]["content"].as_str().unwrap_or_default().to_owned();
        if prompt.contains("flaky") && calls.fetch_add(1, Ordering::Relaxed).is_multiple_of(2) {
            return StubReply::error(400, "the new prompt broke something");
        }
        StubReply::text(&prompt)
    });
}

async fn stub_node() -> (OpenAiStub, TestNode) {
    let stub = OpenAiStub::start().await;
    answer_with_prompt(&stub);
    let node =
        TestNode::start_with(NodeOptions { tables: stub.provider_config("stub", ""), ..Default::default() }).await;
    (stub, node)
}

async fn send(node: &TestNode, to: &str, conversation: &str) -> serde_json::Value {
    let body = json!({"to": to, "content": "hello", "conversation_id": conversation, "timeout_ms": 30000});
    let (status, v) = node.post_json("/v1/messages", body).await;
    assert_eq!(status, 200, "every request is answered: {v}");
    assert!(v["reply"].is_object(), "{v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revisions_are_kept_restored_exactly_and_addressable() {
    let (_stub, node) = stub_node().await;
    let (one, two) = (agent("rev", "first prompt", "# one"), agent("rev", "second prompt", "# two"));
    assert_eq!(node.post_toml("/v1/agents", &one).await.0, 201);
    assert_eq!(node.post_toml("/v1/agents", &two).await.1["revision"], 2);
    let (_, same) = node.post_toml("/v1/agents", &two).await;
    assert_eq!(
        (same["revision"].as_u64(), same["changed"].as_bool()),
        (Some(2), Some(false)),
        "identical: no revision"
    );

    let (_, h) = node.get("/v1/agents/rev/revisions").await;
    assert_eq!(h["serving"], 2);
    let revs: Vec<u64> = h["revisions"].as_array().unwrap().iter().map(|r| r["revision"].as_u64().unwrap()).collect();
    assert_eq!(revs, [1, 2]);
    assert_eq!(h["revisions"][0]["deployed_by"], "dev");
    let (_, r1) = node.get("/v1/agents/rev/revisions/1").await;
    assert_eq!(r1["toml"], one.as_str());
    assert_eq!(node.get("/v1/agents/rev/revisions/7").await.0, 404);

    // NAME@N reaches revision N; the plain name the serving one.
    let v = send(&node, "rev@1", "c-pinned").await;
    assert_eq!((v["reply"]["content"].as_str(), v["reply"]["revision"].as_u64()), (Some("first prompt"), Some(1)));
    let v = send(&node, "rev", "c-plain").await;
    assert_eq!((v["reply"]["content"].as_str(), v["reply"]["revision"].as_u64()), (Some("second prompt"), Some(2)));
    let (status, p) = node.post_json("/v1/messages", json!({"to": "rev@9", "content": "x"})).await;
    assert_eq!(status, 404);
    assert!(p["detail"].as_str().unwrap().contains("has no revision 9; its revisions: 1, 2"), "{p}");
    // The OpenAI-compatible `model` field takes NAME@N too.
    let (status, c) = node
        .post_json("/v1/chat/completions", json!({"model": "rev@1", "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["choices"][0]["message"]["content"], "first prompt");

    // Rollback is a new revision with revision 1's exact text.
    let out = node.cli(&["agent", "rollback", "rev", "--to", "1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("revision 3 restores revision 1"));
    let (_, a) = node.get("/v1/agents/rev").await;
    assert_eq!((a["revision"].as_u64(), a["toml"].as_str()), (Some(3), Some(one.as_str())));
    let (_, r3) = node.get("/v1/agents/rev/revisions/3").await;
    assert_eq!(r3["hash"], r1["hash"]);
    eventually("revision 3 serves", Duration::from_secs(10), || async {
        send(&node, "rev", &format!("c-{}", rand_suffix())).await["reply"]["content"] == "first prompt"
    })
    .await;
    let history = node.cli(&["agent", "history", "rev"]);
    let text = String::from_utf8_lossy(&history.stdout);
    assert!(text.contains("3*") && text.lines().count() == 4, "{text}");
    // Rolling back without --to goes to the revision before the serving one.
    let (status, back) = node.post_json("/v1/agents/rev/rollback", json!({})).await;
    assert_eq!((status, back["restored"].as_u64(), back["revision"].as_u64()), (200, Some(2), Some(4)), "{back}");
}

fn rand_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

const CANARY: &str = r#"
[rollout]
strategy = "canary"
steps = [{ weight = 50, pause = "1m" }, { weight = 90, pause = "1m" }]
[rollout.analysis]
min_requests = 6
max_error_rate = 0.1
failure_limit = 1
interval = "250ms"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_canary_rolls_back_by_itself_and_no_request_is_lost() {
    let (_stub, node) = stub_node().await;
    assert_eq!(node.post_toml("/v1/agents", &agent("shop", "stable prompt", "")).await.0, 201);
    let (_, d) = node.post_toml("/v1/agents", &agent("shop", "flaky prompt", CANARY)).await;
    assert_eq!(d["revision"], 2, "{d}");
    let (_, a) = node.get("/v1/agents/shop").await;
    assert_eq!(a["revision"], 1, "the stable revision keeps serving while the canary runs");
    let (_, r) = node.get("/v1/agents/shop/rollout").await;
    assert_eq!((r["state"].as_str(), r["weight"].as_u64()), (Some("progressing"), Some(50)), "{r}");

    // Traffic until the rollout ends; every request gets a reply.
    let mut served: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    let mut sent = 0;
    let rolled_back = loop {
        for _ in 0..4 {
            let v = send(&node, "shop", &format!("conv-{}", rand_suffix())).await;
            let rev = v["reply"]["revision"].as_u64().expect("the reply names its revision");
            let failed = v["reply"]["kind"] == "error";
            let e = served.entry(rev).or_default();
            e.0 += 1;
            e.1 += u64::from(failed);
            sent += 1;
        }
        let (_, r) = node.get("/v1/agents/shop/rollout").await;
        if r["state"] != "progressing" {
            break r;
        }
        assert!(sent < 400, "no verdict after {sent} requests: {r}");
    };
    assert_eq!(rolled_back["state"], "rolled_back", "{rolled_back}");
    let reason = rolled_back["reason"].as_str().unwrap();
    assert!(reason.contains("analysis failed: error rate"), "{reason}");
    assert!(served[&2].1 > 0 && served.get(&1).is_some_and(|(_, f)| *f == 0), "{served:?}");
    assert_eq!(served.values().map(|(n, _)| n).sum::<u64>(), sent);

    // From now on only the stable revision answers, and it still serves.
    for i in 0..10 {
        let v = send(&node, "shop", &format!("after-{i}")).await;
        assert_eq!((v["reply"]["revision"].as_u64(), v["reply"]["kind"].as_str()), (Some(1), Some("response")));
    }
    assert_eq!(node.get("/v1/agents/shop").await.1["revision"], 1);
    let status = node.cli(&["agent", "rollout", "status", "shop"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("rolled_back") && text.contains("error rate"), "{text}");
    let (_, events) = node.get("/metrics").await;
    let _ = events;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_steer_a_canary_and_a_manual_step_waits_for_them() {
    let (_stub, node) = stub_node().await;
    let manual = r#"
[rollout]
steps = [{ weight = 30, pause = "manual" }]
[rollout.analysis]
min_requests = 1
"#;
    assert_eq!(node.post_toml("/v1/agents", &agent("desk", "one", "")).await.0, 201);
    assert_eq!(node.post_toml("/v1/agents", &agent("desk", "two", manual)).await.1["revision"], 2);
    for i in 0..6 {
        send(&node, "desk", &format!("warm-{i}")).await;
    }
    let paused = eventually_some("the manual step pauses", Duration::from_secs(10), || async {
        let (_, r) = node.get("/v1/agents/desk/rollout").await;
        (r["state"] == "paused").then_some(r)
    })
    .await;
    assert!(paused["reason"].as_str().unwrap().contains("manual step 1 at 30 %"), "{paused}");
    let out = node.cli(&["agent", "rollout", "resume", "desk"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, r) = node.get("/v1/agents/desk/rollout").await;
    assert_eq!(r["state"], "promoted", "past the last step is promotion: {r}");
    assert_eq!(node.get("/v1/agents/desk").await.1["revision"], 2);
    // Nothing to steer any more.
    let (status, p) = node.post_json("/v1/agents/desk/rollout/abort", json!({})).await;
    assert_eq!(status, 409, "{p}");

    // An abort leaves the stable revision serving.
    assert_eq!(node.post_toml("/v1/agents", &agent("desk", "three", manual)).await.1["revision"], 3);
    let (status, r) = node.post_json("/v1/agents/desk/rollout/abort", json!({})).await;
    assert_eq!((status, r["state"].as_str()), (200, Some("aborted")), "{r}");
    for i in 0..5 {
        let v = send(&node, "desk", &format!("after-abort-{i}")).await;
        assert_eq!(v["reply"]["content"], "two");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_switches_every_conversation_once_under_traffic() {
    let (stub, node) = stub_node().await;
    let node = Arc::new(node);
    assert_eq!(node.post_toml("/v1/agents", &agent("bg", "blue", "")).await.0, 201);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..4 {
        let (node, stop) = (node.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut seen: Vec<(u64, String)> = Vec::new();
            // Until stopped and served by green at least once: a fixed
            // window after the switch was too short for a message in flight
            // when the whole suite shares the two cores.
            let green = |seen: &[(u64, String)]| seen.iter().any(|(r, _)| *r == 2);
            let give_up = std::time::Instant::now() + Duration::from_secs(60);
            while !(stop.load(Ordering::Relaxed) && green(&seen)) && std::time::Instant::now() < give_up {
                let v = send(&node, "bg", &format!("conversation-{c}")).await;
                seen.push((
                    v["reply"]["revision"].as_u64().unwrap(),
                    v["reply"]["content"].as_str().unwrap().to_owned(),
                ));
            }
            seen
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let green = r#"
[rollout]
strategy = "blue-green"
warmup_probes = 3
warmup = "1s"
probe = "are you ready?"
"#;
    assert_eq!(node.post_toml("/v1/agents", &agent("bg", "green", green)).await.1["revision"], 2);
    let done = eventually_some("the switch", Duration::from_secs(20), || async {
        let (_, r) = node.get("/v1/agents/bg/rollout").await;
        (r["state"] != "progressing").then_some(r)
    })
    .await;
    assert_eq!(done["state"], "promoted", "{done}");
    assert!(done["switched_at_index"].as_u64().is_some(), "{done}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        let seen = client.await.unwrap();
        // Blue until one point, green after it: never back.
        let switch = seen.iter().position(|(r, _)| *r == 2).expect("green served after the switch");
        assert!(seen[..switch].iter().all(|(r, c)| *r == 1 && c == "blue"), "{seen:?}");
        assert!(seen[switch..].iter().all(|(r, c)| *r == 2 && c == "green"), "{seen:?}");
    }
    // The probes reached the new revision before any client did.
    let probes = stub
        .requests()
        .iter()
        .filter(|r| last_of_role(r, "user").is_some_and(|m| m["content"] == "are you ready?"))
        .count();
    assert_eq!(probes, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_answers_copies_without_side_effects_and_reports_how_close_it_came() {
    let stub = OpenAiStub::start().await;
    // The stable revision answers; the shadow tries to remember something
    // and to ask another agent before it answers.
    stub.respond_with(|req| {
        let prompt = req["messages"][0]["content"].as_str().unwrap_or_default();
        if !prompt.contains("shadow") {
            return StubReply::text("the answer is forty-two");
        }
        let tool_results = req["messages"].as_array().unwrap().iter().filter(|m| m["role"] == "tool").count();
        match tool_results {
            0 => StubReply::tool_call("memory_store", json!({"name": "customer", "observations": ["asked again"]})),
            1 => StubReply::tool_call("ask_agent", json!({"agent": "helper", "message": "please do something"})),
            _ => StubReply::text("the answer is forty two"),
        }
    });
    let node =
        TestNode::start_with(NodeOptions { tables: stub.provider_config("stub", ""), ..Default::default() }).await;
    assert_eq!(
        node.post_toml("/v1/agents", "name = \"helper\"\nprovider = \"echo\"\nsystem_prompt = \"x\"\n").await.0,
        201
    );
    assert_eq!(node.post_toml("/v1/agents", &agent("oracle", "stable prompt", "")).await.0, 201);
    let shadow = "tools = [\"ask_agent\"]\n[memory]\nenabled = true\n[rollout]\nstrategy = \"shadow\"\npercent = 100\n";
    assert_eq!(node.post_toml("/v1/agents", &agent("oracle", "shadow prompt", shadow)).await.1["revision"], 2);

    for i in 0..8 {
        let v = send(&node, "oracle", &format!("s-{i}")).await;
        assert_eq!(v["reply"]["content"], "the answer is forty-two", "clients only see the stable answer: {v}");
        assert_eq!(v["reply"]["revision"], 1);
    }
    let report = eventually_some("every copy answered and compared", Duration::from_secs(60), || async {
        let (_, r) = node.get("/v1/agents/oracle/rollout").await;
        (r["shadow"]["compared"] == 8).then_some(r)
    })
    .await;
    let s = &report["shadow"];
    assert_eq!(
        (s["sent"].as_u64(), s["shadow"]["requests"].as_u64(), s["shadow"]["errors"].as_u64()),
        (Some(8), Some(8), Some(0)),
        "{s}"
    );
    let mean = s["similarity_mean"].as_f64().unwrap();
    assert!(mean > 0.8 && mean <= 1.0001, "near-identical answers are similar: {mean}");
    assert!(s["stable"]["requests"].as_u64() >= Some(8), "{s}");

    // Neither the memory write nor the request to another agent happened.
    let tool_results: Vec<String> = stub
        .requests()
        .iter()
        .flat_map(|r| r["messages"].as_array().unwrap().clone())
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(tool_results.iter().any(|t| t.contains("`memory_store` was not run")), "{tool_results:?}");
    assert!(tool_results.iter().any(|t| t.contains("`ask_agent` was not run")), "{tool_results:?}");
    let exposition = node.http.get(node.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert_eq!(metric_value(&exposition, "caxton_memory_entities", &[]), Some(0.0), "nothing was remembered");
    for i in 0..8 {
        let (_, c) = node.get(&format!("/v1/conversations/s-{i}")).await;
        let senders: Vec<&str> =
            c["messages"].as_array().unwrap().iter().filter_map(|m| m["sender"].as_str()).collect();
        assert!(
            !senders.contains(&"helper") && !senders.contains(&"oracle@2"),
            "the helper was never asked: {senders:?}"
        );
    }

    let status = node.cli(&["agent", "rollout", "status", "oracle"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("shadow:     8 copies sent") && text.contains("similarity: mean"), "{text}");
    // Promoting a shadow makes the new revision serve.
    let (status, r) = node.post_json("/v1/agents/oracle/rollout/promote", json!({})).await;
    assert_eq!((status, r["state"].as_str()), (200, Some("promoted")), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agents_directory_file_with_a_rollout_table_rolls_out_its_changes() {
    let dir = tempfile::tempdir().unwrap();
    let node =
        TestNode::start_with(NodeOptions { agents_dir: Some(dir.path().to_path_buf()), ..Default::default() }).await;
    let file = |prompt: &str| {
        format!("name = \"filed\"\nprovider = \"echo\"\nsystem_prompt = \"{prompt}\"\n[rollout]\nsteps = [{{ weight = 40, pause = \"manual\" }}]\n")
    };
    write(dir.path(), "filed.toml", &file("one"));
    eventually("the first revision serves", Duration::from_secs(10), || async {
        node.get("/v1/agents/filed").await.1["revision"] == 1
    })
    .await;
    write(dir.path(), "filed.toml", &file("two"));
    let r = eventually_some("the change rolls out", Duration::from_secs(10), || async {
        let (status, r) = node.get("/v1/agents/filed/rollout").await;
        (status == 200).then_some(r)
    })
    .await;
    assert_eq!(
        (r["stable"].as_u64(), r["candidate"].as_u64(), r["weight"].as_u64()),
        (Some(1), Some(2), Some(40)),
        "{r}"
    );
    let (_, h) = node.get("/v1/agents/filed/revisions").await;
    let by = h["revisions"][1]["deployed_by"].as_str().unwrap();
    assert!(by.starts_with("file:") && by.ends_with("filed.toml"), "{h}");
    // A file-managed agent goes back by editing its file, not by rollback.
    let (status, _) = node.post_json("/v1/agents/filed/rollback", json!({"to": 1})).await;
    assert_eq!(status, 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_chooses_its_strategy_by_flag_query_or_json_and_bad_ones_are_named() {
    let (_stub, node) = stub_node().await;
    assert_eq!(node.post_toml("/v1/agents", &agent("pick", "one", "")).await.0, 201);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pick.toml");
    std::fs::write(&file, agent("pick", "two", "")).unwrap();
    let out = node.cli(&["agent", "deploy", file.to_str().unwrap(), "--strategy", "canary"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, r) = node.get("/v1/agents/pick/rollout").await;
    assert_eq!((r["spec"]["strategy"].as_str(), r["weight"].as_u64()), (Some("canary"), Some(10)), "{r}");

    let body = json!({"toml": agent("pick", "three", ""), "strategy": "blue-green"});
    let (status, d) = node.post_json("/v1/agents", body).await;
    assert_eq!((status, d["revision"].as_u64()), (200, Some(3)), "{d}");
    let (_, r) = node.get("/v1/agents/pick/rollout").await;
    assert_eq!(r["spec"]["strategy"], "blue-green", "a new deploy supersedes the canary: {r}");

    let (status, p) = node
        .send(reqwest::Method::POST, "/v1/agents?strategy=sideways", "application/toml", agent("pick", "four", ""))
        .await;
    assert_eq!(status, 400, "{p}");
    assert!(p["detail"].as_str().unwrap().contains("`sideways` is not a strategy"), "{p}");
    let (status, p) = node.get("/v1/agents/pick?consistency=eventual").await;
    assert_eq!(status, 400, "{p}");
    assert!(p["detail"].as_str().unwrap().contains("consistency=`eventual`"), "{p}");
    let (status, a) = node.get("/v1/agents/pick?consistency=linearizable").await;
    assert_eq!((status, a["revision"].as_u64()), (200, Some(1)), "{a}");
}
