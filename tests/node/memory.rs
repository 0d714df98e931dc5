//! Memory through the real binary with the real MiniLM model: semantic
//! search, scopes, graph, export/import, and agents that remember. One
//! suite, run against both backends: the embedded one and a real
//! PostgreSQL with pgvector (`both_backends!` at the end). Replication to
//! other nodes: tests/cluster/memory.rs; the database going away:
//! memory_postgres.rs.

use std::sync::atomic::{AtomicUsize, Ordering};

use caxton_testing::*;
use serde_json::{json, Value};

#[derive(Clone, Copy)]
pub enum Backend {
    Embedded,
    Postgres,
}

/// Nodes on one backend: for Postgres, a server of the test's own and a
/// fresh database per node (a node started later sees an empty memory, as
/// a fresh embedded node does).
pub struct Memory {
    pub pg: Option<TestPostgres>,
    databases: AtomicUsize,
}

impl Memory {
    pub fn new(backend: Backend) -> Self {
        let pg = matches!(backend, Backend::Postgres).then(TestPostgres::start);
        Self { pg, databases: AtomicUsize::new(0) }
    }

    pub async fn node(&self) -> TestNode {
        self.node_with(NodeOptions::default()).await
    }

    pub async fn node_with(&self, mut opts: NodeOptions) -> TestNode {
        if let Some(pg) = &self.pg {
            let db = format!("memory{}", self.databases.fetch_add(1, Ordering::SeqCst));
            pg.create_database(&db);
            opts.tables.push_str(&pg.memory_config(&db));
        }
        TestNode::start_with(opts).await
    }
}

async fn search(node: &TestNode, query: &str) -> Value {
    let q: String = query.replace(' ', "%20");
    let (s, v) = node.get(&format!("/v1/memory/search?{q}")).await;
    assert_eq!(s, 200, "{v}");
    v
}

