//! `apply` over a real SQLite replica, without Raft: what each command
//! changes and publishes, and that every replica computes the same state.

use rusqlite::Connection;

use super::command::{ApplyCtx, Command, Response};
use super::events::StateEvent;
use super::golden_tests::{commands, message};
use super::schema::MIGRATIONS;
use super::{
    AcceptMessages, AgentSource, DeleteEntity, DeployAgent, DeployMcpServer, MessageKind, MessageStatus,
    NewObservation, Place, RecordReplies, Relate, RemoveAgent, StoreEntity, Vector,
};
use crate::config::{AgentName, AgentSpec};

fn replica() -> Connection {
    let conn = Connection::open_in_memory().unwrap();
    conn.execute_batch(MIGRATIONS).unwrap();
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
