//! Prometheus metrics: one registry per node (tests run several nodes in
//! one process, so nothing is global), served on the node's own metrics
//! listener (`server.metrics_listen`) and at `/metrics` on the API.
//!
//! Names follow the OpenTelemetry GenAI conventions where they exist (as
//! Prometheus translates them: `gen_ai_client_operation_duration_seconds`),
//! etcd's Raft metrics for the cluster, and `caxton_*` for the rest. Label
//! values that users choose (agent, tool server, tool, model) are capped per
//! label: past the cap, new values are counted as `other`, so a flood of
//! agent names cannot grow the series without bound.

use parking_lot::Mutex;
use std::collections::HashSet;
use std::time::Duration;

use prometheus::{
    exponential_buckets, Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// How many distinct values a user-chosen label keeps before `other`.
pub const LABEL_CAP: usize = 200;

/// The value a label takes once its cap is reached.
pub const OTHER: &str = "other";

/// Remembers the values a label has taken, up to a cap.
pub struct LabelCap {
    cap: usize,
    seen: Mutex<HashSet<String>>,
}

impl LabelCap {
    pub fn new(cap: usize) -> Self {
        Self { cap, seen: Mutex::default() }
    }

    /// `value` itself while it is known or there is room; `other` after.
    pub fn of<'a>(&self, value: &'a str) -> &'a str {
        let mut seen = self.seen.lock();
        if seen.contains(value) {
            return value;
        }
        if seen.len() < self.cap {
            seen.insert(value.to_owned());
            return value;
        }
        OTHER
    }
}

/// How a message, an LLM call or a tool call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Error,
    Denied,
    Fuel,
    Memory,
    Timeout,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
            Self::Denied => "denied",
            Self::Fuel => "fuel",
            Self::Memory => "memory",
            Self::Timeout => "timeout",
        }
    }
}

/// What happened to an agent, for `caxton_agent_events_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentEvent {
    Deployed,
    Updated,
    Removed,
    Moved,
    Started,
    Failed,
}

impl AgentEvent {
    pub const ALL: [AgentEvent; 6] =
        [Self::Deployed, Self::Updated, Self::Removed, Self::Moved, Self::Started, Self::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deployed => "deployed",
            Self::Updated => "updated",
            Self::Removed => "removed",
            Self::Moved => "moved",
            Self::Started => "started",
            Self::Failed => "failed",
        }
    }
}

/// Every instrument of one node.
pub struct Metrics {
    registry: Registry,
    pub http_duration: HistogramVec,
    pub message_duration: HistogramVec,
    /// Requests and their latency per agent revision (rollouts compare them).
    pub revision_duration: HistogramVec,
    /// Active rollouts: the candidate's weight and step, per agent.
    pub rollout_weight: IntGaugeVec,
    pub rollout_step: IntGaugeVec,
    pub messages: IntCounterVec,
    /// Interaction protocol steps (`protocol`, `event`), on the node that took them.
    pub protocol_events: IntCounterVec,
    /// Agent limits reached, by limit.
    pub limit_hits: IntCounterVec,
    pub agent_events: IntCounterVec,
    pub llm_duration: HistogramVec,
    pub llm_tokens: HistogramVec,
    pub llm_first_token: HistogramVec,
    pub tool_duration: HistogramVec,
    pub tool_calls: IntCounterVec,
    pub tool_instances: IntGauge,
    pub tool_warm_sessions: IntGauge,
    pub mailbox_depth: IntGauge,
    pub active_conversations: IntGauge,
    pub memory_entities: IntGauge,
    pub memory_observations: IntGauge,
    pub memory_search_duration: HistogramVec,
    /// Memory database connections of this node (`in_use`, `idle`, `max`).
    pub memory_db_connections: IntGaugeVec,
    /// Memory database operations, retries included, by outcome.
    pub memory_db_queries: HistogramVec,
    pub raft: RaftGauges,
    pub agents: LabelCap,
    /// (agent, revision) pairs: revisions grow with every deploy.
    pub revisions: LabelCap,
    pub tools: LabelCap,
    pub models: LabelCap,
}

