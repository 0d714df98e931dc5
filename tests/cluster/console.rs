//! The web console in a real browser against a 3-node cluster with mutual
//! TLS between its nodes: the members with their lag, health and
//! certificate expiry; a chat with an agent another node runs, its tokens
//! arriving one by one; a canary rollout followed until it is promoted;
//! and a contract-net conversation drawn as it happens. The page must log
//! no error and fail no request throughout.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use caxton_testing::*;
use serde_json::{json, Value};

const STORY: [&str; 6] = ["Once", " upon", " a", " time", " there", " was."];

/// Bidders answer a call for proposals slowly, so the conversation grows
/// while the page watches; the storyteller streams its story a word at a time.
fn script(stub: &OpenAiStub) {
    stub.respond_with(|req: &Value| {
        let system = last_of_role(req, "system").map(|m| m["content"].to_string()).unwrap_or_default();
        let user = last_of_role(req, "user").map(|m| m["content"].to_string()).unwrap_or_default();
        let last_role = req["messages"].as_array().and_then(|m| m.last()).map(|m| m["role"].clone());
        if last_role == Some(json!("tool")) {
            return StubReply::text("Noted: Ada likes tea.");
        }
        if user.contains("Remember") {
            return StubReply::tool_call(
                "memory_store",
                json!({"name": "ada", "entity_type": "person", "observations": ["Ada likes tea"]}),
            );
        }
        if user.contains("CALL FOR PROPOSALS") {
            let bidder: u32 = system.chars().filter(char::is_ascii_digit).collect::<String>().parse().unwrap_or(9);
            StubReply::text(&format!("I can. cost: {bidder}")).after(Duration::from_millis(700 * u64::from(bidder)))
        } else if user.contains("AWARD") {
            StubReply::text("Delivered.").after(Duration::from_millis(800))
        } else if system.contains("Bidder") {
            StubReply::text("noted")
        } else {
            StubReply::streamed(&STORY, Duration::from_millis(350))
        }
    });
}