async fn semantic_search_scopes_graph_and_cli(backend: Backend) {
    let memory = Memory::new(backend);
    let node = memory.node().await;
    for (name, ty, obs) in [
        ("Whiskers", "pet", "The cat sits on the mat all afternoon."),
        ("Q3 report", "document", "Quarterly revenue grew by twelve percent."),
        ("Raft", "concept", "Raft is a consensus algorithm for replicated logs."),
    ] {
        let (s, v) = node
            .post_json("/v1/memory/entities", json!({"name": name, "entity_type": ty, "observations": [obs]}))
            .await;
        assert_eq!(s, 201, "{v}");
    }
    let v = search(&node, "q=a feline resting on a rug").await;
    let results = v["results"].as_array().unwrap();
    assert_eq!(results[0]["name"], "Whiskers", "{v}");
    let scores: Vec<f64> = results.iter().map(|r| r["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "best first: {scores:?}");
    // The unrelated entities rank below the paraphrase, if they match at all.
    let v = search(&node, "q=a feline resting on a rug&min_similarity=0").await;
    assert_eq!(v["results"][0]["name"], "Whiskers");
    assert_eq!(results[0]["observation"], "The cat sits on the mat all afternoon.");
    // Limit, threshold and type filters.
    assert_eq!(search(&node, "q=cat&limit=1").await["results"].as_array().unwrap().len(), 1);
    assert!(search(&node, "q=a feline resting on a rug&min_similarity=0.9").await["results"]
        .as_array()
        .unwrap()
        .is_empty());
    let v = search(&node, "q=money&entity_type=document").await;
    assert!(v["results"].as_array().unwrap().iter().all(|r| r["entity_type"] == "document"));

    // Observations accumulate on an entity.
    let (s, _) = node
        .post_json(
            "/v1/memory/entities",
            json!({"name": "Whiskers", "entity_type": "pet", "observations": ["Whiskers is ginger."]}),
        )
        .await;
    assert_eq!(s, 200);
    let (_, e) = node.get("/v1/memory/entities/Whiskers").await;
    assert_eq!(e["observations"].as_array().unwrap().len(), 2);

    // Relations: graph queries and enriched hits.
    node.post_json(
        "/v1/memory/entities",
        json!({"name": "Alice", "entity_type": "person", "observations": ["Alice owns a ginger cat."]}),
    )
    .await;
    let (s, _) = node
        .post_json("/v1/memory/relations", json!({"from": "Alice", "to": "Whiskers", "relation_type": "owns"}))
        .await;
    assert_eq!(s, 201);
    node.post_json("/v1/memory/relations", json!({"from": "Whiskers", "to": "Raft", "relation_type": "sleeps-on"}))
        .await;
    let (_, n) = node.get("/v1/memory/entities/Alice/neighbours?depth=2").await;
    let names: Vec<&str> = n["neighbours"].as_array().unwrap().iter().map(|x| x["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Whiskers", "Raft"]);
    let v = search(&node, "q=ginger cat&limit=1").await;
    assert!(
        v["results"][0]["related"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["relation_type"] == "owns" || r["relation_type"] == "sleeps-on"),
        "{v}"
    );
    let (s, p) = node
        .post_json("/v1/memory/relations", json!({"from": "Alice", "to": "Nobody", "relation_type": "knows"}))
        .await;
    assert_eq!((s, p["type"].as_str()), (404, Some("https://caxton.dev/problems/memory-entity-not-found")));

    // Bad input.
    let (s, _) = node.get("/v1/memory/search?q=x&min_similarity=2").await;
    assert_eq!(s, 400);
    let (s, p) = node.get("/v1/memory/search?q=x&scope=agent_only").await;
    assert_eq!(s, 400);
    assert!(p["detail"].as_str().unwrap().contains("agent=NAME"));

    // CLI.
    let out = node.cli(&["memory", "add", "Bob", "Bob maintains the billing service.", "--entity-type", "person"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = node.cli(&["memory", "search", "who runs billing?", "--limit", "1"]);
    assert!(stdout(&out).contains("Bob"), "{}", stdout(&out));

    // Delete.
    let (s, _) = node.delete("/v1/memory/entities/Bob").await;
    assert_eq!(s, 200);
    assert!(!search(&node, "q=who runs billing&limit=1").await["results"][0]["name"].as_str().unwrap_or("").eq("Bob"));
}

async fn agent_only_memory_is_isolated_between_agents(backend: Backend) {
    let memory = Memory::new(backend);
    let node = memory.node().await;
    for (agent, secret) in [("alice", "Alice's locker code is 1234."), ("bob", "Bob's locker code is 9876.")] {
        let (s, v) = node.post_json("/v1/memory/entities", json!({"name": "locker", "entity_type": "secret", "scope": "agent-only", "agent": agent, "observations": [secret]})).await;
        assert_eq!(s, 201, "{v}");
    }
    let v = search(&node, "q=locker code&agent=alice").await;
    let texts: Vec<&str> =
        v["results"].as_array().unwrap().iter().map(|r| r["observation"].as_str().unwrap()).collect();
    assert_eq!(texts, ["Alice's locker code is 1234."]);
    let v = search(&node, "q=locker code&agent=bob&scope=agent_only").await;
    assert_eq!(v["results"][0]["observation"], "Bob's locker code is 9876.");
    assert_eq!(v["results"].as_array().unwrap().len(), 1);
    // Without an identity, nobody's private memory shows.
    assert!(search(&node, "q=locker code").await["results"].as_array().unwrap().is_empty());
    let (_, l) = node.get("/v1/memory/entities?agent=alice").await;
    assert_eq!(l["entities"].as_array().unwrap().len(), 1);
    // Stored with v1's spelling (`agent-only`, still accepted), shown in the public one.
    assert_eq!(l["entities"][0]["scope"], "agent_only");
    let (s, _) = node.get("/v1/memory/entities/locker?scope=agent_only&agent=carol").await;
    assert_eq!(s, 404);
}

async fn export_wipe_import_gives_identical_search_results(backend: Backend) {
    let memory = Memory::new(backend);
    let node = memory.node().await;
    for (i, text) in
        ["Paris is the capital of France.", "Berlin is the capital of Germany.", "Rust has no garbage collector."]
            .iter()
            .enumerate()
    {
        node.post_json(
            "/v1/memory/entities",
            json!({"name": format!("fact-{i}"), "entity_type": "fact", "observations": [text]}),
        )
        .await;
    }
    node.post_json("/v1/memory/relations", json!({"from": "fact-0", "to": "fact-1", "relation_type": "near"})).await;
    let before = search(&node, "q=French capital city").await;
    let (s, export) = node.get("/v1/memory/export").await;
    assert_eq!(s, 200);
    assert_eq!(export["version"], 1);

    // A wiped node (fresh data dir) imports it.
    let fresh = memory.node().await;
    let (s, v) = fresh.post_json("/v1/memory/import", export.clone()).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["entities"], 3);
    let after = search(&fresh, "q=French capital city").await;
    let strip = |v: &Value| -> Vec<(String, String)> {
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["name"].as_str().unwrap().to_owned(), format!("{:.5}", r["score"].as_f64().unwrap())))
            .collect()
    };
    assert_eq!(strip(&before), strip(&after));

    // Entries without vectors are embedded on import; bad versions refused.
    let handwritten = json!({"version": 1, "entities": [{"name": "note", "entity_type": "fact", "scope": "global", "observations": [{"text": "Tokyo is the capital of Japan."}]}]});
    assert_eq!(fresh.post_json("/v1/memory/import", handwritten).await.0, 200);
    assert_eq!(search(&fresh, "q=Japanese capital&limit=1").await["results"][0]["name"], "note");
    let (s, p) = fresh.post_json("/v1/memory/import", json!({"version": 99, "entities": []})).await;
    assert_eq!((s, p["type"].as_str()), (422, Some("https://caxton.dev/problems/unsupported-export-version")));

    // CLI round trip.
    let file = fresh.dir.path().join("export.json");
    let out = fresh.cli(&["memory", "export", "--output", file.to_str().unwrap()]);
    assert!(out.status.success());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "an export is readable by its owner only");
    let third = memory.node().await;
    let out = third.cli(&["memory", "import", file.to_str().unwrap()]);
    assert!(stdout(&out).contains("imported 4 entities"), "{}", stdout(&out));
}