/// Raft and cluster state, set from the cluster's own figures at each
/// scrape (see `api::system`), modelled on etcd's `etcd_server_*`.
pub struct RaftGauges {
    pub has_leader: IntGauge,
    pub is_leader: IntGauge,
    pub leader_changes: IntGauge,
    pub term: IntGauge,
    pub log_index: IntGaugeVec,
    pub log_entries: IntGauge,
    pub failed_entries: IntGauge,
    pub proposals_committed: IntCounter,
    pub proposals_failed: IntCounterVec,
    pub proposals_pending: IntGauge,
    pub commit_duration: HistogramVec,
    pub proposals_applied: IntCounter,
    pub apply_duration: HistogramVec,
    pub snapshot_duration: HistogramVec,
    pub snapshot_bytes: IntGauge,
    pub replication_lag: IntGaugeVec,
    pub members: IntGaugeVec,
    pub gossip_nodes: IntGaugeVec,
    pub shards_owned: IntGauge,
    pub agents_running: IntGauge,
    pub quorum_ack_age: Gauge,
    pub snapshot_last_index: IntGauge,
    pub up: GaugeVec,
    /// When the cluster TLS certificates in use expire (node, ca).
    pub certificate_expiry: IntGaugeVec,
    /// Voters gossip hears from, and those it does not.
    pub voters: IntGaugeVec,
    /// Free space of the data volume.
    pub data_volume_free: IntGauge,
}

fn must<T>(r: prometheus::Result<T>) -> T {
    r.expect("metric definitions are static and valid")
}

fn histogram(registry: &Registry, name: &str, help: &str, labels: &[&str], buckets: Vec<f64>) -> HistogramVec {
    let h = must(HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels));
    must(registry.register(Box::new(h.clone())));
    h
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = must(IntCounterVec::new(Opts::new(name, help), labels));
    must(registry.register(Box::new(c.clone())));
    c
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = must(IntGauge::new(name, help));
    must(registry.register(Box::new(g.clone())));
    g
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = must(IntGaugeVec::new(Opts::new(name, help), labels));
    must(registry.register(Box::new(g.clone())));
    g
}

/// Seconds, 1 ms to ~65 s (×2).
fn latency_buckets() -> Vec<f64> {
    must(exponential_buckets(0.001, 2.0, 17))
}

/// The GenAI conventions' buckets for operation durations (0.01 s ×2 … 81.92 s).
fn gen_ai_duration_buckets() -> Vec<f64> {
    must(exponential_buckets(0.01, 2.0, 14))
}

/// The GenAI conventions' buckets for token counts (1, 4, 16 … 4^13).
fn token_buckets() -> Vec<f64> {
    must(exponential_buckets(1.0, 4.0, 14))
}

