//! `apply` over a real SQLite replica, without Raft: what each command
//! changes and publishes, and that every replica computes the same state.

use rusqlite::Connection;

use super::command::Command;
use super::envelope::{ApplyCtx, Response};
use super::events::StateEvent;
use super::golden_tests::{commands, message};
use super::{
    AcceptMessages, AgentSource, DeleteEntity, DeployAgent, DeployMcpServer, MessageKind, MessageStatus,
    NewObservation, Place, RecordReplies, Relate, RemoveAgent, StoreEntity, ToolDeployer, Vector,
};
use crate::config::{AgentName, AgentSpec};

fn replica() -> Connection {
    let conn = Connection::open_in_memory().unwrap();
    super::schema::migrate(&conn).unwrap();
    conn
}

/// Applies one command in its own transaction, as a one-entry batch.
fn apply(conn: &mut Connection, index: u64, command: impl Into<Command>) -> (Response, Vec<StateEvent>) {
    let tx = conn.transaction().unwrap();
    let mut stage = Vec::new();
    let response = command.into().apply(&mut ApplyCtx { tx: &tx, index, stage: &mut stage }).unwrap();
    tx.commit().unwrap();
    (response, stage)
}

fn deploy(toml: &str) -> DeployAgent {
    DeployAgent {
        spec: AgentSpec::from_toml(toml, "t.toml").unwrap(),
        toml: toml.into(),
        source: AgentSource::Api,
        at_ms: 1,
        owner: 1,
        must_exist: false,
        deployed_by: None,
    }
}

const GOLDEN: &str = "name = \"Golden\"\nsystem_prompt = \"x\"\n";

#[test]
fn each_command_changes_and_publishes_what_it_says() {
    let mut db = replica();
    let name = AgentName::parse("Golden").unwrap();

    let (r, events) = apply(&mut db, 1, deploy(GOLDEN));
    assert_eq!(r, Response::Deployed { revision: 1, created: true });
    assert_eq!(events, [StateEvent::AgentDeployed { name: name.clone(), revision: 1, owner: 1 }]);
    let (r, events) = apply(&mut db, 2, deploy(GOLDEN));
    assert_eq!((r, events), (Response::Unchanged { revision: 1 }, vec![]), "the same text makes no revision");

    let request = message("m-1", MessageKind::Request, MessageStatus::Accepted);
    let (r, events) = apply(&mut db, 3, AcceptMessages { messages: vec![request] });
    assert!(matches!(r, Response::Accepted(ref o) if o.len() == 1), "{r:?}");
    assert!(events.contains(&StateEvent::MessageAccepted { id: "m-1".into(), receiver: name.clone() }), "{events:?}");

    let reply = super::Message {
        reply_to: Some("m-1".into()),
        ..message("m-1-reply", MessageKind::Response, MessageStatus::Final)
    };
    let (r, events) = apply(&mut db, 4, RecordReplies { replies: vec![reply.clone()] });
    assert_eq!(r, Response::Recorded(vec![true]));
    assert!(events.contains(&StateEvent::ReplyRecorded { request_id: "m-1".into(), reply_id: "m-1-reply".into() }));
    let (r, _) = apply(&mut db, 5, RecordReplies { replies: vec![reply] });
    assert_eq!(r, Response::Recorded(vec![false]), "a request is answered once");

    let place = Place::workspace("team");
    let observation = NewObservation { text: "sunny".into(), embedding: Vector(vec![0.5; 4]) };
    let store = StoreEntity {
        place: place.clone(),
        name: "Lisbon".into(),
        entity_type: "city".into(),
        observations: vec![observation],
        at_ms: 6,
    };
    let (r, events) = apply(&mut db, 6, store);
    assert_eq!(r, Response::Stored { created: true, observations: 1 });
    assert!(matches!(events.as_slice(), [StateEvent::MemoryAdded { observation_ids }] if observation_ids.len() == 1));
    let relate = Relate {
        place: place.clone(),
        from: "Lisbon".into(),
        to: "Portugal".into(),
        relation_type: "in".into(),
        at_ms: 7,
    };
    assert_eq!(apply(&mut db, 7, relate).0, Response::MissingEntity("Portugal".into()));
    let (r, events) = apply(&mut db, 8, DeleteEntity { place, name: "Lisbon".into() });
    assert_eq!(r, Response::Deleted(true));
    assert!(matches!(events.as_slice(), [StateEvent::MemoryRemoved { .. }]));

    let broken = DeployMcpServer {
        name: "broken".into(),
        manifest: String::new(),
        module: "not base64!".into(),
        tools: "[]".into(),
        at_ms: 9,
        by: ToolDeployer::operator(),
    };
    assert!(matches!(apply(&mut db, 9, broken).0, Response::Rejected(_)), "refused alike everywhere, not stored empty");
    let stored: i64 = db.query_row("SELECT COUNT(*) FROM mcp_servers", [], |r| r.get(0)).unwrap();
    assert_eq!(stored, 0);

    let (r, events) = apply(&mut db, 10, RemoveAgent { name: name.clone(), only_if_source: None, at_ms: 10 });
    assert_eq!(r, Response::Removed { revision: 1 });
    assert_eq!(events, [StateEvent::AgentRemoved { name }]);
}

