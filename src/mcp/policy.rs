//! What the operator grants tool servers. A manifest only *asks* (for
//! environment variables, hosts, private networks, `/data`, limits); the
//! node's `[tools.policy.NAME]` (or `[tools.policy.default]`) decides. A
//! deploy asking for more is refused naming each excess; and every call runs
//! with the intersection of the two, so a server deployed before a policy was
//! tightened (or through another node) still gets no more than this node's
//! policy allows.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::http::HttpPolicy;
use super::manifest::Manifest;
use super::sandbox::{DataDir, Limits, Sandbox};
use crate::config::tool_policy::{ToolPolicy, DEFAULT_POLICY, RESERVED_ENV_PREFIX};
use crate::state::ToolDeployer;

/// Every configured policy, by tool-server name.
#[derive(Debug, Clone, Default)]
pub struct ToolPolicies {
    by_server: BTreeMap<String, ToolPolicy>,
}

/// A granted host pattern covers a requested one as the HTTP allowlist
/// itself matches hosts, plus `*` for any host.
fn host_covered(host: &str, granted: &[String]) -> bool {
    granted.iter().any(|g| g == "*") || super::http::host_allowed(host, granted)
}

impl ToolPolicies {
    pub fn new(by_server: BTreeMap<String, ToolPolicy>) -> Self {
        Self { by_server }
    }

    /// The policy for server `name` deployed `by`, and the config key it
    /// comes from: its own, if the operator grants it to that deployer.
    pub fn for_server(&self, name: &str, by: &ToolDeployer) -> (ToolPolicy, String) {
        let granted = |p: &ToolPolicy| match &by.key {
            Some(key) if p.deployers.contains(key) => true,
            _ => p.deployers.is_empty() && by.admin,
        };
        match self.by_server.get(name).filter(|p| name != DEFAULT_POLICY && granted(p)) {
            Some(p) => (p.clone(), format!("tools.policy.{name}")),
            None => (
                self.by_server.get(DEFAULT_POLICY).cloned().unwrap_or_default(),
                format!("tools.policy.{DEFAULT_POLICY}"),
            ),
        }
    }

    /// What `manifest` asks for beyond its policy, one line per excess.
    pub fn excesses(&self, manifest: &Manifest, by: &ToolDeployer) -> Vec<String> {
        let (p, key) = self.for_server(&manifest.name, by);
        let mut out = Vec::new();
        for var in &manifest.sandbox.env {
            if var.starts_with(RESERVED_ENV_PREFIX) {
                out.push(format!("sandbox.env: `{var}` is the node's own setting and is never granted to a tool"));
            } else if !p.env.contains(var) {
                out.push(format!("sandbox.env: `{var}` is not granted ({key}.env)"));
            }
        }
        for host in &manifest.sandbox.http_allow {
            if !host_covered(host, &p.http_hosts) {
                out.push(format!("sandbox.http_allow: `{host}` is not granted ({key}.http_hosts)"));
            }
        }
        if manifest.sandbox.http_allow_private && !p.private_network {
            out.push(format!("sandbox.http_allow_private: private networks are not granted ({key}.private_network)"));
        }
        if manifest.sandbox.data_dir && !p.data_dir {
            out.push(format!("sandbox.data_dir: a /data directory is not granted ({key}.data_dir)"));
        }
        let l = &manifest.limits;
        for (field, asked, ceiling) in [
            ("max_memory_mb", l.max_memory_mb, p.max_memory_mb),
            ("fuel", l.fuel, p.max_fuel),
            ("timeout_ms", l.timeout_ms, p.max_timeout_ms),
            ("max_input_kb", l.max_input_kb, p.max_input_kb),
            ("max_output_kb", l.max_output_kb, p.max_output_kb),
        ] {
            if asked > ceiling {
                let ceiling_key =
                    if field == "fuel" || field == "timeout_ms" { format!("max_{field}") } else { field.to_owned() };
                out.push(format!("limits.{field}: {asked} is above the ceiling {ceiling} ({key}.{ceiling_key})"));
            }
        }
        out
    }

    /// The limits a call runs with: the manifest's, capped by the policy.
    pub fn limits(&self, manifest: &Manifest, by: &ToolDeployer) -> Limits {
        let (p, _) = self.for_server(&manifest.name, by);
        let asked = manifest.limits();
        Limits {
            max_memory_bytes: asked.max_memory_bytes.min((p.max_memory_mb as usize) << 20),
            fuel: asked.fuel.min(p.max_fuel),
            timeout: asked.timeout.min(Duration::from_millis(p.max_timeout_ms)),
            max_input_bytes: asked.max_input_bytes.min((p.max_input_kb as usize) << 10),
            max_output_bytes: asked.max_output_bytes.min((p.max_output_kb as usize) << 10),
        }
    }

