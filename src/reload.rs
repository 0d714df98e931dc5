//! Reading a running node's config again (SIGHUP, `POST /v1/cluster/reload`):
//! what can change live is applied at once, and every other changed key is
//! named as needing a restart. A config that does not load changes nothing.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::LiveSettings;
use crate::config::{ConfigError, ServerConfig};
use crate::llm::Providers;
use crate::mcp::{McpRegistry, ToolPolicies};

/// Keys (and the tables under them) a reload applies live.
const LIVE: &[&str] = &[
    "tools.policy",
    "tools.remote",
    "a2a",
    "llm",
    "log.level",
    "server.allowed_origins",
    "server.rate_limit_per_second",
    "server.rate_limit_burst",
    "server.request_timeout_ms",
];

#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct ReloadReport {
    /// Changed keys whose new values are in force now.
    pub applied: Vec<String>,
    /// Changed keys that take effect only when the node restarts.
    pub restart_required: Vec<String>,
    /// What was asked but did not take (the log level while RUST_LOG is set).
    pub warnings: Vec<String>,
}

/// Applies reloaded gate settings (the API's gate, `api::gate::Gate::reload`).
pub type GateSettings = Box<dyn Fn(LiveSettings, Option<crate::state::RateLimit>) + Send + Sync>;

/// The live parts of a node a reload reaches, and the config in force.
pub struct Reloader {
    running: Mutex<ServerConfig>,
    gate: GateSettings,
    mcp: Arc<McpRegistry>,
    providers: Providers,
    a2a: Arc<crate::a2a::A2aClient>,
}

impl Reloader {
    pub fn new(
        running: ServerConfig,
        gate: GateSettings,
        mcp: Arc<McpRegistry>,
        providers: Providers,
        a2a: Arc<crate::a2a::A2aClient>,
    ) -> Self {
        Self { running: Mutex::new(running), gate, mcp, providers, a2a }
    }

    /// Re-reads the config from where it was first read and applies it.
    pub fn reload(&self) -> Result<ReloadReport, ConfigError> {
        let mut running = self.running.lock();
        let next = running.reread()?;
        let report = self.apply(&mut running, &next);
        tracing::info!(applied = ?report.applied, restart_required = ?report.restart_required, warnings = ?report.warnings, "configuration reloaded");
        Ok(report)
    }

    fn apply(&self, running: &mut ServerConfig, next: &ServerConfig) -> ReloadReport {
        let mut report = ReloadReport::default();
        for key in changed_keys(running, next) {
            if LIVE.iter().any(|live| under(&key, live)) {
                report.applied.push(key);
            } else {
                report.restart_required.push(key);
            }
        }
        let touched = |prefix: &str| report.applied.iter().any(|k| under(k, prefix));
        if touched("tools.policy") {
            self.mcp.set_policies(ToolPolicies::new(next.tools.policy.clone()));
            running.tools.policy = next.tools.policy.clone();
        }
        if touched("a2a") {
            self.a2a.set_settings(next.a2a.clone());
            running.a2a = next.a2a.clone();
        }
        if touched("tools.remote") {
            self.mcp.set_remotes(&next.tools.remote);
            running.tools.remote = next.tools.remote.clone();
        }
        if touched("llm") {
            // Model files stay where the running node found them (models.dir needs a restart).
            self.providers.reload(&next.llm.providers, &next.llm.default_provider, &running.models.dir);
            running.llm = next.llm.clone();
        }
        if touched("log.level") {
            if let Err(why) = crate::observability::set_log_level(&next.log.level) {
                report.warnings.push(format!("log.level: {why}"));
            }
            running.log.level = next.log.level.clone();
        }
        if touched("server") {
            let (s, n) = (&mut running.server, &next.server);
            s.allowed_origins = n.allowed_origins.clone();
            s.rate_limit_per_second = n.rate_limit_per_second;
            s.rate_limit_burst = n.rate_limit_burst;
            s.request_timeout_ms = n.request_timeout_ms;
            (self.gate)(LiveSettings::of(s), crate::auth::default_rate(s.rate_limit_per_second, s.rate_limit_burst));
        }
        report
    }
}

/// Whether dotted `key` is `prefix` or lies under it.
fn under(key: &str, prefix: &str) -> bool {
    key == prefix || key.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('.'))
}

/// Every leaf key whose value differs between `a` and `b`, dotted, sorted.
fn changed_keys(a: &ServerConfig, b: &ServerConfig) -> Vec<String> {
    let (a, b) = (leaves(a), leaves(b));
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter().filter(|k| a.get(*k) != b.get(*k)).cloned().collect()
}

fn leaves(config: &ServerConfig) -> BTreeMap<String, toml::Value> {
    fn walk(prefix: &str, table: &toml::Table, out: &mut BTreeMap<String, toml::Value>) {
        for (k, v) in table {
            let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
            match v {
                toml::Value::Table(t) => walk(&key, t, out),
                other => {
                    out.insert(key, other.clone());
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    if let Ok(table) = toml::Table::try_from(config) {
        walk("", &table, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caxton_listen(addr: &str) -> crate::config::ListenAddr {
        crate::config::ListenAddr::new(addr.parse().unwrap())
    }

    #[test]
    fn changed_keys_are_the_leaves_that_differ_and_live_ones_are_told_apart() {
        let a = ServerConfig::default();
        let mut b = a.clone();
        b.log.level = "debug".into();
        b.server.listen = caxton_listen("127.0.0.1:9999");
        b.tools.policy.insert("web".into(), Default::default());
        let changed = changed_keys(&a, &b);
        assert!(
            changed.contains(&"log.level".to_owned()) && changed.contains(&"server.listen".to_owned()),
            "{changed:?}"
        );
        assert!(changed.iter().any(|k| k.starts_with("tools.policy.web.")), "{changed:?}");
        assert!(under("tools.policy.web.env", "tools.policy") && under("llm", "llm"));
        assert!(!under("server.allowed_origins_extra", "server.allowed_origins"));
        assert!(changed_keys(&a, &a.clone()).is_empty());
    }
}