/// Every row of every table, in a stable order.
fn dump(conn: &Connection) -> Vec<String> {
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut out = Vec::new();
    for t in tables {
        let mut s = conn.prepare(&format!("SELECT * FROM {t} ORDER BY 1, 2")).unwrap();
        let n = s.column_count();
        let rows = s
            .query_map([], |r| (0..n).map(|i| r.get_ref(i).map(|v| format!("{v:?}"))).collect::<Result<Vec<_>, _>>())
            .unwrap();
        for row in rows {
            out.push(format!("{t}: {}", row.unwrap().join(" | ")));
        }
    }
    out
}

#[test]
fn every_replica_applying_the_same_log_holds_the_same_state() {
    let run = || {
        let mut db = replica();
        let responses: Vec<Response> =
            commands().into_iter().enumerate().map(|(i, (_, c))| apply(&mut db, i as u64 + 1, c).0).collect();
        (responses, dump(&db))
    };
    let (first, second) = (run(), run());
    assert_eq!(first, second);
    assert!(first.1.len() > 5, "the log changed something: {:?}", first.1);
}

#[test]
fn a_rollout_splits_by_conversation_counts_outcomes_and_promotes_or_rolls_back() {
    use super::{RolloutAction, ServedOutcome, StartRollout, UpdateRollout};
    let mut db = replica();
    let name = AgentName::parse("Golden").unwrap();
    apply(&mut db, 1, deploy(GOLDEN));
    let canary = "name = \"Golden\"\nsystem_prompt = \"y\"\n[rollout]\nsteps = [{ weight = 50, pause = \"1s\" }]\n[rollout.analysis]\nmin_requests = 1\nfailure_limit = 2\n";
    let (r, events) = apply(&mut db, 2, StartRollout { deploy: deploy(canary) });
    assert_eq!(r, Response::Deployed { revision: 2, created: false });
    assert!(!events.iter().any(|e| matches!(e, StateEvent::AgentDeployed { .. })), "the stable revision keeps serving");
    let serving: u64 = db.query_row("SELECT revision FROM agents", [], |r| r.get(0)).unwrap();
    assert_eq!(serving, 1);

    // Conversations below the weight's bucket go to the candidate.
    let mut by_revision = std::collections::BTreeMap::new();
    for i in 0..40 {
        let mut m = message(&format!("m-{i}"), MessageKind::Request, MessageStatus::Accepted);
        m.conversation_id = format!("conv-{i}");
        let expected = if super::bucket(&m.conversation_id) < 50 { 2 } else { 1 };
        apply(&mut db, 10 + i, AcceptMessages { messages: vec![m] });
        let body: String =
            db.query_row("SELECT body FROM messages WHERE id = ?1", [format!("m-{i}")], |r| r.get(0)).unwrap();
        let stored: super::Message = serde_json::from_str(&body).unwrap();
        assert_eq!(stored.revision, Some(expected));
        *by_revision.entry(expected).or_insert(0) += 1;
    }
    assert_eq!(by_revision.len(), 2, "both revisions serve: {by_revision:?}");

    // A reply's outcome counts for the revision that served it.
    let reply = super::Message {
        reply_to: Some("m-0".into()),
        revision: Some(2),
        served: Some(super::Served { outcome: ServedOutcome::Error, took_ms: 30 }),
        sender: "Golden".into(),
        ..message("m-0-reply", MessageKind::Error, MessageStatus::Final)
    };
    apply(&mut db, 60, RecordReplies { replies: vec![reply] });
    let counted: i64 =
        db.query_row("SELECT COUNT(*) FROM revision_outcomes WHERE revision = 2", [], |r| r.get(0)).unwrap();
    assert_eq!(counted, 1);

    let update = |step: Option<u32>, action: RolloutAction| UpdateRollout {
        agent: name.clone(),
        candidate: 2,
        expect_step: step,
        action,
        at_ms: 70,
    };
    let failed = super::Check {
        at_ms: 70,
        passed: false,
        stable: Default::default(),
        candidate: Default::default(),
        note: "error rate".into(),
    };
    // A proposal for another step than the current one does nothing.
    let (r, _) = apply(&mut db, 61, update(Some(3), RolloutAction::Check(failed.clone())));
    assert!(matches!(r, Response::Rollout { applied: false, .. }), "{r:?}");
    apply(&mut db, 62, update(Some(0), RolloutAction::Check(failed.clone())));
    let (r, _) = apply(&mut db, 63, update(Some(0), RolloutAction::Check(failed)));
    let Response::Rollout { record: Some(record), applied: true } = r else { panic!("{r:?}") };
    assert_eq!(record.state, super::RolloutState::RolledBack, "two failed checks reach the limit");
    assert!(record.reason.unwrap().contains("error rate"));
    let outcomes: i64 = db.query_row("SELECT COUNT(*) FROM revision_outcomes", [], |r| r.get(0)).unwrap();
    assert_eq!(outcomes, 0, "figures are dropped with the rollout");

    // A new candidate, advanced past its only step, is promoted.
    let again = canary.replace("\"y\"", "\"z\"");
    assert_eq!(
        apply(&mut db, 70, StartRollout { deploy: deploy(&again) }).0,
        Response::Deployed { revision: 3, created: false }
    );
    let update3 = UpdateRollout { candidate: 3, ..update(Some(0), RolloutAction::Advance) };
    let (_, events) = apply(&mut db, 71, update3);
    assert!(events.contains(&StateEvent::AgentDeployed { name: name.clone(), revision: 3, owner: 1 }), "{events:?}");
    let toml: String = db.query_row("SELECT toml FROM agents", [], |r| r.get(0)).unwrap();
    assert_eq!(toml, again);
}

