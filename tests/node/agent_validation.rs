//! Invalid agent definitions are refused with file, line, field and reason,
//! and nothing already deployed is disturbed.

use caxton_testing::*;

struct Case {
    what: &'static str,
    toml: String,
    line: u64,
    field: &'static str,
    reason: &'static str,
}

fn cases() -> Vec<Case> {
    let ok = "name = \"ok\"\nsystem_prompt = \"hello\"\n";
    vec![
        Case {
            what: "unknown top-level key",
            toml: format!("{ok}colour = \"blue\"\n"),
            line: 3,
            field: "colour",
            reason: "unknown field `colour`",
        },
        Case {
            what: "unknown key in [memory]",
            toml: format!("{ok}[memory]\nenabeld = true\n"),
            line: 4,
            field: "enabeld",
            reason: "unknown field `enabeld`",
        },
        Case {
            what: "name with underscore",
            toml: "name = \"my_agent\"\nsystem_prompt = \"x\"\n".into(),
            line: 1,
            field: "name",
            reason: "is not DNS-safe: may contain only ASCII letters, digits and '-'",
        },
        Case {
            what: "name starting with a digit",
            toml: "name = \"9lives\"\nsystem_prompt = \"x\"\n".into(),
            line: 1,
            field: "name",
            reason: "must start with a letter",
        },
        Case {
            what: "name too long",
            toml: format!("name = \"{}\"\nsystem_prompt = \"x\"\n", "a".repeat(70)),
            line: 1,
            field: "name",
            reason: "the limit is 63",
        },
        Case {
            what: "bad memory scope",
            toml: format!("{ok}[memory]\nscope = \"team\"\n"),
            line: 4,
            field: "memory.scope",
            reason: "`team` is not a scope; use one of agent_only, workspace, global",
        },
        Case {
            what: "similarity above 1",
            toml: format!("{ok}[memory]\nmin_similarity = 1.5\n"),
            line: 4,
            field: "memory.min_similarity",
            reason: "1.5 is outside 0..1",
        },
        Case {
            what: "negative similarity",
            toml: format!("{ok}[memory]\nmin_similarity = -0.1\n"),
            line: 4,
            field: "memory.min_similarity",
            reason: "-0.1 is outside 0..1",
        },
        Case {
            what: "undefined template variable",
            toml: format!("{ok}user_prompt_template = \"Do {{{{task}}}} now\"\n"),
            line: 3,
            field: "user_prompt_template",
            reason: "references undefined variable `{{task}}`",
        },
        Case {
            what: "unclosed placeholder",
            toml: format!("{ok}user_prompt_template = \"Do {{{{request now\"\n"),
            line: 3,
            field: "user_prompt_template",
            reason: "without a closing `}}`",
        },
        Case {
            what: "duplicated capability",
            toml: format!("{ok}capabilities = [\"search\", \"write\", \"search\"]\n"),
            line: 3,
            field: "capabilities",
            reason: "capability `search` is listed more than once",
        },
        Case {
            what: "missing system prompt",
            toml: "name = \"ok\"\n".into(),
            line: 1,
            field: "system_prompt",
            reason: "is required",
        },
        Case {
            what: "wrong type",
            toml: format!("{ok}max_turns = \"many\"\n"),
            line: 3,
            field: "max_turns",
            reason: "invalid type: string \"many\", expected i64",
        },
        Case {
            what: "max_turns out of range",
            toml: format!("{ok}max_turns = 0\n"),
            line: 3,
            field: "max_turns",
            reason: "0 is outside 1..=100",
        },
        Case {
            what: "bad timeout",
            toml: format!("{ok}timeout = \"soon\"\n"),
            line: 3,
            field: "timeout",
            reason: "`soon` is not a duration",
        },
        Case {
            what: "bad version",
            toml: format!("{ok}version = \"latest\"\n"),
            line: 3,
            field: "version",
            reason: "`latest` is not a version like \"1.2.3\"",
        },
        Case {
            what: "TOML syntax error",
            toml: "name = \"ok\nsystem_prompt = \"x\"\n".into(),
            line: 1,
            field: "name",
            reason: "invalid basic string",
        },
        Case {
            what: "oversize file",
            toml: format!("{ok}documentation = \"{}\"\n", "d".repeat(300 * 1024)),
            line: 1,
            field: "(file)",
            reason: "the limit is 262144 bytes",
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_invalid_file_names_field_line_and_reason() {
    let node =
        TestNode::start_with(NodeOptions { extra_config: "max_body_bytes = 1048576".into(), ..Default::default() })
            .await;
    let (s, _) = node.post_toml("/v1/agents", &agent_toml("survivor", "I stay.")).await;
    assert_eq!(s, 201);

    let cases = cases();
    assert!(cases.len() >= 10);
    for case in cases {
        let (status, p) = node.post_toml("/v1/agents", &case.toml).await;
        assert_eq!(status, 422, "{}: {p}", case.what);
        assert_eq!(p["type"], "https://caxton.dev/problems/invalid-agent", "{}", case.what);
        let errors = p["errors"].as_array().unwrap_or_else(|| panic!("{}: no errors in {p}", case.what));
        let hit = errors.iter().find(|e| e["field"] == case.field);
        let e = hit.unwrap_or_else(|| panic!("{}: no error for field {} in {p}", case.what, case.field));
        assert_eq!(e["line"].as_u64(), Some(case.line), "{}: {e}", case.what);
        assert!(
            e["reason"].as_str().unwrap().contains(case.reason),
            "{}: reason {} lacks {:?}",
            case.what,
            e["reason"],
            case.reason
        );
        assert_eq!(e["file"], "(request body)");
    }

    // Nothing accepted before was lost or changed.
    assert_eq!(node.agent_names().await, ["survivor"]);
    let (_, a) = node.get("/v1/agents/survivor").await;
    assert_eq!(a["revision"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_problems_in_a_file_are_reported_at_once() {
    let node = TestNode::start().await;
    let toml = "name = \"bad_name\"\nsystem_prompt = \"x\"\ncapabilities = [\"a\", \"a\"]\n[memory]\nscope = \"nope\"\nmin_similarity = 2.0\n";
    let (s, p) = node.post_toml("/v1/agents", toml).await;
    assert_eq!(s, 422);
    let fields: Vec<&str> = p["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["name", "capabilities", "memory.scope", "memory.min_similarity"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_data_analyzer_deploys_as_written() {
    // Its tools (http_client, csv_parser, chart_generator) are the example servers.
    let tools = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/mcp");
    let node =
        TestNode::start_with(NodeOptions { extra_config: format!("tools_dir = \"{tools}\""), ..Default::default() })
            .await;
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/agents/data-analyzer.toml")).unwrap();
    let (s, body) = node.post_toml("/v1/agents", &text).await;
    assert_eq!(s, 201, "{body}");
    let (_, a) = node.get("/v1/agents/DataAnalyzer").await;
    assert_eq!(a["spec"]["memory"]["scope"], "workspace");
    assert_eq!(a["capabilities"], serde_json::json!(["data-analysis", "report-generation"]));
    assert!(a["spec"]["documentation"].as_str().unwrap().contains("## Usage Examples"));
    // Names are case-insensitive, like DNS.
    let (s, _) = node.get("/v1/agents/dataanalyzer").await;
    assert_eq!(s, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_tool_is_refused_with_the_list_of_available_tools() {
    let node = TestNode::start().await;
    let toml = "name = \"toolish\"\nsystem_prompt = \"x\"\ntools = [\"ask_agent\", \"teleport\"]\n";
    let (s, p) = node.post_toml("/v1/agents", toml).await;
    assert_eq!(s, 422, "{p}");
    let e = &p["errors"][0];
    assert_eq!((e["field"].as_str(), e["line"].as_u64()), (Some("tools"), Some(3)));
    let reason = e["reason"].as_str().unwrap();
    assert!(
        reason.contains("`teleport` is not an available tool") && reason.contains("ask_agent, memory_search"),
        "{reason}"
    );
}
