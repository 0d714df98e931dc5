//! The replicated commands and their responses are the Raft log format: a
//! log written by one version is applied by the next. These tests pin
//! every command and response (`testdata/*.jsonl`, one `name<TAB>json` line
//! per value) two ways: `*.v1.jsonl` were written by the first version
//! (before `state/` owned its vocabulary) and must still decode to the
//! value they name; `commands.jsonl` / `responses.jsonl` hold today's
//! encoding, so a change to it is a decision, not an accident.
//!
//! `CAXTON_UPDATE_GOLDEN=1 cargo test --lib golden` rewrites today's files;
//! never rewrite a versioned one.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{
    AcceptMessages, AcceptOutcome, AgentSource, AssignShards, Command, ConversationState, CreateKey, DeleteEntity,
    DeployAgent, DeployMcpServer, Grants, Message, MessageKind, MessageStatus, NewObservation, Place, PruneHistory,
    RateLimit, RecordReplies, Relate, RemoveAgent, RemoveMcpServer, Response, RevokeKey, Scope, SetConversation,
    StoreEntity, Vector,
};
use crate::config::{AgentName, AgentSpec};

const AGENT: &str = "name = \"Golden\"\nversion = \"1.2.0\"\ncapabilities = [\"echo\", \"golden\"]\n\
system_prompt = \"You answer in gold.\"\ntools = [\"memory_search\"]\n\n[memory]\nenabled = true\nscope = \"workspace\"\n";

pub(super) fn message(id: &str, kind: MessageKind, status: MessageStatus) -> Message {
    Message {
        id: id.into(),
        kind,
        sender: "user".into(),
        receiver: "Golden".into(),
        capability: Some("golden".into()),
        conversation_id: "conv-1".into(),
        reply_to: None,
        content: "hello ✓".into(),
        requirements: Some("be brief".into()),
        context: None,
        history: vec![crate::llm::ChatMessage::user("earlier")],
        trace_id: "trace-1".into(),
        span_id: "0123456789abcdef".into(),
        hop: 1,
        created_at_ms: 1_700_000_000_000,
        status,
        reply_id: None,
        trace_unsampled: false,
        revision: None,
        served: None,
        attempts: 0,
        sent_by: None,
        deliver: false,
        topic: None,
        failure: None,
        usage: None,
        limit: None,
        sampling: None,
        tool_calls: Vec::new(),
    }
}