#[test]
fn a_tool_server_is_replaced_or_removed_only_by_its_deployer_or_an_admin() {
    let mut db = replica();
    let server = |by: ToolDeployer, at_ms: i64| DeployMcpServer {
        name: "http_client".into(),
        manifest: "name = \"http_client\"\n".into(),
        module: "AGFzbQEAAAA=".into(),
        tools: "[]".into(),
        at_ms,
        by,
    };
    let key = |name: &str, admin: bool| ToolDeployer { key: Some(name.into()), admin };
    assert_eq!(apply(&mut db, 1, server(key("team-a", false), 1)).0, Response::Done);
    let owner: Option<String> =
        db.query_row("SELECT deployed_by FROM mcp_servers WHERE name = 'http_client'", [], |r| r.get(0)).unwrap();
    assert_eq!(owner.as_deref(), Some("team-a"));
    // Another deploy key can neither take the name nor remove it.
    match apply(&mut db, 2, server(key("team-b", false), 2)).0 {
        Response::NotOwner(why) => assert!(why.contains("`team-a`") && why.contains("admin"), "{why}"),
        other => panic!("{other:?}"),
    }
    let remove = |by| super::RemoveMcpServer { name: "http_client".into(), by };
    assert!(matches!(apply(&mut db, 3, remove(key("team-b", false))).0, Response::NotOwner(_)));
    let at: i64 = db.query_row("SELECT deployed_at FROM mcp_servers", [], |r| r.get(0)).unwrap();
    assert_eq!(at, 1, "the first deployer's server is untouched");
    // Its deployer may replace it; an admin may take it over, and remove it.
    assert_eq!(apply(&mut db, 4, server(key("team-a", false), 4)).0, Response::Done);
    assert_eq!(apply(&mut db, 5, server(key("ops", true), 5)).0, Response::Done);
    assert!(matches!(apply(&mut db, 6, remove(key("team-a", false))).0, Response::NotOwner(_)), "now the admin's");
    assert_eq!(apply(&mut db, 7, remove(key("ops", true))).0, Response::Deleted(true));
}

