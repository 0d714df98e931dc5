//! The web console in a real browser (chromium over WebDriver) against a
//! node with API keys: sign-in refused and accepted, an agent deployed
//! through the editor with its error shown at the right line, a revision
//! diff, a tool called from its generated form, memory searched and an
//! entity's neighbourhood followed, a key created, and a `read` key that
//! is shown no deploy button. Each page is checked for accessibility and
//! for errors in the browser's console, and photographed in both themes.
//! (The cluster pages, chat, rollouts, contract-net: tests/cluster/console.rs.)

use caxton_testing::*;
use serde_json::json;

const BROKEN: &str =
    "name = \"greeter\"\nprovider = \"echo\"\nsystem_prompt = \"Greets.\"\n[memory]\nscope = \"everywhere\"\n";
const FIXED: &str =
    "name = \"greeter\"\nprovider = \"echo\"\nsystem_prompt = \"Greets.\"\n[memory]\nscope = \"global\"\n";

async fn seed_memory(node: &TestNode) {
    let admin = keyed_client(TEST_ADMIN_KEY);
    for (name, kind, obs) in [
        ("ada", "person", vec!["Ada Lovelace wrote the first computer program", "Ada worked with Babbage"]),
        ("babbage", "person", vec!["Charles Babbage designed the Analytical Engine"]),
        ("engine", "machine", vec!["The Analytical Engine was a mechanical general-purpose computer"]),
    ] {
        let r = admin
            .post(node.url("/v1/memory/entities"))
            .json(&json!({"name": name, "entity_type": kind, "scope": "global", "observations": obs}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    }
    for (from, to, rel) in [("ada", "babbage", "worked_with"), ("babbage", "engine", "designed")] {
        let r = admin
            .post(node.url("/v1/memory/relations"))
            .json(&json!({"from": from, "to": to, "relation_type": rel, "scope": "global"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_signs_in_deploys_calls_searches_and_hides_what_a_key_cannot_do() {
    let node = TestNode::start_with(NodeOptions { admin_key: Some(TEST_ADMIN_KEY.into()), ..Default::default() }).await;
    let out = node
        .cli_as(Some(TEST_ADMIN_KEY), &["mcp", "deploy", &repo_path("examples/mcp/json_query").display().to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    seed_memory(&node).await;
    let mut browser = Browser::start().await;
    let ui = node.url("/ui");

    // The log check sees a failed request (so a clean log means something).
    browser.goto(&ui).await;
    browser.find("#api-key").await;
    browser.eval("fetch('/v1/no-such-route')", json!([])).await;
    let failed = browser.wait_for_log("404").await;
    assert_eq!(failed.level, "SEVERE", "{failed:?}");

    // Signed out: the sign-in form, and nothing refused yet.
    browser.goto(&ui).await;
    browser.find("#api-key").await;
    browser.check_page("sign-in").await;

    // A wrong key is refused, and said so.
    browser.expect_in_log("401");
    browser.fill("#api-key", "cxk_0123456789ab_not-the-secret").await;
    browser.click_on("form button[type=submit]").await;
    let refusal = browser.text_of(".problem").await;
    assert!(refusal.contains("401"), "{refusal}");
    assert_eq!(browser.eval("return sessionStorage.getItem('caxton.key')", json!([])).await, json!(null));
    browser.assert_clean_log("refused sign-in").await;
    browser.forget_expected();

    // The right key: kept in this tab's sessionStorage, never in a cookie or the URL.
    browser.fill("#api-key", TEST_ADMIN_KEY).await;
    browser.click_on("form button[type=submit]").await;
    browser.wait_text("healthy").await;
    assert_eq!(browser.eval("return document.cookie", json!([])).await, json!(""));
    assert!(!browser.eval("return location.href", json!([])).await.as_str().unwrap().contains(TEST_ADMIN_KEY));
    assert_eq!(browser.eval("return sessionStorage.getItem('caxton.key')", json!([])).await, json!(TEST_ADMIN_KEY));
    browser
        .assert_focus_order(&[
            "Skip to content",
            "Caxton",
            "Cluster",
            "Agents",
            "Chat",
            "Conversations",
            "Memory",
            "Tools",
            "Keys",
        ])
        .await;
    browser.check_page("cluster-single").await;

    // Deploy with an error: shown at its line and column, deploy disabled.
    browser.goto(&format!("{ui}#/agents/+new")).await;
    browser.fill("#agent-toml", BROKEN).await;
    let error = browser.find(".toml-error").await;
    let (line, column) = (browser.attribute(&error, "data-line").await, browser.attribute(&error, "data-column").await);
    assert_eq!((line.as_deref(), column.as_deref()), (Some("5"), Some("9")), "the error is at `everywhere`");
    let listed = browser.text(&error).await;
    assert!(listed.contains("line 5, column 9") && listed.contains("memory.scope"), "{listed}");
    assert!(browser.text_of(".gutter .err").await.contains('5'));
    assert_eq!(browser.eval("return document.getElementById('deploy-submit').disabled", json!([])).await, json!(true));
    // Choosing the error puts the caret on it.
    browser.click_on(".toml-error button").await;
    let caret = browser.eval("return document.getElementById('agent-toml').selectionStart", json!([])).await;
    assert_eq!(caret.as_u64().unwrap() as usize, BROKEN.find("\"everywhere\"").unwrap());
    browser.check_page("agent-editor").await;

    // Fixed: valid, deployed, shown.
    browser.fill("#agent-toml", FIXED).await;
    browser.wait_text("Valid: agent greeter").await;
    browser.click_on("#deploy-submit").await;
    browser.wait_text("revision 1").await;
    assert_eq!(node.get("/v1/agents/greeter").await.0, 200);

    // Edit: a second revision, and the diff between the two.
    browser.goto(&format!("{ui}#/agents/greeter/edit")).await;
    browser.fill("#agent-toml", &FIXED.replace("Greets.", "Greets warmly.")).await;
    browser.wait_text("Valid: agent greeter").await;
    browser.click_on("#deploy-submit").await;
    browser.wait_text("revision 2").await;
    browser.wait_for("the diff", "return document.querySelector('#revision-diff .add')").await;
    let diff = browser.text_of("#revision-diff").await;
    assert!(
        diff.contains("- system_prompt = \"Greets.\"") && diff.contains("+ system_prompt = \"Greets warmly.\""),
        "{diff}"
    );
    browser.check_page("agent").await;
    // Roll back to revision 1, confirmed in a dialog: revision 3 serves it.
    browser.click_on("#agent-revisions button").await;
    browser.click_on("dialog button.danger").await;
    browser.wait_text("revision 3").await;
    let (_, served) = node.get("/v1/agents/greeter").await;
    assert_eq!((served["revision"].as_u64(), served["toml"].as_str()), (Some(3), Some(FIXED)));
    // A canary started from the editor, then promoted from the agent's page.
    browser.goto(&format!("{ui}#/agents/greeter/edit")).await;
    browser.fill("#agent-toml", &FIXED.replace("Greets.", "Greets, carefully.")).await;
    browser.wait_text("Valid: agent greeter").await;
    browser.eval("const s = document.getElementById('deploy-strategy'); s.value = 'canary'; s.dispatchEvent(new Event('change'))", json!([])).await;
    browser.click_on("#deploy-submit").await;
    browser
        .wait_for(
            "the canary",
            "const e = document.getElementById('rollout-state'); return e && e.textContent === 'progressing'",
        )
        .await;
    assert_eq!(
        node.get("/v1/agents/greeter").await.1["revision"],
        3,
        "the stable revision serves while the canary runs"
    );
    browser.assert_accessible("rollout").await;
    browser.click_button("#rollout", "Promote").await;
    browser
        .wait_for(
            "the promotion",
            "const e = document.getElementById('rollout-state'); return e && e.textContent === 'promoted'",
        )
        .await;
    assert_eq!(node.get("/v1/agents/greeter").await.1["revision"], 4);
    browser.assert_clean_log("rollout").await;
    browser.goto(&format!("{ui}#/agents")).await;
    browser.wait_text("greeter").await;
    browser.fill("#agent-search", "nobody").await;
    browser.wait_text("0 of 1 loaded agents").await;
    browser.fill("#agent-search", "greet").await;
    browser.wait_text("1 of 1 loaded agents").await;
    browser.check_page("agents").await;

    // A tool, called from the form its schema made.
    browser.goto(&format!("{ui}#/tools")).await;
    browser.click_on("details.tool summary").await;
    browser.fill("#json_query-json_query-json", r#"{"a": [1, 2, 3]}"#).await;
    browser.fill("#json_query-json_query-path", "a[1]").await;
    browser.click_on("#json_query-json_query-form button[type=submit]").await;
    browser.wait_for("the tool's answer", "return document.querySelector('#json_query-json_query-result pre')").await;
    let raw = browser
        .eval("return document.querySelector('#json_query-json_query-result details pre').textContent", json!([]))
        .await;
    let raw: serde_json::Value = serde_json::from_str(raw.as_str().unwrap()).unwrap();
    assert_eq!(raw["structuredContent"]["matches"], json!([2]), "{raw}");
    browser.check_page("tools").await;

    // Memory: search, an entity, and a walk through its neighbourhood.
    browser.goto(&format!("{ui}#/memory")).await;
    browser.fill("#memory-query", "who wrote the first program").await;
    browser.click_on("#memory-search").await;
    browser.wait_for("search results", "return document.querySelector('#memory-results a')").await;
    assert_eq!(browser.text_of("#memory-results tbody tr td a").await, "ada", "the best match comes first");
    browser.check_page("memory-search").await;
    browser.click_on("#memory-results tbody tr td a").await;
    browser.wait_text("Ada worked with Babbage").await;
    browser.wait_for("the graph", "return document.querySelector('#neighbourhood svg a')").await;
    assert!(browser.text_of("#neighbourhood").await.contains("babbage"));
    browser.check_page("memory-entity").await;
    browser.click_on("#neighbourhood svg a").await;
    browser.wait_text("Analytical Engine").await;

    // Keys: a read-only key, its token shown once.
    browser.goto(&format!("{ui}#/keys")).await;
    browser.fill("#key-name", "reader").await;
    browser.click_on("#scope-read").await;
    browser.click_on("#key-create").await;
    let token =
        browser.wait_for("the new token", "const t = document.getElementById('new-token'); return t && t.value").await;
    let token = token.as_str().unwrap().to_owned();
    assert!(token.starts_with("cxk_"), "{token}");
    browser.check_page("keys").await;
    browser.click_on("dialog button.secondary").await;
    // Revoking asks first; a revoked key stops working at once.
    let doomed = node.create_key(json!({"name": "doomed", "scopes": ["read"]})).await;
    browser.goto(&format!("{ui}#/cluster")).await;
    browser.goto(&format!("{ui}#/keys")).await;
    browser.wait_text("Revoke doomed").await;
    browser.click_button("#key-list", "Revoke doomed").await;
    browser.click_on("dialog button.danger").await;
    browser
        .wait_for("the key revoked", "return !document.querySelector('#key-list').innerText.includes('Revoke doomed')")
        .await;
    let r = keyed_client(&doomed).get(node.url("/v1/agents")).send().await.unwrap();
    assert_eq!(r.status(), 401);

    // Signed in with it: no deploy button, no Keys, and the editor says why.
    browser.click_on("#who button").await;
    browser.fill("#api-key", &token).await;
    browser.click_on("form button[type=submit]").await;
    browser.wait_text("key reader").await;
    let nav = browser.text_of("#nav").await;
    assert!(
        nav.contains("Agents") && !nav.contains("Keys") && !nav.contains("Chat") && !nav.contains("Memory"),
        "{nav}"
    );
    browser.goto(&format!("{ui}#/agents")).await;
    browser.wait_text("greeter").await;
    assert!(!browser.exists("#deploy-agent").await, "a read key is offered the deploy button");
    browser.goto(&format!("{ui}#/agents/greeter")).await;
    browser.wait_text("Definition").await;
    assert!(!browser.body_text().await.contains("Edit"), "a read key is offered the editor");
    browser.goto(&format!("{ui}#/agents/+new")).await;
    browser.wait_text("deploy").await;
    assert!(browser.text_of(".problem").await.contains("deploy"));
    assert!(!browser.exists("#agent-toml").await);
    browser.assert_accessible("read-only agents").await;
    browser.assert_clean_log("read-only pages").await;

    // A phone's width: nothing wider than the screen.
    browser.set_window(390, 844).await;
    browser.goto(&format!("{ui}#/agents")).await;
    browser.wait_text("greeter").await;
    let overflow = browser.eval("return document.documentElement.scrollWidth - window.innerWidth", json!([])).await;
    assert!(overflow.as_i64().unwrap() <= 0, "the page is {overflow} px wider than a phone");
    browser.screenshot(&screenshot_dir().join("agents-phone.png")).await;
    browser.assert_clean_log("phone").await;

    // A key that may only talk: the chat works without listing agents.
    let talker = node.create_key(json!({"name": "talker", "scopes": ["invoke"]})).await;
    browser.click_on("#who button").await;
    browser.fill("#api-key", &talker).await;
    browser.click_on("form button[type=submit]").await;
    browser.wait_text("key talker").await;
    browser.goto(&format!("{ui}#/chat/greeter")).await;
    browser.fill("#chat-input", "hello there").await;
    browser.click_on("#chat-send").await;
    browser.wait_for("the echo", "const b = document.querySelector('.bubble.agent'); return b && b.dataset.done").await;
    assert_eq!(browser.text_of(".bubble.agent").await, "hello there");
    browser.assert_accessible("chat with an invoke key").await;
    browser.assert_clean_log("chat with an invoke key").await;
}

/// The console's files: typed, policed by a CSP without inline code, sent
/// with a validator, within the transfer budget, on every method the
/// route declares (and HEAD) and refused on the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_served_from_the_binary_with_a_strict_policy() {
    let node = TestNode::start_with(NodeOptions { admin_key: Some(TEST_ADMIN_KEY.into()), ..Default::default() }).await;
    let http = reqwest::Client::new();
    let page = http.get(node.url("/ui")).send().await.unwrap();
    assert_eq!(page.status(), 200, "the console needs no key to load");
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = page.text().await.unwrap();
    let mut total = html.len();
    for file in [
        "style.css",
        "app.js",
        "api.js",
        "dom.js",
        "svg.js",
        "cluster.js",
        "agents.js",
        "editor.js",
        "chat.js",
        "conversations.js",
        "memory.js",
        "tools.js",
        "keys.js",
        "icon.svg",
    ] {
        let r = http.get(node.url(&format!("/ui/{file}"))).send().await.unwrap();
        assert_eq!(r.status(), 200, "{file}");
        let etag = r.headers()["etag"].clone();
        let kind = r.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(
            (file.ends_with(".js") && kind.starts_with("text/javascript"))
                || (file.ends_with(".css") && kind.starts_with("text/css"))
                || (file.ends_with(".svg") && kind.starts_with("image/svg+xml")),
            "{file}: {kind}"
        );
        total += r.bytes().await.unwrap().len();
        let again = http.get(node.url(&format!("/ui/{file}"))).header("if-none-match", etag).send().await.unwrap();
        assert_eq!(again.status(), 304, "{file} revalidates");
        assert_eq!(http.head(node.url(&format!("/ui/{file}"))).send().await.unwrap().status(), 200);
    }
    assert!(total < 300 * 1024, "the console is {total} bytes");
    let missing = http.get(node.url("/ui/../v1/keys")).send().await.unwrap();
    assert_ne!(missing.status(), 200);
    let r = http.get(node.url("/ui/nothing.js")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = http.request(m, node.url("/ui/app.js")).send().await.unwrap();
        assert_eq!(r.status(), 405, "{method} /ui/app.js");
    }
    // The page's own origin may call the API with a key; another may not.
    let check_from = |origin: String, body: &'static str| {
        keyed_client(TEST_ADMIN_KEY)
            .post(node.url("/v1/agent-checks"))
            .header("origin", origin)
            .header("content-type", "application/toml")
            .body(body)
            .send()
    };
    let same = check_from(format!("http://127.0.0.1:{}", node.api_port), BROKEN).await.unwrap();
    assert_eq!(same.status(), 200);
    let verdict: serde_json::Value = same.json().await.unwrap();
    assert_eq!(verdict["valid"], false);
    assert_eq!(verdict["errors"][0]["line"], 5);
    let other = check_from("http://evil.example".into(), FIXED).await.unwrap();
    assert_eq!(other.status(), 403);
    // Who am I: any key may ask, and learns only its own scopes.
    let reader = node.create_key(json!({"name": "reader", "scopes": ["invoke"]})).await;
    let who: serde_json::Value =
        keyed_client(&reader).get(node.url("/v1/whoami")).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        (who["key"].as_str(), who["scopes"].clone(), who["mode"].as_str()),
        (Some("reader"), json!(["invoke"]), Some("keys"))
    );
    assert_eq!(http.get(node.url("/v1/whoami")).send().await.unwrap().status(), 401);
    let health: serde_json::Value = http.get(node.url("/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["auth"], "keys");
}