impl RaftGauges {
    fn new(r: &Registry) -> Self {
        let commit_duration = histogram(
            r,
            "caxton_raft_commit_duration_seconds",
            "Time from proposing a command to its commit (forwarding to the leader included)",
            &["outcome"],
            latency_buckets(),
        );
        let up = must(GaugeVec::new(Opts::new("caxton_build_info", "This node's version (always 1)"), &["version"]));
        must(r.register(Box::new(up.clone())));
        up.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1.0);
        let quorum_ack_age = must(Gauge::new(
            "caxton_raft_quorum_ack_age_seconds",
            "On the leader: time since a quorum last acknowledged it",
        ));
        must(r.register(Box::new(quorum_ack_age.clone())));
        let proposals_committed = must(IntCounter::new(
            "caxton_raft_proposals_committed_total",
            "Commands this node proposed that were committed",
        ));
        must(r.register(Box::new(proposals_committed.clone())));
        let proposals_applied =
            must(IntCounter::new("caxton_raft_proposals_applied_total", "Log entries applied to this node's replica"));
        must(r.register(Box::new(proposals_applied.clone())));
        Self {
            proposals_applied,
            apply_duration: histogram(
                r,
                "caxton_raft_apply_duration_seconds",
                "Time to apply one batch of committed entries to the replica",
                &[],
                latency_buckets(),
            ),
            snapshot_duration: histogram(
                r,
                "caxton_raft_snapshot_duration_seconds",
                "Time to build a snapshot of the replica",
                &[],
                latency_buckets(),
            ),
            snapshot_bytes: gauge(r, "caxton_raft_snapshot_bytes", "Size of the latest snapshot this node built"),
            has_leader: gauge(r, "caxton_raft_has_leader", "1 if this node knows a leader, else 0"),
            is_leader: gauge(r, "caxton_raft_is_leader", "1 if this node is the leader, else 0"),
            leader_changes: gauge(
                r,
                "caxton_raft_leader_changes_seen",
                "Leader changes this node has seen since it started",
            ),
            term: gauge(r, "caxton_raft_term", "Current Raft term"),
            log_index: gauge_vec(
                r,
                "caxton_raft_log_index",
                "Raft log indexes: last, committed (leader's view), applied, snapshot, purged",
                &["kind"],
            ),
            log_entries: gauge(r, "caxton_raft_log_entries", "Entries stored in this node's log"),
            failed_entries: gauge(
                r,
                "caxton_raft_failed_entries",
                "Log entries recorded as failed instead of halting the replica",
            ),
            proposals_committed,
            proposals_failed: counter(
                r,
                "caxton_raft_proposals_failed_total",
                "Commands this node proposed that did not commit, by reason",
                &["reason"],
            ),
            proposals_pending: gauge(
                r,
                "caxton_raft_proposals_pending",
                "Commands this node is waiting to see committed",
            ),
            commit_duration,
            replication_lag: gauge_vec(
                r,
                "caxton_raft_replication_lag_entries",
                "On the leader: entries each follower is behind",
                &["peer"],
            ),
            members: gauge_vec(r, "caxton_cluster_members", "Raft members by role", &["role"]),
            gossip_nodes: gauge_vec(r, "caxton_gossip_nodes", "Nodes gossip hears of, by liveness", &["state"]),
            shards_owned: gauge(r, "caxton_shards_owned", "Placement shards this node owns"),
            agents_running: gauge(r, "caxton_agents_running", "Agents running on this node"),
            quorum_ack_age,
            snapshot_last_index: gauge(r, "caxton_raft_snapshot_index", "Last log index the latest snapshot covers"),
            up,
            certificate_expiry: gauge_vec(
                r,
                "caxton_tls_certificate_expiry_timestamp_seconds",
                "When the cluster TLS certificate in use expires (kind: node, or the earliest ca), in seconds since the epoch; re-read when its file changes",
                &["kind"],
            ),
            voters: gauge_vec(
                r,
                "caxton_cluster_voters",
                "Raft voters by whether gossip hears from them (state: reachable, unreachable)",
                &["state"],
            ),
            data_volume_free: gauge(
                r,
                "caxton_data_volume_free_bytes",
                "Free space on the data volume (raft.db, state.db); writes are refused under server.min_free_disk_mb",
            ),
        }
    }
}

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new();
        #[cfg(target_os = "linux")]
        must(r.register(Box::new(prometheus::process_collector::ProcessCollector::for_self())));
        let llm_labels = ["gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model", "error_type"];
        Self {
            http_duration: histogram(
                &r,
                "caxton_http_request_duration_seconds",
                "API requests by route template, method and status",
                &["route", "method", "status"],
                latency_buckets(),
            ),
            message_duration: histogram(
                &r,
                "caxton_message_processing_duration_seconds",
                "Time an agent took to answer a message, on the node that ran it",
                &["agent", "kind", "outcome"],
                latency_buckets(),
            ),
            revision_duration: histogram(
                &r,
                "caxton_agent_revision_duration_seconds",
                "Time an agent revision took to answer a request, by outcome",
                &["agent", "revision", "outcome"],
                latency_buckets(),
            ),
            rollout_weight: gauge_vec(
                &r,
                "caxton_rollout_weight_percent",
                "Share of new conversations an active rollout's new revision serves",
                &["agent"],
            ),
            rollout_step: gauge_vec(&r, "caxton_rollout_step", "Step (0-based) of an active canary", &["agent"]),
            messages: counter(
                &r,
                "caxton_messages_total",
                "Messages by what became of them: accepted (committed on this node), answered, failed, timed_out, dead_lettered (given up after server.max_message_attempts deliveries)",
                &["outcome"],
            ),
            protocol_events: counter(
                &r,
                "caxton_protocol_events_total",
                "Interaction protocol steps on this node: subscribe/published, subscribe/notified (notifications fanned out), notification/processed, notification/failed, contract_net/started, contract_net/awarded, contract_net/rejected",
                &["protocol", "event"],
            ),
            limit_hits: counter(
                &r,
                "caxton_agent_limit_hits_total",
                "Agent limits reached on this node, by limit: tokens_per_turn, tokens_per_day, spend_per_day_usd, tool_calls_per_turn, turn_time_ms and max_message_bytes stop a turn or refuse a message; concurrency keeps a delivery waiting",
                &["limit"],
            ),
            agent_events: counter(&r, "caxton_agent_events_total", "Agent lifecycle events on this node", &["event"]),
            llm_duration: histogram(
                &r,
                "gen_ai_client_operation_duration_seconds",
                "GenAI operation duration (OpenTelemetry GenAI conventions)",
                &llm_labels,
                gen_ai_duration_buckets(),
            ),
            llm_tokens: histogram(
                &r,
                "gen_ai_client_token_usage",
                "Tokens used per GenAI operation (OpenTelemetry GenAI conventions)",
                &["gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model", "gen_ai_token_type"],
                token_buckets(),
            ),
            llm_first_token: histogram(
                &r,
                "gen_ai_client_operation_time_to_first_chunk_seconds",
                "Time to the first streamed token of a GenAI operation",
                &["gen_ai_provider_name", "gen_ai_request_model"],
                gen_ai_duration_buckets(),
            ),
            tool_duration: histogram(
                &r,
                "caxton_tool_call_duration_seconds",
                "Tool calls by server, tool and outcome (ok, error, denied, fuel, memory, timeout)",
                &["server", "tool", "outcome"],
                latency_buckets(),
            ),
            tool_calls: counter(
                &r,
                "caxton_tool_calls_total",
                "Tool calls by server, tool and outcome",
                &["server", "tool", "outcome"],
            ),
            tool_instances: gauge(&r, "caxton_tool_instances_in_use", "WASM tool instances running now"),
            tool_warm_sessions: gauge(
                &r,
                "caxton_tool_warm_sessions",
                "Warm sessions of stateless tool servers alive now (idle or serving)",
            ),
            mailbox_depth: gauge(&r, "caxton_mailbox_depth", "Messages waiting in the mailboxes of this node's agents"),
            active_conversations: gauge(
                &r,
                "caxton_active_conversations",
                "Conversations initiated or in progress (cluster-wide, from this replica)",
            ),
            memory_entities: gauge(&r, "caxton_memory_entities", "Entities in memory"),
            memory_observations: gauge(&r, "caxton_memory_observations", "Observations in memory"),
            memory_db_connections: gauge_vec(
                &r,
                "caxton_memory_db_connections",
                "Memory database connections of this node by state (in_use, idle, max)",
                &["state"],
            ),
            memory_db_queries: histogram(
                &r,
                "caxton_memory_db_operation_duration_seconds",
                "Memory database operations (retries included) by operation and outcome (ok, error, unavailable)",
                &["operation", "outcome"],
                latency_buckets(),
            ),
            memory_search_duration: histogram(
                &r,
                "caxton_memory_operation_duration_seconds",
                "Memory searches and embeddings",
                &["operation"],
                latency_buckets(),
            ),
            raft: RaftGauges::new(&r),
            agents: LabelCap::new(LABEL_CAP),
            revisions: LabelCap::new(LABEL_CAP),
            tools: LabelCap::new(LABEL_CAP),
            models: LabelCap::new(LABEL_CAP),
            registry: r,
        }
    }

    /// An agent event, counted.
    pub fn agent_event(&self, event: AgentEvent) {
        self.agent_events.with_label_values(&[event.as_str()]).inc();
    }

    /// A turn stopped (or a message refused, or a delivery kept waiting)
    /// by an agent limit.
    pub fn limit_reached(&self, limit: &str) {
        self.limit_hits.with_label_values(&[limit]).inc();
    }

    /// A publication committed through this node, fanned out to `recipients`.
    pub fn publication(&self, recipients: u64) {
        self.protocol_events.with_label_values(&["subscribe", "published"]).inc();
        self.protocol_events.with_label_values(&["subscribe", "notified"]).inc_by(recipients);
    }

    /// A protocol step (`protocol` and `event` are from a fixed set).
    pub fn protocol_event(&self, protocol: &str, event: &str) {
        self.protocol_events.with_label_values(&[protocol, event]).inc();
    }

    /// A message committed through this node.
    pub fn message_accepted(&self) {
        self.messages.with_label_values(&["accepted"]).inc();
    }

    /// A request given up on after its deliveries ran out (which agent is
    /// in the log line: one series per outcome).
    pub fn message_dead_lettered(&self) {
        self.messages.with_label_values(&["dead_lettered"]).inc();
    }

    /// A request answered by one revision of an agent.
    pub fn revision_done(&self, agent: &str, revision: u64, outcome: Outcome, took: Duration) {
        let agent = self.agents.of(agent);
        let pair = format!("{agent}@{revision}");
        let revision = if self.revisions.of(&pair) == OTHER { OTHER.to_owned() } else { revision.to_string() };
        let labels = [agent, &revision, outcome.as_str()];
        self.revision_duration.with_label_values(&labels).observe(took.as_secs_f64());
    }

    pub fn message_done(&self, agent: &str, kind: &str, outcome: Outcome, took: Duration) {
        let agent = self.agents.of(agent);
        self.message_duration.with_label_values(&[agent, kind, outcome.as_str()]).observe(took.as_secs_f64());
        let counted = match outcome {
            Outcome::Ok => "answered",
            Outcome::Timeout => "timed_out",
            _ => "failed",
        };
        self.messages.with_label_values(&[counted]).inc();
    }

    /// One LLM call: its duration, and its token usage when it succeeded.
    pub fn llm_call(&self, provider: &str, model: &str, took: Duration, result: Result<(u64, u64), &str>) {
        let model = self.models.of(model);
        let error = result.as_ref().err().copied().unwrap_or("");
        self.llm_duration.with_label_values(&["chat", provider, model, error]).observe(took.as_secs_f64());
        if let Ok((input, output)) = result {
            for (kind, n) in [("input", input), ("output", output)] {
                self.llm_tokens.with_label_values(&["chat", provider, model, kind]).observe(n as f64);
            }
        }
    }

    /// One tool call (or refusal) by server and tool.
    pub fn tool_call(&self, server: &str, tool: &str, outcome: Outcome, took: Duration) {
        let (server, tool) = (self.tools.of(server), self.tools.of(tool));
        let labels = [server, tool, outcome.as_str()];
        self.tool_calls.with_label_values(&labels).inc();
        self.tool_duration.with_label_values(&labels).observe(took.as_secs_f64());
    }

    /// The registry in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding our own families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Proposals as the cluster reports them (etcd's `proposals_*`).