#[test]
fn a_request_is_dead_lettered_once_its_attempts_run_out() {
    let mut db = replica();
    apply(&mut db, 1, deploy("name = \"worker\"\nsystem_prompt = \"x\"\n"));
    let request =
        super::Message { receiver: "worker".into(), ..message("m-1", MessageKind::Request, MessageStatus::Accepted) };
    apply(&mut db, 2, AcceptMessages { messages: vec![request] });
    let attempt = |at_ms| super::RecordAttempt { id: "m-1".into(), max_attempts: 3, at_ms };
    // The first delivery is not recorded: retries 2 and 3 run, the next does not.
    assert_eq!(apply(&mut db, 3, attempt(3)).0, Response::Attempt(super::Attempt::Run(2)));
    assert_eq!(apply(&mut db, 4, attempt(4)).0, Response::Attempt(super::Attempt::Run(3)));
    let (r, events) = apply(&mut db, 5, attempt(5));
    assert_eq!(r, Response::Attempt(super::Attempt::DeadLettered));
    assert!(events.iter().any(|e| matches!(e, StateEvent::ReplyRecorded { request_id, .. } if request_id == "m-1")));
    let (status, body): (String, String) =
        db.query_row("SELECT status, body FROM messages WHERE id = 'm-1'", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!(status, "dead_lettered");
    let stored: super::Message = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (stored.status, stored.attempts, stored.reply_id.as_deref()),
        (MessageStatus::DeadLettered, 3, Some("m-1-reply"))
    );
    let (kind, content): (String, String) = db
        .query_row("SELECT kind, body FROM messages WHERE id = 'm-1-reply'", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    assert_eq!(kind, "Error");
    assert!(content.contains("dead-lettered") && content.contains("max_message_attempts"), "{content}");
    // Over: no further attempt, and no second reply.
    assert_eq!(apply(&mut db, 6, attempt(6)).0, Response::Attempt(super::Attempt::Closed));
}

#[test]
fn a_delivered_notification_is_processed_once_and_never_answered() {
    let mut db = replica();
    apply(&mut db, 1, deploy(GOLDEN));
    let undelivered = message("n-0", MessageKind::Notification, MessageStatus::Accepted);
    let delivered =
        super::Message { deliver: true, ..message("n-1", MessageKind::Notification, MessageStatus::Accepted) };
    let (_, events) = apply(&mut db, 2, AcceptMessages { messages: vec![undelivered, delivered] });
    let accepted: Vec<_> = events.iter().filter(|e| matches!(e, StateEvent::MessageAccepted { .. })).collect();
    assert_eq!(accepted.len(), 1, "only the delivered one is handed to its owner: {events:?}");
    let status = |db: &Connection, id: &str| -> String {
        db.query_row("SELECT status FROM messages WHERE id = ?1", [id], |r| r.get(0)).unwrap()
    };
    assert_eq!((status(&db, "n-0"), status(&db, "n-1")), ("final".into(), "accepted".into()));

    let done = super::Message {
        reply_to: Some("n-1".into()),
        ..message("n-1-reply", MessageKind::Error, MessageStatus::Final)
    };
    let (r, events) = apply(&mut db, 3, RecordReplies { replies: vec![done.clone()] });
    assert_eq!(r, Response::Recorded(vec![true]));
    assert!(events.contains(&StateEvent::NotificationProcessed { id: "n-1".into(), failed: true }), "{events:?}");
    assert_eq!(status(&db, "n-1"), "processed");
    let replies: i64 = db.query_row("SELECT COUNT(*) FROM messages WHERE id = 'n-1-reply'", [], |r| r.get(0)).unwrap();
    assert_eq!(replies, 0, "a notification is never answered");
    let (r, _) = apply(&mut db, 4, RecordReplies { replies: vec![done] });
    assert_eq!(r, Response::Recorded(vec![false]), "processed once");
}

#[test]
fn a_publication_fans_out_once_per_matching_subscription() {
    use super::{Publication, Publish, Published, Subscribe, Unsubscribe};
    let mut db = replica();
    apply(
        &mut db,
        1,
        deploy("name = \"Shipping\"\nsystem_prompt = \"x\"\nsubscriptions = [\"orders.*\", \"orders.>\"]\n"),
    );
    apply(&mut db, 2, deploy("name = \"Audit\"\nsystem_prompt = \"x\"\n"));
    let subscribe =
        Subscribe { id: "s-1".into(), agent: "audit".into(), pattern: "orders.>".into(), by: "ops".into(), at_ms: 3 };
    assert_eq!(apply(&mut db, 3, subscribe).0, Response::Done);
    let ghost = Subscribe { id: "s-2".into(), agent: "ghost".into(), pattern: "x".into(), by: "ops".into(), at_ms: 3 };
    assert_eq!(apply(&mut db, 4, ghost).0, Response::NotFound);

    let publication = |id: &str, topic: &str| Publication {
        id: id.into(),
        topic: topic.into(),
        content: "order 42".into(),
        publisher: "shop".into(),
        trace_id: "t".into(),
        span_id: "s".into(),
        trace_unsampled: false,
        hop: 0,
        at_ms: 5,
    };
    let batch = vec![
        publication("p-1", "orders.created"),
        publication("p-2", "orders.eu.created"),
        publication("p-1", "orders.created"),
    ];
    let (r, events) = apply(&mut db, 5, Publish { publications: batch });
    // Shipping twice (two patterns match) and Audit once; then Shipping's `orders.>` and Audit; then a retry.
    assert_eq!(r, Response::Published(vec![Published::Fanned(3), Published::Fanned(2), Published::Duplicate]));
    let delivered = events.iter().filter(|e| matches!(e, StateEvent::MessageAccepted { .. })).count();
    assert_eq!(delivered, 5, "{events:?}");
    let topic: String = db.query_row("SELECT body FROM messages WHERE id = 'p-1.0'", [], |r| r.get(0)).unwrap();
    assert!(topic.contains("\"topic\":\"orders.created\"") && topic.contains("\"deliver\":true"), "{topic}");
    let protocols: Vec<String> = {
        let mut s = db
            .prepare("SELECT DISTINCT c.protocol FROM conversations c JOIN messages m ON m.conversation_id = c.id")
            .unwrap();
        s.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    };
    assert_eq!(protocols, ["subscribe"]);

    assert_eq!(apply(&mut db, 6, Unsubscribe { id: "s-1".into(), at_ms: 6 }).0, Response::Deleted(true));
    let (r, _) = apply(&mut db, 7, Publish { publications: vec![publication("p-3", "orders.paid")] });
    assert_eq!(r, Response::Published(vec![Published::Fanned(2)]), "Audit no longer receives");
    let state: String =
        db.query_row("SELECT state FROM conversations WHERE id = 'subscribe-s-1'", [], |r| r.get(0)).unwrap();
    assert_eq!(state, "Completed", "a cancelled subscription's conversation ends");
}

#[test]
fn retention_prunes_finished_protocol_history_and_keeps_open_auctions() {
    use super::{AdvanceAuction, AuctionResult, AuctionRules, Pricing, PruneHistory, StartAuction};
    let mut db = replica();
    apply(&mut db, 1, deploy(GOLDEN));
    let rules = AuctionRules::SealedBid { reserve: 0.0, pricing: Pricing::FirstPrice, deadline_ms: 1000 };
    for id in ["done", "open"] {
        let start = StartAuction {
            id: id.into(),
            item: "x".into(),
            rules: rules.clone(),
            bidders: vec!["Golden".into()],
            initiator: "ops".into(),
            at_ms: 5,
        };
        apply(&mut db, 2, start);
    }
    let result = AuctionResult { winner: None, price: None, reason: "no valid bid".into() };
    let close =
        AdvanceAuction { id: "done".into(), round: 0, bids: vec![], result: Some(result), notices: vec![], at_ms: 6 };
    assert_eq!(apply(&mut db, 3, close).0, Response::Done);
    let count = |db: &Connection, table: &str| -> i64 {
        db.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0)).unwrap()
    };
    assert_eq!(count(&db, "auctions"), 2);
    apply(&mut db, 4, PruneHistory { before_ms: 10, keep_versions: 10 });
    let left: String = db.query_row("SELECT id FROM auctions", [], |r| r.get(0)).unwrap();
    assert_eq!((count(&db, "auctions"), left.as_str()), (1, "open"), "an open auction is never pruned");
}