pub(super) fn commands() -> Vec<(&'static str, Command)> {
    let spec = AgentSpec::from_toml(AGENT, "golden.toml").expect("golden agent parses");
    let place = Place::agent("Golden");
    vec![
        (
            "deploy_agent",
            Command::DeployAgent(Box::new(DeployAgent {
                spec,
                toml: AGENT.into(),
                source: AgentSource::File("golden.toml".into()),
                at_ms: 1_700_000_000_001,
                owner: 2,
                must_exist: false,
                deployed_by: None,
            })),
        ),
        (
            "remove_agent",
            Command::RemoveAgent(RemoveAgent {
                name: AgentName::parse("Golden").unwrap(),
                only_if_source: Some(AgentSource::Api),
                at_ms: 1_700_000_000_002,
            }),
        ),
        (
            "accept_messages",
            Command::AcceptMessages(AcceptMessages {
                messages: vec![
                    message("m-1", MessageKind::Request, MessageStatus::Accepted),
                    message("m-2", MessageKind::Notification, MessageStatus::Final),
                ],
            }),
        ),
        (
            "record_replies",
            Command::RecordReplies(RecordReplies {
                replies: vec![
                    Message {
                        reply_to: Some("m-1".into()),
                        ..message("m-1-reply", MessageKind::Response, MessageStatus::Final)
                    },
                    Message {
                        reply_to: Some("m-3".into()),
                        ..message("m-3-reply", MessageKind::Error, MessageStatus::Final)
                    },
                ],
            }),
        ),
        (
            "set_conversation",
            Command::SetConversation(SetConversation {
                id: "conv-1".into(),
                protocol: "contract-net".into(),
                state: ConversationState::InProgress,
                detail: Some("3 proposals".into()),
                at_ms: 1_700_000_000_003,
            }),
        ),
        (
            "assign_shards",
            Command::AssignShards(AssignShards { moves: vec![(0, 1), (255, 3)], at_ms: 1_700_000_000_004 }),
        ),
        (
            "store_entity",
            Command::StoreEntity(StoreEntity {
                place: place.clone(),
                name: "Lisbon".into(),
                entity_type: "city".into(),
                observations: vec![NewObservation { text: "sunny".into(), embedding: Vector(vec![0.5, -1.0, 0.25]) }],
                at_ms: 1_700_000_000_005,
            }),
        ),
        (
            "delete_entity",
            Command::DeleteEntity(DeleteEntity { place: Place::workspace("team"), name: "Lisbon".into() }),
        ),
        (
            "relate",
            Command::Relate(Relate {
                place: Place::global(),
                from: "Lisbon".into(),
                to: "Portugal".into(),
                relation_type: "capital_of".into(),
                at_ms: 1_700_000_000_006,
            }),
        ),
        (
            "deploy_mcp_server",
            Command::DeployMcpServer(DeployMcpServer {
                name: "json_query".into(),
                manifest: "name = \"json_query\"\n".into(),
                module: "AGFzbQEAAAA=".into(),
                tools: r#"[{"name":"query"}]"#.into(),
                at_ms: 1_700_000_000_007,
                by: super::ToolDeployer::operator(),
            }),
        ),
        (
            "remove_mcp_server",
            Command::RemoveMcpServer(RemoveMcpServer {
                name: "json_query".into(),
                by: super::ToolDeployer::operator(),
            }),
        ),
        (
            "create_key",
            Command::CreateKey(Box::new(CreateKey {
                id: "0123456789ab".into(),
                name: "support-bot".into(),
                hash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
                grants: Grants {
                    scopes: vec![Scope::Invoke, Scope::MemoryRead],
                    agents: vec!["support-*".into()],
                    workspaces: vec!["support".into()],
                    rate: Some(RateLimit { per_second: 5.0, burst: 10 }),
                },
                expires_at_ms: Some(1_700_086_400_000),
                created_by: "bootstrap-admin".into(),
                at_ms: 1_700_000_000_008,
            })),
        ),
        ("revoke_key", Command::RevokeKey(RevokeKey { name: "support-bot".into(), at_ms: 1_700_000_000_009 })),
        ("prune_history", Command::PruneHistory(PruneHistory { before_ms: 1_700_000_000_010, keep_versions: 50 })),
        (
            "start_rollout",
            Command::StartRollout(Box::new(super::StartRollout {
                deploy: DeployAgent {
                    spec: AgentSpec::from_toml(CANARY_AGENT, "golden.toml").expect("valid"),
                    toml: CANARY_AGENT.into(),
                    source: AgentSource::Api,
                    at_ms: 1_700_000_000_011,
                    owner: 1,
                    must_exist: false,
                    deployed_by: Some("deployer".into()),
                },
            })),
        ),
        (
            "update_rollout",
            Command::UpdateRollout(super::UpdateRollout {
                agent: AgentName::parse("Golden").expect("valid"),
                candidate: 2,
                expect_step: Some(0),
                action: super::RolloutAction::Check(super::Check {
                    at_ms: 1_700_000_000_012,
                    passed: false,
                    stable: super::Figures { requests: 40, errors: 0, timeouts: 0, p95_ms: Some(120) },
                    candidate: super::Figures { requests: 8, errors: 4, timeouts: 0, p95_ms: Some(130) },
                    note: "error rate 50.0 %".into(),
                }),
                at_ms: 1_700_000_000_012,
            }),
        ),
        (
            "record_attempt",
            Command::RecordAttempt(super::messages::RecordAttempt {
                id: "m-1".into(),
                max_attempts: 3,
                at_ms: 1_700_000_000_013,
            }),
        ),
        (
            "accept_delivered_notification",
            Command::AcceptMessages(AcceptMessages {
                messages: vec![Message {
                    deliver: true,
                    ..message("m-4", MessageKind::Notification, MessageStatus::Accepted)
                }],
            }),
        ),
        (
            "subscribe",
            Command::Subscribe(super::Subscribe {
                id: "sub-1".into(),
                agent: "Golden".into(),
                pattern: "orders.>".into(),
                by: "operator".into(),
                at_ms: 1_700_000_000_014,
            }),
        ),
        ("unsubscribe", Command::Unsubscribe(super::Unsubscribe { id: "sub-1".into(), at_ms: 1_700_000_000_015 })),
        (
            "deploy_agents",
            Command::DeployAgents(super::DeployAgents {
                deploys: vec![DeployAgent {
                    spec: AgentSpec::from_toml(AGENT, "golden.toml").expect("golden agent parses"),
                    toml: AGENT.into(),
                    source: AgentSource::Api,
                    at_ms: 1_700_000_000_018,
                    owner: 1,
                    must_exist: true,
                    deployed_by: Some("deployer".into()),
                }],
            }),
        ),
        (
            "claim_setting",
            Command::ClaimSetting(super::ClaimSetting {
                key: "memory.backend".into(),
                value: "postgres".into(),
                replaces: Some("embedded".into()),
                at_ms: 1_700_000_000_017,
            }),
        ),
        (
            "publish",
            Command::Publish(super::Publish {
                publications: vec![super::Publication {
                    id: "pub-1".into(),
                    topic: "orders.eu.created".into(),
                    content: "order 42 ✓".into(),
                    publisher: "shop".into(),
                    trace_id: "trace-2".into(),
                    span_id: "fedcba9876543210".into(),
                    trace_unsampled: false,
                    hop: 0,
                    at_ms: 1_700_000_000_016,
                }],
            }),
        ),
        (
            "start_auction",
            Command::StartAuction(super::StartAuction {
                id: "auction-1".into(),
                item: "3 crates".into(),
                rules: super::AuctionRules::SealedBid {
                    reserve: 5.0,
                    pricing: super::Pricing::SecondPrice,
                    deadline_ms: 30_000,
                },
                bidders: vec!["Golden".into(), "Silver".into()],
                initiator: "operator".into(),
                at_ms: 1_700_000_000_017,
            }),
        ),
        (
            "advance_auction",
            Command::AdvanceAuction(super::AdvanceAuction {
                id: "auction-1".into(),
                round: 0,
                bids: vec![super::Bid {
                    round: 0,
                    bidder: "Golden".into(),
                    message_id: "auction-1.r0.0".into(),
                    amount: Some(12.5),
                    passed: false,
                    rejected: None,
                }],
                result: Some(super::AuctionResult {
                    winner: Some("Golden".into()),
                    price: Some(5.0),
                    reason: "sold to Golden at 5".into(),
                }),
                notices: vec![],
                at_ms: 1_700_000_000_018,
            }),
        ),
        (
            "start_negotiation",
            Command::StartNegotiation(super::StartNegotiation {
                id: "negotiation-1".into(),
                subject: "price of 3 crates".into(),
                parties: vec!["Golden".into(), "Silver".into()],
                initiator: "operator".into(),
                max_rounds: 6,
                deadline_at_ms: 1_700_000_060_000,
                at_ms: 1_700_000_000_019,
            }),
        ),
        (
            "step_negotiation",
            Command::StepNegotiation(super::StepNegotiation {
                id: "negotiation-1".into(),
                mv: super::Move {
                    round: 0,
                    party: "Golden".into(),
                    message_id: Some("negotiation-1.r0".into()),
                    kind: super::MoveKind::Offer { terms: "90 EUR".into() },
                },
                at_ms: 1_700_000_000_020,
            }),
        ),
    ]
}