    /// The sandbox a call runs in: what the manifest asks for and the
    /// policy grants, nothing else. `data_root` holds the `/data` dirs.
    pub fn sandbox(
        &self,
        manifest: &Manifest,
        by: &ToolDeployer,
        data_root: &std::path::Path,
    ) -> (Sandbox, Option<PathBuf>) {
        let (p, _) = self.for_server(&manifest.name, by);
        let env = manifest
            .sandbox
            .env
            .iter()
            .filter(|k| !k.starts_with(RESERVED_ENV_PREFIX) && p.env.contains(k))
            .filter_map(|k| std::env::var(k).ok().map(|v| (k.clone(), v)))
            .collect();
        let allow =
            manifest.sandbox.http_allow.iter().filter(|h| host_covered(h, &p.http_hosts)).cloned().collect::<Vec<_>>();
        let http = HttpPolicy { allow, allow_private: manifest.sandbox.http_allow_private && p.private_network };
        let data = (manifest.sandbox.data_dir && p.data_dir).then(|| data_root.join(&manifest.name));
        let preopen = data.clone().map(|path| DataDir { path, quota_bytes: p.data_quota_mb.saturating_mul(1 << 20) });
        (Sandbox { preopen, env, http }, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(extra: &str) -> Manifest {
        Manifest::parse(&format!("name = \"probe\"\nversion = \"1.0.0\"\n{extra}")).unwrap()
    }

    #[test]
    fn a_manifest_gets_only_what_the_policy_grants() {
        let hostile = manifest(
            "[limits]\nmax_memory_mb = 4096\ntimeout_ms = 600000\n[sandbox]\nenv = [\"CAXTON_CLUSTER_SECRET\", \"OPENAI_API_KEY\", \"LANG\"]\nhttp_allow = [\"10.0.0.1\", \"api.example.com\"]\nhttp_allow_private = true\n",
        );
        let mut granted =
            ToolPolicy { env: vec!["LANG".into()], http_hosts: vec!["*.example.com".into()], ..ToolPolicy::default() };
        let policies = ToolPolicies::new(BTreeMap::from([(DEFAULT_POLICY.to_owned(), granted.clone())]));
        let operator = ToolDeployer::operator();
        let excesses = policies.excesses(&hostile, &operator).join("\n");
        for expected in [
            "`CAXTON_CLUSTER_SECRET` is the node's own setting",
            "`OPENAI_API_KEY` is not granted (tools.policy.default.env)",
            "`10.0.0.1` is not granted (tools.policy.default.http_hosts)",
            "private networks are not granted",
            "limits.max_memory_mb: 4096 is above the ceiling 256",
            "limits.timeout_ms: 600000 is above the ceiling 30000 (tools.policy.default.max_timeout_ms)",
        ] {
            assert!(excesses.contains(expected), "missing `{expected}` in:\n{excesses}");
        }
        assert!(!excesses.contains("LANG") && !excesses.contains("api.example.com"), "{excesses}");
        // At call time, the intersection: even a policy naming a CAXTON_ variable gives nothing of it.
        granted.env.push("CAXTON_CLUSTER_SECRET".into());
        let policies = ToolPolicies::new(BTreeMap::from([("probe".to_owned(), granted)]));
        let (sandbox, _) = policies.sandbox(&hostile, &operator, std::path::Path::new("/tmp"));
        assert!(sandbox.env.iter().all(|(k, _)| k != "CAXTON_CLUSTER_SECRET"));
        assert_eq!(sandbox.http.allow, ["api.example.com"]);
        assert!(!sandbox.http.allow_private);
        let limits = policies.limits(&hostile, &operator);
        assert_eq!((limits.max_memory_bytes >> 20, limits.timeout.as_millis()), (256, 30_000));
    }

    #[test]
    fn the_default_policy_lets_the_examples_in() {
        let policies = ToolPolicies::default();
        let http = manifest("[sandbox]\nhttp_allow = [\"example.com\", \"*.example.com\"]\ndata_dir = true\n");
        assert_eq!(policies.excesses(&http, &ToolDeployer::operator()), Vec::<String>::new());
    }

    #[test]
    fn a_servers_grants_follow_its_name_and_the_deployer_the_operator_chose() {
        let trusted = ToolPolicy { env: vec!["GITHUB_TOKEN".into()], private_network: true, ..ToolPolicy::default() };
        let for_ci = ToolPolicy { deployers: vec!["ci".into()], ..trusted.clone() };
        let policies =
            ToolPolicies::new(BTreeMap::from([("http_client".to_owned(), trusted), ("builder".to_owned(), for_ci)]));
        let key = |name: &str, admin: bool| ToolDeployer { key: Some(name.into()), admin };
        let probe = |name: &str, by: &ToolDeployer| {
            let m = Manifest::parse(&format!(
                "name = \"{name}\"\nversion = \"1\"\n[sandbox]\nenv = [\"GITHUB_TOKEN\"]\nhttp_allow_private = true\n"
            ))
            .unwrap();
            (policies.excesses(&m, by), policies.sandbox(&m, by, std::path::Path::new("/tmp")).0.http.allow_private)
        };
        // The operator (tools directory or an admin key) gets the named grants.
        assert_eq!(probe("http_client", &ToolDeployer::operator()), (vec![], true));
        assert_eq!(probe("http_client", &key("ops", true)), (vec![], true));
        // A deploy key taking the name gets the default policy, and is told so.
        let (excesses, private) = probe("http_client", &key("team-b", false));
        assert!(!private);
        assert!(
            excesses.iter().any(|e| e.contains("`GITHUB_TOKEN` is not granted (tools.policy.default.env)")),
            "{excesses:?}"
        );
        // A policy naming its deployers grants them only.
        assert_eq!(probe("builder", &key("ci", false)), (vec![], true));
        assert!(!probe("builder", &key("ops", true)).0.is_empty(), "not even an admin key it does not name");
    }
}