/// SQLite's plan for `sql`, one step (its `detail`) per entry.
fn query_plan(db: &Connection, sql: &str, params: impl rusqlite::Params) -> Vec<String> {
    let mut s = db.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    s.query_map(params, |r| r.get::<_, String>(3)).unwrap().map(Result::unwrap).collect()
}

#[test]
fn a_publication_reads_only_the_agents_that_subscribe() {
    let mut db = replica();
    for i in 0..50 {
        apply(&mut db, i + 1, deploy(&format!("name = \"Quiet{i}\"\nsystem_prompt = \"x\"\n")));
    }
    db.execute_batch("ANALYZE").unwrap();
    let plan = query_plan(&db, super::topics::RECIPIENTS, []);
    // Each read of `agents` is through the partial index or by key, never
    // a scan of every agent's definition.
    let reads: Vec<&String> = plan.iter().filter(|step| step.contains(" a ") || step.ends_with(" a")).collect();
    assert!(!reads.is_empty(), "{plan:?}");
    for step in reads {
        assert!(step.contains("agents_subscribing") || step.starts_with("SEARCH a"), "{step} in {plan:?}");
    }
}

#[test]
fn a_page_of_agents_by_capability_walks_only_that_capability() {
    let mut db = replica();
    for i in 0..50 {
        let toml = format!("name = \"A{i}\"\nsystem_prompt = \"x\"\ncapabilities = [\"c{}\"]\n", i % 5);
        apply(&mut db, i + 1, deploy(&toml));
    }
    db.execute_batch("ANALYZE").unwrap();
    let sql = super::agents::page_by_capability();
    let plan = query_plan(&db, &sql, rusqlite::params!["", "c0", 1]);
    assert!(plan[0].starts_with("SEARCH c USING") && plan[0].contains("capability=? AND name_key>?"), "{plan:?}");
    assert!(plan.iter().all(|step| !step.starts_with("SCAN")), "no step walks a whole table: {plan:?}");
    let names: Vec<String> = {
        let mut s = db.prepare(&sql).unwrap();
        s.query_map(rusqlite::params!["a10", "c0", 3], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    };
    assert_eq!(names, ["A15", "A20", "A25"], "c0 after a10, in key order");
}

/// The statements `f` runs on `db`, each with its parameters' values in
/// place (SQLite's statement trace).
fn statements_run(db: &mut Connection, f: impl FnOnce(&mut Connection)) -> Vec<String> {
    use rusqlite::ffi;
    use std::cell::RefCell;
    use std::ffi::{c_int, c_uint, c_void, CStr};
    thread_local!(static RAN: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) });
    unsafe extern "C" fn on_statement(_: c_uint, _: *mut c_void, stmt: *mut c_void, _: *mut c_void) -> c_int {
        // SAFETY: for SQLITE_TRACE_STMT, SQLite passes the statement being
        // run; the expanded text is ours to read and free.
        unsafe {
            let sql = ffi::sqlite3_expanded_sql(stmt.cast());
            if !sql.is_null() {
                RAN.with(|r| r.borrow_mut().push(CStr::from_ptr(sql).to_string_lossy().into_owned()));
                ffi::sqlite3_free(sql.cast());
            }
        }
        0
    }
    RAN.with(|r| r.borrow_mut().clear());
    // SAFETY: the handle is this live connection's; the callback touches
    // only its own thread-local and is removed before `db` is used again.
    unsafe {
        ffi::sqlite3_trace_v2(db.handle(), ffi::SQLITE_TRACE_STMT as c_uint, Some(on_statement), std::ptr::null_mut());
    }
    f(db);
    unsafe {
        ffi::sqlite3_trace_v2(db.handle(), 0, None, std::ptr::null_mut());
    }
    RAN.with(|r| r.take())
}