impl caxton_cluster::WriteObserver for Metrics {
    fn proposed(&self) {
        self.raft.proposals_pending.inc();
    }

    fn finished(&self, took: Duration, result: Result<(), &caxton_cluster::WriteError>) {
        use caxton_cluster::WriteError as E;
        self.raft.proposals_pending.dec();
        let outcome = match result {
            Ok(()) => {
                self.raft.proposals_committed.inc();
                "committed"
            }
            Err(e) => {
                let reason = match e {
                    E::NoLeader => "no_leader",
                    E::LeaderUnreachable { .. } => "leader_unreachable",
                    E::Timeout(_) => "timeout",
                    E::NoQuorum(_) => "no_quorum",
                    E::Fatal(_) => "fatal",
                    E::Rejected(_) => "rejected",
                    E::TooLarge { .. } => "too_large",
                    E::Decode(_) => "decode",
                };
                self.raft.proposals_failed.with_label_values(&[reason]).inc();
                "failed"
            }
        };
        self.raft.commit_duration.with_label_values(&[outcome]).observe(took.as_secs_f64());
    }

    fn applied(&self, entries: usize, took: Duration) {
        self.raft.proposals_applied.inc_by(entries as u64);
        self.raft.apply_duration.with_label_values::<&str>(&[]).observe(took.as_secs_f64());
    }

