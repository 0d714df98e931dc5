//! The LLM/tool loop against a scripted OpenAI-wire server, through the
//! real binary: tools, allowlists, max_turns, retries, errors, timeouts.

use std::time::Duration;

use caxton_testing::*;
use serde_json::json;

async fn node_with(stub: &OpenAiStub, provider_extra: &str) -> TestNode {
    TestNode::start_with(NodeOptions { tables: stub.provider_config("stub", provider_extra), ..Default::default() })
        .await
}

fn stub_agent(name: &str, extra: &str) -> String {
    format!("name = \"{name}\"\nprovider = \"stub\"\nsystem_prompt = \"You are {name}.\"\n{extra}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_loop_asks_another_agent_and_uses_the_answer() {
    let stub = OpenAiStub::start().await;
    stub.script([
        StubReply::tool_call("ask_agent", json!({"agent": "helper", "message": "what is the secret word?"})),
        StubReply::text("The helper says: swordfish"),
    ]);
    let node = node_with(&stub, "").await;
    deploy(&node, "name = \"helper\"\nprovider = \"echo\"\nsystem_prompt = \"Echo.\"\n").await;
    deploy(&node, &stub_agent("boss", "tools = [\"ask_agent\"]")).await;

    let v = ask(&node, "boss", "find the secret").await;
    assert_eq!(v["reply"]["kind"], "response", "{v}");
    assert_eq!(v["reply"]["content"], "The helper says: swordfish");

    let reqs = stub.requests();
    assert_eq!(reqs.len(), 2);
    // The tool was offered with its schema, and its result went back to the model.
    assert_eq!(reqs[0]["tools"][0]["function"]["name"], "ask_agent");
    let tool_msg = last_of_role(&reqs[1], "tool").unwrap();
    assert_eq!(tool_msg["tool_call_id"], "call_ask_agent");
    assert_eq!(tool_msg["content"], "what is the secret word?", "helper (echo) answered with the question");
    let system = &reqs[0]["messages"][0];
    assert_eq!((system["role"].as_str(), system["content"].as_str()), (Some("system"), Some("You are boss.")));

    // The helper's exchange is part of the same conversation.
    let conv = v["message"]["conversation_id"].as_str().unwrap();
    let (_, c) = node.get(&format!("/v1/conversations/{conv}")).await;
    let senders: Vec<&str> = c["messages"].as_array().unwrap().iter().map(|m| m["sender"].as_str().unwrap()).collect();
    assert!(senders.contains(&"boss") && senders.contains(&"helper"), "{senders:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_outside_the_allowlist_is_refused_to_the_model_logged_and_counted() {
    let stub = OpenAiStub::start().await;
    stub.script([StubReply::tool_call("delete_everything", json!({})), StubReply::text("ok, I will not")]);
    let node = node_with(&stub, "").await;
    deploy(&node, &stub_agent("careful", "tools = [\"ask_agent\"]")).await;
    let v = ask(&node, "careful", "clean up").await;
    assert_eq!(v["reply"]["content"], "ok, I will not");
    let tool_msg = last_of_role(&stub.requests()[1], "tool").unwrap();
    assert!(
        tool_msg["content"].as_str().unwrap().contains("tool `delete_everything` is not allowed for this agent"),
        "{tool_msg}"
    );
    let metrics = node.http.get(node.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let denied = [("tool", "delete_everything"), ("outcome", "denied")];
    assert_eq!(metric_value(&metrics, "caxton_tool_calls_total", &denied), Some(1.0), "{metrics}");
    // Two model calls, in the GenAI conventions' names, with their tokens.
    let chat = [("gen_ai_operation_name", "chat"), ("gen_ai_provider_name", "stub")];
    assert_eq!(metric_value(&metrics, "gen_ai_client_operation_duration_seconds_count", &chat), Some(2.0), "{metrics}");
    let input = [("gen_ai_provider_name", "stub"), ("gen_ai_token_type", "input")];
    assert_eq!(metric_value(&metrics, "gen_ai_client_token_usage_count", &input), Some(2.0), "{metrics}");
    let answered = [("agent", "careful"), ("outcome", "ok")];
    assert_eq!(metric_value(&metrics, "caxton_message_processing_duration_seconds_count", &answered), Some(1.0));
    assert_eq!(metric_value(&metrics, "caxton_agent_events_total", &[("event", "deployed")]), Some(1.0));
    let first = [("gen_ai_provider_name", "stub")];
    let ttft = metric_value(&metrics, "gen_ai_client_operation_time_to_first_chunk_seconds_count", &first);
    assert_eq!(ttft, Some(1.0), "one answer, one first token: {metrics}");
    assert!(metric_value(&metrics, "caxton_raft_proposals_applied_total", &[]) > Some(0.0));
    // The node's own metrics listener serves the same registry without keys.
    let listener = reqwest::get(format!("http://127.0.0.1:{}/metrics", node.metrics_port)).await.unwrap();
    assert!(listener.text().await.unwrap().contains("caxton_raft_has_leader 1"));
    assert!(node.log().contains("model called a tool outside the agent's allowlist"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_turns_ends_the_loop_with_an_error_reply() {
    let stub = OpenAiStub::start().await;
    stub.respond_with(|_| StubReply::tool_call("ask_agent", json!({"agent": "nobody", "message": "loop"})));
    let node = node_with(&stub, "").await;
    deploy(&node, &stub_agent("looper", "tools = [\"ask_agent\"]\nmax_turns = 3")).await;
    let v = ask(&node, "looper", "go").await;
    assert_eq!(v["reply"]["kind"], "error");
    assert!(v["reply"]["content"].as_str().unwrap().contains("max_turns (3) reached"), "{v}");
    assert_eq!(stub.requests().len(), 3);
    assert_eq!(v["message"]["status"], "failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_is_retried_then_succeeds() {
    let stub = OpenAiStub::start().await;
    stub.script([
        StubReply::error(500, "upstream hiccup"),
        StubReply::error(503, "still warming"),
        StubReply::text("third time lucky"),
    ]);
    let node = node_with(&stub, "").await;
    deploy(&node, &stub_agent("retrier", "")).await;
    let v = ask(&node, "retrier", "hello").await;
    assert_eq!(v["reply"]["content"], "third time lucky");
    assert_eq!(stub.requests().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_retry_after_is_honoured() {
    let stub = OpenAiStub::start().await;
    stub.script([StubReply::error(429, "slow down").with_header("retry-after", "1"), StubReply::text("patience pays")]);
    let node = node_with(&stub, "").await;
    deploy(&node, &stub_agent("polite", "")).await;
    let v = ask(&node, "polite", "hello").await;
    assert_eq!(v["reply"]["content"], "patience pays");
    let t = stub.request_times();
    assert_eq!(t.len(), 2);
    // The retry waited for Retry-After (1 s), not the 50 ms backoff.
    assert!(t[1] - t[0] >= Duration::from_millis(950), "retried after {:?}", t[1] - t[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_reaches_the_caller_without_retries() {
    let stub = OpenAiStub::start().await;
    stub.script([StubReply::error(400, "model `stub-model` does not support tools")]);
    let node = node_with(&stub, "").await;
    deploy(&node, &stub_agent("rejected", "")).await;
    let v = ask(&node, "rejected", "hello").await;
    assert_eq!(v["reply"]["kind"], "error");
    let content = v["reply"]["content"].as_str().unwrap();
    assert!(content.contains("HTTP 400") && content.contains("does not support tools"), "{content}");
    assert_eq!(stub.requests().len(), 1, "4xx is not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_timeout_bounds_a_slow_provider() {
    let stub = OpenAiStub::start().await;
    stub.respond_with(|_| StubReply::text("too late").after(Duration::from_secs(10)));
    let node = node_with(&stub, "timeout_ms = 60000").await;
    deploy(&node, &stub_agent("impatient", "timeout = \"1s\"")).await;
    let started = std::time::Instant::now();
    let v = ask(&node, "impatient", "hello").await;
    assert_eq!(v["reply"]["kind"], "error");
    assert!(v["reply"]["content"].as_str().unwrap().contains("no answer within the agent's timeout of 1s"), "{v}");
    assert!(started.elapsed() < Duration::from_secs(8));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversation_history_is_fed_back_to_the_model() {
    let stub = OpenAiStub::start().await;
    stub.script([StubReply::text("Nice to meet you, Ada."), StubReply::text("Your name is Ada.")]);
    let node = node_with(&stub, "").await;
    deploy(&node, &stub_agent("memo", "")).await;
    let first = ask(&node, "memo", "My name is Ada.").await;
    let conv = first["message"]["conversation_id"].as_str().unwrap().to_owned();
    let body = json!({"to": "memo", "content": "What is my name?", "conversation_id": conv});
    let (s, second) = node.send(reqwest::Method::POST, "/v1/messages", "application/json", body.to_string()).await;
    assert_eq!(s, 200);
    assert_eq!(second["reply"]["content"], "Your name is Ada.");
    let msgs = stub.requests()[1]["messages"].as_array().unwrap().clone();
    let roles: Vec<&str> = msgs.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"]);
    assert_eq!(msgs[1]["content"], "My name is Ada.");
    assert_eq!(msgs[2]["content"], "Nice to meet you, Ada.");

    let out = node.cli(&["conversation", "show", &conv]);
    let text = stdout(&out);
    assert!(text.contains("completed") && text.contains("[response] memo -> user: Your name is Ada."), "{text}");
}

/// The OpenAI-compatible door's sampling parameters reach the agent's
/// provider on every model call of its turn; without them the provider's
/// own choices apply; `usage` and `finish_reason` come back from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_door_parameters_reach_an_openai_compatible_provider() {
    let stub = OpenAiStub::start().await;
    stub.script([
        StubReply::tool_call("ask_agent", json!({"agent": "helper", "message": "hi"})),
        StubReply::text("cut short").with_usage(30, 7),
        StubReply::text("plain"),
    ]);
    let node = node_with(&stub, "").await;
    deploy(&node, "name = \"helper\"\nprovider = \"echo\"\nsystem_prompt = \"Echo.\"\n").await;
    deploy(&node, &stub_agent("boss", "tools = [\"ask_agent\"]")).await;
    let body = json!({
        "model": "boss", "messages": [{"role": "user", "content": "go"}],
        "max_tokens": 7, "temperature": 0.5, "top_p": 0.25, "stop": ["END", "STOP"], "seed": 42
    });
    let (s, done) = node.post_json("/v1/chat/completions", body).await;
    assert_eq!(s, 200, "{done}");
    assert_eq!(done["choices"][0]["message"]["content"], "cut short");
    assert_eq!(done["usage"]["completion_tokens"], 7, "the turn's two calls: {done}");
    assert_eq!(done["usage"]["prompt_tokens"], 30, "{done}");
    for req in &stub.requests()[..2] {
        assert_eq!(req["max_tokens"], 7, "{req}");
        assert_eq!(req["temperature"], 0.5, "{req}");
        assert_eq!(req["top_p"], 0.25, "{req}");
        assert_eq!(req["stop"], json!(["END", "STOP"]), "{req}");
        assert_eq!(req["seed"], 42, "{req}");
    }
    let (s, plain) = node
        .post_json("/v1/chat/completions", json!({"model": "boss", "messages": [{"role": "user", "content": "again"}]}))
        .await;
    assert_eq!(s, 200, "{plain}");
    let last = stub.requests().pop().unwrap();
    for absent in ["max_tokens", "temperature", "top_p", "stop", "seed"] {
        assert!(last.get(absent).is_none(), "unset: the provider's own choice ({absent}): {last}");
    }
    assert_eq!(plain["choices"][0]["finish_reason"], "stop");
}