/// Applying a command costs O(what it changes), not O(what the replica
/// holds): every statement any command runs finds its rows through a key
/// or an index, on a replica of a few hundred agents and messages. (A
/// deploy that scanned every agent's capabilities made a 3-node cluster's
/// deploys slower with every agent deployed.)
#[test]
fn no_applied_command_scans_a_table() {
    let mut db = replica();
    for i in 0..300 {
        let toml = format!("name = \"A{i}\"\nsystem_prompt = \"x\"\ncapabilities = [\"c{}\", \"echo\"]\n", i % 7);
        apply(&mut db, i + 1, deploy(&toml));
    }
    let messages = (0..300).map(|i| message(&format!("bulk-{i}"), MessageKind::Request, MessageStatus::Accepted));
    apply(&mut db, 301, AcceptMessages { messages: messages.collect() });
    // Commands whose whole point is a pass over history, bounded by time.
    let passes = ["prune_history"];
    // Scans that are O(what matters) by design: the partial index holds
    // only the agents that subscribe, `json_each` walks one definition, and
    // a publication matches every dynamic subscription's pattern.
    let bounded = |name: &str, step: &str| {
        step.contains("USING INDEX agents_subscribing")
            || step.contains("VIRTUAL TABLE")
            || step.contains("CONSTANT ROW")
            || (name == "publish" && step == "SCAN sub")
    };
    for (index, (name, command)) in (1_001..).zip(commands()) {
        let ran = statements_run(&mut db, |db| {
            let tx = db.transaction().unwrap();
            let mut stage = Vec::new();
            // A golden command may not apply to this replica (an unknown
            // agent, say); what it runs up to there still counts.
            let _ = command.apply(&mut ApplyCtx { tx: &tx, index, stage: &mut stage });
            tx.commit().unwrap();
        });
        if passes.contains(&name) {
            continue;
        }
        for sql in ran.iter().filter(|s| !s.starts_with("--")) {
            let plan = query_plan(&db, sql, []);
            let scans: Vec<&String> =
                plan.iter().filter(|step| step.starts_with("SCAN ") && !bounded(name, step)).collect();
            assert!(scans.is_empty(), "{name} runs `{sql}`, which scans: {plan:?}");
        }
    }
}