    fn snapshot_built(&self, took: Duration, bytes: u64) {
        self.raft.snapshot_duration.with_label_values::<&str>(&[]).observe(took.as_secs_f64());
        self.raft.snapshot_bytes.set(bytes as i64);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every metric the shipped dashboard and alert rules query is one this
    /// node exports (a renamed metric would silently blank a panel).
    #[test]
    fn the_dashboard_and_alerts_query_only_exported_metrics() {
        let m = Metrics::new();
        let ms = Duration::from_millis(3);
        m.message_accepted();
        m.message_dead_lettered();
        m.message_done("a", "request", Outcome::Ok, ms);
        m.llm_call("p", "m", ms, Ok((3, 4)));
        m.llm_first_token.with_label_values(&["p", "m"]).observe(0.1);
        m.tool_call("s", "t", Outcome::Timeout, ms);
        m.agent_event(AgentEvent::Deployed);
        m.http_duration.with_label_values(&["/x", "GET", "200"]).observe(0.1);
        m.memory_search_duration.with_label_values(&["search"]).observe(0.1);
        m.memory_db_queries.with_label_values(&["store", "unavailable"]).observe(0.1);
        m.raft.log_index.with_label_values(&["last"]).set(1);
        m.raft.replication_lag.with_label_values(&["2"]).set(0);
        m.raft.members.with_label_values(&["voter"]).set(1);
        m.raft.gossip_nodes.with_label_values(&["alive"]).set(1);
        m.raft.proposals_failed.with_label_values(&["timeout"]).inc();
        m.raft.commit_duration.with_label_values(&["committed"]).observe(0.1);
        m.raft.certificate_expiry.with_label_values(&["node"]).set(1);
        m.raft.voters.with_label_values(&["reachable"]).set(1);
        m.raft.data_volume_free.set(1);
        let exported: HashSet<String> = m
            .render()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split(['{', ' ']).next())
            .map(family)
            .collect();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
        for file in ["grafana/caxton-dashboard.json", "prometheus/alerts.yml"] {
            let text = std::fs::read_to_string(root.join(file)).unwrap();
            let used: HashSet<String> = text
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| ["caxton_", "gen_ai_client_", "process_"].iter().any(|p| w.starts_with(p)))
                .map(family)
                .collect();
            assert!(!used.is_empty(), "{file} queries metrics");
            for name in used {
                assert!(exported.contains(&name), "{file} queries `{name}`, which no node exports");
            }
        }
    }

    /// A histogram's series belong to its family.
    fn family(name: &str) -> String {
        ["_bucket", "_count", "_sum"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name).to_owned()
    }

    #[test]
    fn user_chosen_labels_are_capped_at_other() {
        let cap = LabelCap::new(2);
        assert_eq!(cap.of("a"), "a");
        assert_eq!(cap.of("b"), "b");
        assert_eq!(cap.of("c"), OTHER);
        assert_eq!(cap.of("a"), "a", "a known value keeps its label");
    }

    #[test]
    fn two_nodes_in_one_process_have_their_own_registries() {
        let (a, b) = (Metrics::new(), Metrics::new());
        a.message_done("echo", "request", Outcome::Ok, Duration::from_millis(5));
        assert!(a.render().contains(
            "caxton_message_processing_duration_seconds_count{agent=\"echo\",kind=\"request\",outcome=\"ok\"} 1"
        ));
        assert!(!b.render().contains("agent=\"echo\""));
        assert!(a.render().contains("process_resident_memory_bytes"), "process metrics are there");
    }
}