const CANARY_AGENT: &str =
    "name = \"Golden\"\nsystem_prompt = \"x\"\n[rollout]\nsteps = [{ weight = 10, pause = \"1m\" }]\n";

fn responses() -> Vec<(&'static str, Response)> {
    vec![
        ("deployed", Response::Deployed { revision: 2, created: false }),
        ("unchanged", Response::Unchanged { revision: 2 }),
        ("removed", Response::Removed { revision: 3 }),
        ("not_found", Response::NotFound),
        ("source_mismatch", Response::SourceMismatch),
        (
            "accepted",
            Response::Accepted(vec![AcceptOutcome::Accepted, AcceptOutcome::Duplicate, AcceptOutcome::UnknownReceiver]),
        ),
        ("recorded", Response::Recorded(vec![true, false])),
        ("done", Response::Done),
        ("stored", Response::Stored { created: true, observations: 1 }),
        ("deleted", Response::Deleted(true)),
        ("missing_entity", Response::MissingEntity("Portugal".into())),
        ("rejected", Response::Rejected("tool server `x`: the module is empty".into())),
        ("pruned", Response::Pruned { messages: 3, conversations: 1, versions: 2 }),
        ("rollout_not_applicable", Response::Rollout { record: None, applied: false }),
        ("not_owner", Response::NotOwner("tool server `x` was deployed by the key `a`".into())),
        ("attempt_run", Response::Attempt(super::envelope::Attempt::Run(2))),
        ("attempt_dead_lettered", Response::Attempt(super::envelope::Attempt::DeadLettered)),
        ("published", Response::Published(vec![super::Published::Fanned(3), super::Published::Duplicate])),
        ("setting", Response::Setting("postgres".into())),
        (
            "deployments",
            Response::Deployments(vec![
                Response::Deployed { revision: 1, created: true },
                Response::Unchanged { revision: 4 },
                Response::NotFound,
                Response::Rejected("applying the deploy failed: UNIQUE constraint failed".into()),
            ]),
        ),
    ]
}

