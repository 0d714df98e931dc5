//! The agents directory: deployed at start, hot-reloaded after.

use std::time::Duration;

use caxton_testing::*;

async fn revision(node: &TestNode, name: &str) -> Option<u64> {
    let (s, a) = node.get(&format!("/v1/agents/{name}")).await;
    (s == 200).then(|| a["revision"].as_u64().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_deploy_at_start_and_reload_on_add_change_delete_and_breakage() {
    let agents = tempfile::tempdir().unwrap();
    write(agents.path(), "first.toml", &agent_toml("first", "One."));
    write(agents.path(), "notes.txt", "not an agent");
    let mut node =
        TestNode::start_with(NodeOptions { agents_dir: Some(agents.path().to_path_buf()), ..Default::default() }).await;
    assert_eq!(node.agent_names().await, ["first"]);
    let t = Duration::from_secs(10);

    // Add.
    write(agents.path(), "second.toml", &agent_toml("second", "Two."));
    eventually("new file deployed", t, || async { revision(&node, "second").await == Some(1) }).await;

    // Change: a new version.
    write(agents.path(), "first.toml", &agent_toml("first", "One, revised."));
    eventually("changed file redeployed", t, || async { revision(&node, "first").await == Some(2) }).await;

    // Break: reported, the previous version keeps running.
    write(agents.path(), "first.toml", "name = \"first\"\nsystem_prompt = \"x\"\nbogus = 1\n");
    eventually("broken file reported", t, || async {
        let (_, a) = node.get("/v1/agents/first").await;
        a["source_errors"].as_array().is_some_and(|e| !e.is_empty())
    })
    .await;
    let (_, a) = node.get("/v1/agents/first").await;
    assert_eq!(a["revision"], 2);
    assert_eq!(a["state"], "running");
    assert_eq!(a["spec"]["system_prompt"], "One, revised.");
    let err = &a["source_errors"][0];
    assert_eq!((err["field"].as_str(), err["line"].as_u64()), (Some("bogus"), Some(3)));
    let (_, dir) = node.get("/v1/agents-dir").await;
    let broken = dir["files"].as_array().unwrap().iter().find(|f| f["file"] == "first.toml").unwrap();
    assert_eq!(broken["agent"], "first");
    assert!(node.log().contains("agent file rejected"), "broken file is logged");

    // Fixed again: deploys.
    write(agents.path(), "first.toml", &agent_toml("first", "One, fixed."));
    eventually("fixed file redeployed", t, || async { revision(&node, "first").await == Some(3) }).await;

    // An API deploy cannot silently shadow a file-managed agent.
    let (s, p) = node.post_toml("/v1/agents", &agent_toml("second", "hijack")).await;
    assert_eq!((s, p["type"].as_str()), (409, Some("https://caxton.dev/problems/agent-file-managed")));

    // Delete: the agent goes.
    std::fs::remove_file(agents.path().join("second.toml")).unwrap();
    eventually("deleted file's agent removed", t, || async { revision(&node, "second").await.is_none() }).await;

    // A file removed while the node is down is reconciled at start.
    node.terminate().await;
    std::fs::remove_file(agents.path().join("first.toml")).unwrap();
    write(agents.path(), "third.toml", &agent_toml("third", "Three."));
    node.restart().await;
    eventually("directory reconciled at start", t, || async { node.agent_names().await == ["third"] }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_deployed_agents_survive_directory_changes() {
    let agents = tempfile::tempdir().unwrap();
    let node =
        TestNode::start_with(NodeOptions { agents_dir: Some(agents.path().to_path_buf()), ..Default::default() }).await;
    let (s, _) = node.post_toml("/v1/agents", &agent_toml("from-api", "x")).await;
    assert_eq!(s, 201);
    write(agents.path(), "f.toml", &agent_toml("from-file", "x"));
    eventually("file deployed", Duration::from_secs(10), || async { revision(&node, "from-file").await.is_some() })
        .await;
    std::fs::remove_file(agents.path().join("f.toml")).unwrap();
    eventually("file agent removed", Duration::from_secs(10), || async {
        revision(&node, "from-file").await.is_none()
    })
    .await;
    assert_eq!(revision(&node, "from-api").await, Some(1));
}