/// Deploys batched into one entry answer, change and publish exactly what
/// the same deploys would as entries of their own.
#[test]
fn a_batch_of_deploys_applies_as_the_deploys_would_alone() {
    let a = "name = \"A\"\nsystem_prompt = \"x\"\ncapabilities = [\"c\"]\n";
    let a2 = "name = \"A\"\nsystem_prompt = \"y\"\n";
    let missing = DeployAgent { must_exist: true, ..deploy("name = \"B\"\nsystem_prompt = \"x\"\n") };
    let deploys = || vec![deploy(a), deploy(a), deploy(a2), missing.clone()];

    let (mut alone, mut together) = (replica(), replica());
    let mut answers = Vec::new();
    let mut published = Vec::new();
    for d in deploys() {
        let (r, events) = apply(&mut alone, 1, d);
        answers.push(r);
        published.extend(events);
    }
    let (r, events) = apply(&mut together, 1, super::DeployAgents { deploys: deploys() });
    assert_eq!(
        answers,
        [
            Response::Deployed { revision: 1, created: true },
            Response::Unchanged { revision: 1 },
            Response::Deployed { revision: 2, created: false },
            Response::NotFound
        ]
    );
    assert_eq!(r, Response::Deployments(answers));
    assert_eq!(events, published);
    assert_eq!(dump(&together), dump(&alone), "the same replica either way");
}

/// One deploy of a batch failing (here, refused by a trigger the way a
/// constraint would) leaves nothing of itself behind and takes none of its
/// neighbours with it.
#[test]
fn a_failed_deploy_in_a_batch_is_refused_alone() {
    let mut db = replica();
    db.execute_batch(
        "CREATE TRIGGER refuse BEFORE INSERT ON agents WHEN NEW.name = 'Bad'
         BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
    )
    .unwrap();
    let batch = super::DeployAgents {
        deploys: ["A", "Bad", "C"].map(|n| deploy(&format!("name = \"{n}\"\nsystem_prompt = \"x\"\n"))).to_vec(),
    };
    let (r, events) = apply(&mut db, 1, batch);
    let Response::Deployments(answers) = r else { panic!("{r:?}") };
    assert_eq!(answers[0], Response::Deployed { revision: 1, created: true });
    assert!(matches!(&answers[1], Response::Rejected(why) if why.contains("refused by the test")), "{answers:?}");
    assert_eq!(answers[2], Response::Deployed { revision: 1, created: true });
    let names: Vec<String> = {
        let mut s = db.prepare("SELECT name FROM agents ORDER BY name").unwrap();
        s.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    };
    assert_eq!(names, ["A", "C"]);
    let versions: i64 = db.query_row("SELECT COUNT(*) FROM agent_versions", [], |r| r.get(0)).unwrap();
    assert_eq!(versions, 2, "the refused deploy's revision is rolled back with it");
    let started: Vec<&StateEvent> = events.iter().filter(|e| matches!(e, StateEvent::AgentDeployed { .. })).collect();
    assert_eq!(started.len(), 2, "{events:?}");
}