async fn an_agent_stores_a_fact_and_uses_it_in_a_later_conversation(backend: Backend) {
    let memory = Memory::new(backend);
    let stub = OpenAiStub::start().await;
    stub.script([
        // Conversation 1: the model decides to remember.
        StubReply::tool_call(
            "memory_store",
            json!({"name": "user", "entity_type": "person", "observations": ["The user's favourite colour is teal."]}),
        ),
        StubReply::text("Noted!"),
    ]);
    stub.respond_with(|_| StubReply::text("Your favourite colour is teal."));
    let node = memory.node_with(NodeOptions { tables: stub.provider_config("stub", ""), ..Default::default() }).await;
    let agent = "name = \"rememberer\"\nprovider = \"stub\"\nsystem_prompt = \"You remember things.\"\nuser_prompt_template = \"Known facts:\\n{{context}}\\n\\nUser: {{request}}\"\n[memory]\nenabled = true\nscope = \"agent-only\"\nmin_similarity = 0.2\n";
    deploy(&node, agent).await;

    let first = ask(&node, "rememberer", "My favourite colour is teal, remember that.").await;
    assert_eq!(first["reply"]["content"], "Noted!");
    assert!(stub.requests()[0]["tools"].as_array().unwrap().iter().any(|t| t["function"]["name"] == "memory_store"));

    // A different conversation: recalled from memory into {{context}}.
    let second = ask(&node, "rememberer", "What is my favourite colour?").await;
    assert_ne!(second["message"]["conversation_id"], first["message"]["conversation_id"]);
    assert_eq!(second["reply"]["content"], "Your favourite colour is teal.");
    let last = stub.requests().last().cloned().unwrap();
    let user = last_of_role(&last, "user").unwrap();
    assert!(user["content"].as_str().unwrap().contains("The user's favourite colour is teal."), "{user}");
    // Stored privately for this agent.
    let (_, e) = node.get("/v1/memory/entities/user?scope=agent-only&agent=rememberer").await;
    assert_eq!(e["observations"][0]["text"], "The user's favourite colour is teal.");
}