async fn deploy_on(node: &TestNode, toml: &str) {
    let (s, v) = node.post_toml("/v1/agents", toml).await;
    assert!(s == 201 || s == 200, "{s} {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_the_cluster_streams_a_chat_and_follows_a_rollout_and_a_contract_net() {
    let stub = OpenAiStub::start().await;
    script(&stub);
    let opts = ClusterOptions { voters: 3, tls: true, tables: stub.provider_config("stub", ""), ..Default::default() };
    let cluster = TestCluster::start_with(3, opts).await;
    let leader = cluster.wait_leader().await;
    let lead = cluster.node(leader);
    deploy_on(lead, "name = \"storyteller\"\nprovider = \"stub\"\nsystem_prompt = \"You tell stories.\"\n").await;
    // The browser talks to a node that does not run the storyteller.
    let owner = eventually_some("the storyteller is placed", Duration::from_secs(20), || async {
        let (s, v) = lead.get("/v1/agents/storyteller").await;
        (s == 200).then(|| v["owner_node"].as_u64()).flatten()
    })
    .await;
    let entry_id = (1..=3).find(|id| *id != owner).unwrap();
    let entry = cluster.node(entry_id);
    let ui = entry.url("/ui");
    let browser = Browser::start().await;

    // Cluster: three healthy members, a leader, certificates with their expiry.
    browser.goto(&format!("{ui}#/cluster")).await;
    browser
        .wait_for(
            "three healthy members",
            "return [...document.querySelectorAll('#cluster-members tbody tr')].filter(r => r.innerText.includes('healthy')).length === 3",
        )
        .await;
    let members = browser.text_of("#cluster-members").await;
    assert!(members.contains("leader"), "{members}");
    // Every member's term and applied index, from any node (gossip).
    browser
        .wait_for(
            "each member's applied index",
            "return [...document.querySelectorAll('#cluster-members tbody tr')].every(r => /^\\d+$/.test(r.cells[4].innerText))",
        )
        .await;
    browser
        .wait_for("certificate expiry", "return document.querySelector('#cluster-members').innerText.includes('days')")
        .await;
    // Live events: a deploy elsewhere appears on the page.
    deploy_on(lead, "name = \"visitor\"\nprovider = \"echo\"\nsystem_prompt = \"Hi.\"\n").await;
    browser
        .wait_for("the deploy event", "return document.getElementById('cluster-events').innerText.includes('visitor')")
        .await;
    browser.check_page("cluster").await;

    // Chat with an agent on another node: the answer grows token by token.
    browser.goto(&format!("{ui}#/chat/storyteller")).await;
    browser.fill("#chat-input", "Tell me a story").await;
    browser.click_on("#chat-send").await;
    let partial = browser
        .wait_for(
            "the first tokens",
            "const b = document.querySelector('.bubble.agent'); return b && !b.dataset.done && +b.dataset.tokens >= 2 && b.textContent",
        )
        .await;
    let partial = partial.as_str().unwrap().to_owned();
    browser
        .wait_for("the whole answer", "const b = document.querySelector('.bubble.agent'); return b && b.dataset.done")
        .await;
    let whole = browser.text_of(".bubble.agent").await;
    assert_eq!(whole, STORY.concat());
    assert!(whole.starts_with(&partial) && partial.len() < whole.len(), "streamed `{partial}` before `{whole}`");
    browser.wait_text("revision 1").await;
    // A turn that writes memory shows the write in place.
    deploy_on(lead, "name = \"archivist\"\nprovider = \"stub\"\nsystem_prompt = \"You keep notes.\"\n[memory]\nenabled = true\nscope = \"global\"\n").await;
    browser.fill("#chat-to", "archivist").await;
    browser.fill("#chat-input", "Remember that Ada likes tea").await;
    browser.click_on("#chat-send").await;
    browser.wait_text("Noted: Ada likes tea.").await;
    browser
        .wait_for("the memory write", "const l = document.querySelector('.tool-calls'); return l && l.innerText")
        .await;
    let did = browser.text_of(".tool-calls").await;
    assert!(did.contains("memory write (memory_store)") && did.contains("Ada likes tea"), "{did}");
    assert_eq!(entry.get("/v1/memory/entities/ada?scope=global").await.0, 200, "the write happened");
    browser.check_page("chat").await;

    // A canary rollout: its weight climbs on the page, then it is promoted.
    deploy_on(lead, "name = \"clerk\"\nprovider = \"echo\"\nsystem_prompt = \"one\"\n").await;
    let canary = "name = \"clerk\"\nprovider = \"echo\"\nsystem_prompt = \"two\"\n\n[rollout]\n\
                  steps = [{ weight = 25, pause = \"3s\" }, { weight = 60, pause = \"3s\" }]\n\
                  [rollout.analysis]\nmin_requests = 1\ninterval = \"250ms\"\n";
    deploy_on(lead, canary).await;
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (stop, url) = (stop.clone(), entry.url("/v1/messages"));
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let body = json!({"to": "clerk", "content": format!("job {i}"), "conversation_id": format!("c-{i}"), "timeout_ms": 20000});
                let _ = http.post(&url).json(&body).send().await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    browser.goto(&format!("{ui}#/agents/clerk")).await;
    let mut weights = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let state = browser
            .eval("const e = document.getElementById('rollout-state'); return e && e.textContent", json!([]))
            .await;
        let weight = browser
            .eval("const e = document.getElementById('rollout-weight'); return e && e.textContent", json!([]))
            .await;
        if let Some(w) = weight.as_str() {
            if weights.last().map(String::as_str) != Some(w) {
                weights.push(w.to_owned());
            }
        }
        if state == json!("promoted") {
            break;
        }
        if weights.len() == 2 {
            browser.screenshot(&screenshot_dir().join("rollout-light.png")).await;
        }
        assert!(std::time::Instant::now() < deadline, "the rollout never finished on the page: {weights:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::SeqCst);
    traffic.await.unwrap();
    assert!(weights.iter().any(|w| w == "25 %") && weights.iter().any(|w| w == "60 %"), "weights seen: {weights:?}");
    assert!(browser.text_of("#rollout-decision").await.contains("passed"));
    let points = browser
        .eval("return document.querySelectorAll('#rollout polyline')[1].getAttribute('points')", json!([]))
        .await;
    assert!(points.as_str().unwrap().split(' ').count() >= 2, "the chart drew the candidate's figures: {points}");
    browser.assert_accessible("rollout").await;
    browser.assert_clean_log("rollout").await;

    // A contract-net, followed live from the conversations list.
    for i in 1..=3 {
        deploy_on(
            lead,
            &format!("name = \"bidder-{i}\"\nprovider = \"stub\"\ncapabilities = [\"haul\"]\nsystem_prompt = \"Bidder {i}.\"\n"),
        )
        .await;
    }
    browser.goto(&format!("{ui}#/conversations")).await;
    browser.find("#conversation-list").await;
    let contract = {
        let url = entry.url("/v1/contract-net");
        tokio::spawn(async move {
            let body = json!({"capability": "haul", "task": "move 3 crates", "deadline_ms": 15000});
            reqwest::Client::new().post(url).json(&body).send().await.unwrap().json::<Value>().await.unwrap()
        })
    };
    browser
        .wait_for(
            "the contract-net in the list",
            "return [...document.querySelectorAll('#conversation-list tbody tr')].some(r => r.innerText.includes('contract_net'))",
        )
        .await;
    browser
        .eval(
            "[...document.querySelectorAll('#conversation-list tbody tr')].find(r => r.innerText.includes('contract_net')).querySelector('a').click()",
            json!([]),
        )
        .await;
    let mut counts = Vec::new();
    loop {
        let n = browser.eval("return document.querySelectorAll('#conversation-messages li').length", json!([])).await;
        let n = n.as_u64().unwrap();
        if counts.last() != Some(&n) {
            counts.push(n);
        }
        let body = browser.body_text().await;
        if body.contains("Delivered.") {
            break;
        }
        assert!(counts.len() < 200, "never finished: {counts:?}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let outcome = contract.await.unwrap();
    assert_eq!(outcome["awarded_to"], "bidder-1", "{outcome}");
    assert!(counts.len() >= 3, "the diagram grew as messages came: {counts:?}");
    let arrows = browser.find_all("#sequence svg a").await.len();
    assert!(arrows >= 8, "{arrows} arrows");
    browser.eval("window.scrollTo(0, 0)", json!([])).await;
    browser.check_page("conversation").await;
    // An arrow opens its message.
    browser.click_on("#sequence svg a").await;
    browser.wait_for("the message opened", "const d = document.getElementById('msg-0'); return d && d.open").await;
    assert!(browser.text_of("#conversation-messages").await.contains("CALL FOR PROPOSALS"));
    browser.assert_clean_log("conversation").await;

    // Administration from the page, each step confirmed in a dialog:
    // rebalance, then leadership to the node the page is on.
    browser.goto(&format!("{ui}#/cluster")).await;
    browser.click_on("#cluster-placement button").await;
    browser.click_on("dialog button.danger").await;
    browser.wait_text("shards moved").await;
    let button = format!("Make node {entry_id} leader");
    for attempt in 0.. {
        browser.wait_text(&button).await;
        browser.click_button("#cluster-members", &button).await;
        browser.click_on("dialog button.danger").await;
        let led = tokio::time::timeout(Duration::from_secs(15), async {
            while cluster.leader().await != Some(entry_id) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
        if led.is_ok() {
            break;
        }
        // An election can be lost to a busy machine; the page said so, and asking again is what a person does.
        assert!(attempt < 3, "leadership never moved to node {entry_id}");
    }
    let shows = format!(
        "const r = [...document.querySelectorAll('#cluster-members tbody tr')].find(r => r.cells[0].innerText === '{entry_id}'); \
         return r && r.cells[1].innerText.includes('leader')"
    );
    browser.wait_for("the page shows the new leader", &shows).await;
    browser.assert_clean_log("administration").await;
}