fn encode<T: Serialize>(value: &T) -> String {
    // What `caxton_cluster::codec::encode_app` writes into the log.
    serde_json::to_string(value).expect("serializes")
}

fn pinned(file: &str) -> BTreeMap<String, String> {
    let path = format!("{}/src/state/testdata/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (name, json) = l.split_once('\t').unwrap_or_else(|| panic!("{path}: line without a tab: {l}"));
            (name.to_owned(), json.to_owned())
        })
        .collect()
}

/// Every line pinned by an earlier version decodes, to the value it names:
/// a log that version wrote is applied by this one.
fn check_decodes<T: Serialize + DeserializeOwned>(file: &str, values: &[(&str, T)]) {
    for (name, line) in pinned(file) {
        let (_, value) = values
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("{file} pins `{name}`, which these tests no longer build"));
        let decoded: T =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{file}: `{name}` no longer decodes: {e}"));
        assert_eq!(encode(&decoded), encode(value), "{file}: `{name}` decodes to another value");
    }
}

/// Today's encoding equals the pinned one: a change to it is deliberate
/// (`CAXTON_UPDATE_GOLDEN=1` rewrites this file; the older files stay).
fn check_encodes<T: Serialize>(file: &str, values: &[(&str, T)]) {
    let path = format!("{}/src/state/testdata/{file}", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("CAXTON_UPDATE_GOLDEN").is_some() {
        let current: String = values.iter().map(|(name, v)| format!("{name}\t{}\n", encode(v))).collect();
        std::fs::write(&path, current).unwrap();
    }
    let lines = pinned(file);
    for (name, value) in values {
        assert_eq!(lines.get(*name), Some(&encode(value)), "{file}: the encoding of `{name}` changed");
    }
    assert_eq!(lines.len(), values.len(), "{file} pins values these tests no longer build");
}

#[test]
fn commands_encode_as_pinned() {
    check_encodes("commands.jsonl", &commands());
}

#[test]
fn responses_encode_as_pinned() {
    check_encodes("responses.jsonl", &responses());
}

#[test]
fn commands_written_by_v1_decode() {
    check_decodes("commands.v1.jsonl", &commands());
}

#[test]
fn responses_written_by_v1_decode() {
    check_decodes("responses.v1.jsonl", &responses());
}

/// A command added after the first version is advertised, so proposers
/// can tell whether every voter can apply it.
#[test]
fn every_gated_command_is_advertised() {
    use super::{Proposal, FEATURES};
    let rollouts = [super::StartRollout::FEATURE, super::UpdateRollout::FEATURE];
    let topics = [
        super::Subscribe::FEATURE,
        super::Unsubscribe::FEATURE,
        super::Publish::FEATURE,
        super::StartAuction::FEATURE,
        super::AdvanceAuction::FEATURE,
        super::StartNegotiation::FEATURE,
        super::StepNegotiation::FEATURE,
    ];
    let gated = [
        CreateKey::FEATURE,
        RevokeKey::FEATURE,
        PruneHistory::FEATURE,
        super::RecordAttempt::FEATURE,
        super::ClaimSetting::FEATURE,
        super::DeployAgents::FEATURE,
    ];
    for feature in gated.into_iter().chain(rollouts).chain(topics) {
        let feature = feature.expect("gated");
        assert!(FEATURES.contains(&feature), "{feature} is not in FEATURES");
    }
}