/// More entities than one export page (200) or import batch (100): the
/// export streams pages and the CLI imports the file batch by batch.
async fn paging_many_entities_through_export_and_import(backend: Backend) {
    use futures::StreamExt;
    let memory = Memory::new(backend);
    let node = memory.node().await;
    let n = 450;
    let stored: Vec<u16> = futures::stream::iter(0..n)
        .map(|i| {
            let node = &node;
            async move {
                let body = json!({"name": format!("item-{i:03}"), "entity_type": "item", "observations": [format!("Item number {i} is in stock.")]});
                node.post_json("/v1/memory/entities", body).await.0
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    assert!(stored.iter().all(|s| *s == 201), "{stored:?}");
    let (s, _) = node
        .post_json("/v1/memory/relations", json!({"from": "item-000", "to": "item-449", "relation_type": "next"}))
        .await;
    assert_eq!(s, 201);
    let (s, export) = node.get("/v1/memory/export").await;
    assert_eq!(s, 200);
    assert_eq!(export["entities"].as_array().unwrap().len(), n);
    assert_eq!(export["relations"].as_array().unwrap().len(), 1);

    let file = node.dir.path().join("many.json");
    let out = node.cli(&["memory", "export", "--output", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let fresh = memory.node().await;
    let out = fresh.cli(&["memory", "import", file.to_str().unwrap()]);
    assert!(stdout(&out).contains(&format!("imported {n} entities")), "{}{}", stdout(&out), stderr(&out));
    let (_, page) = fresh.get("/v1/memory/entities?limit=1000").await;
    assert_eq!(page["entities"].as_array().unwrap().len(), n);
    let (_, near) = fresh.get("/v1/memory/entities/item-000/neighbours").await;
    assert_eq!(near["neighbours"][0]["name"], "item-449", "{near}");

    // Keys in any order (as `jq -S` writes them), relations before the
    // entities they join, an entity too big for one request.
    let observations: Vec<Value> = (0..300).map(|i| json!({"text": format!("Shelf {i} holds spare parts.")})).collect();
    let sorted = json!({
        "relations": [{"from": "warehouse", "to": "office", "relation_type": "ships-to", "scope": "global", "owner": ""}],
        "entities": [
            {"name": "warehouse", "entity_type": "place", "scope": "global", "observations": observations},
            {"name": "office", "entity_type": "place", "scope": "global", "observations": [{"text": "The office orders parts."}]}
        ],
        "version": 1
    });
    let sorted_file = node.dir.path().join("sorted.json");
    std::fs::write(&sorted_file, sorted.to_string()).unwrap();
    let out = fresh.cli(&["memory", "import", sorted_file.to_str().unwrap()]);
    assert!(stdout(&out).contains("imported 2 entities"), "{}{}", stdout(&out), stderr(&out));
    let (_, warehouse) = fresh.get("/v1/memory/entities/warehouse").await;
    assert_eq!(warehouse["observations"].as_array().unwrap().len(), 300);
    let (_, near) = fresh.get("/v1/memory/entities/office/neighbours").await;
    assert_eq!(near["neighbours"][0]["name"], "warehouse", "{near}");
    // The version is checked wherever it is, and required.
    let late = node.dir.path().join("late.json");
    std::fs::write(&late, r#"{"entities": [{"name": "x", "entity_type": "t", "scope": "global", "observations": [{"text": "y"}]}], "version": 99}"#).unwrap();
    let out = fresh.cli(&["memory", "import", late.to_str().unwrap()]);
    assert!(!out.status.success() && stderr(&out).contains("version 99"), "{}", stderr(&out));
    std::fs::write(&late, r#"{"entities": []}"#).unwrap();
    let out = fresh.cli(&["memory", "import", late.to_str().unwrap()]);
    assert!(!out.status.success() && stderr(&out).contains("no `version`"), "{}", stderr(&out));
    assert_eq!(fresh.get("/v1/memory/entities/x").await.0, 404);

    // A file that is not an export: named, and nothing before it is lost.
    let bad = node.dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"version": 1, "entities": [{"name": "ok", "entity_type": "t", "scope": "global", "observations": [{"text": "fine"}]}, {"name": 5}]}"#).unwrap();
    let out = fresh.cli(&["memory", "import", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("bad.json") && stderr(&out).contains("1 entities before it"), "{}", stderr(&out));
    assert_eq!(fresh.get("/v1/memory/entities/ok").await.0, 200);
}

/// Each test of the suite, once per backend: `memory::embedded::NAME` and
/// `memory::postgres::NAME`.
macro_rules! both_backends {
    ($($test:ident),* $(,)?) => {
        mod embedded {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                super::$test(super::Backend::Embedded).await
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                super::$test(super::Backend::Postgres).await
            })*
        }
    };
}

both_backends!(
    semantic_search_scopes_graph_and_cli,
    agent_only_memory_is_isolated_between_agents,
    export_wipe_import_gives_identical_search_results,
    an_agent_stores_a_fact_and_uses_it_in_a_later_conversation,
    paging_many_entities_through_export_and_import,
);
