//! Remote services the operator lets a node call: MCP servers reached over
//! Streamable HTTP (`[tools.remote.NAME]`) and A2A agents
//! (`[a2a]`: the hosts agents may call, and what to present to them).
//! Credentials live here, never in agent files.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// An MCP server over Streamable HTTP whose tools agents may use.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteMcpServer {
    /// Its MCP endpoint, e.g. `https://tools.example.com/mcp`.
    pub url: String,
    /// The environment variable holding a bearer token for it (empty: none).
    pub bearer_token_env: String,
    /// Headers sent with every request (not secrets: use the token).
    pub headers: BTreeMap<String, String>,
    /// The tools of it agents may see (empty: all it lists).
    pub tools: Vec<String>,
    /// Per request (a tool call, a listing).
    pub timeout_ms: u64,
    /// The largest answer read from it.
    pub max_output_bytes: u64,
}

impl Default for RemoteMcpServer {
    fn default() -> Self {
        Self {
            url: String::new(),
            bearer_token_env: String::new(),
            headers: BTreeMap::new(),
            tools: Vec::new(),
            timeout_ms: 30_000,
            max_output_bytes: 1 << 20,
        }
    }
}

impl RemoteMcpServer {
    /// Checks one server; errors name the key.
    pub fn validate(&self, name: &str) -> Result<(), (String, String, String)> {
        let key = |k: &str| format!("tools.remote.{name}.{k}");
        if !(self.url.starts_with("http://") || self.url.starts_with("https://"))
            || reqwest::Url::parse(&self.url).is_err()
        {
            return Err((key("url"), self.url.clone(), "must be an http(s) URL".into()));
        }
        if self.timeout_ms < 10 {
            return Err((key("timeout_ms"), self.timeout_ms.to_string(), "must be at least 10".into()));
        }
        if self.max_output_bytes < 1024 {
            return Err((key("max_output_bytes"), self.max_output_bytes.to_string(), "must be at least 1024".into()));
        }
        Ok(())
    }
}

/// What agents may call over A2A.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct A2aSection {
    /// Hosts (`host` or `host:port`) whose agents an agent's `[[a2a]]`
    /// entries may name; empty: none.
    pub allowed_hosts: Vec<String>,
    /// Per call to a remote agent (its card, then its answer).
    pub timeout_ms: u64,
    /// The largest answer read from a remote agent.
    pub max_response_bytes: u64,
    /// Credentials per host (`host` or `host:port`, as in `allowed_hosts`).
    pub credentials: BTreeMap<String, A2aCredential>,
}

impl Default for A2aSection {
    fn default() -> Self {
        Self {
            allowed_hosts: Vec::new(),
            timeout_ms: 60_000,
            max_response_bytes: 1 << 20,
            credentials: BTreeMap::new(),
        }
    }
}

/// What a node presents to one remote A2A host.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct A2aCredential {
    /// The environment variable holding a bearer token.
    pub bearer_token_env: String,
    /// Other headers sent to it.
    pub headers: BTreeMap<String, String>,
}

impl A2aSection {
    /// Whether `url`'s host may be called: listed as `host` (any port) or
    /// as `host:port`.
    pub fn allows(&self, url: &reqwest::Url) -> bool {
        let Some(host) = url.host_str() else { return false };
        let with_port = url.port_or_known_default().map(|p| format!("{host}:{p}"));
        self.allowed_hosts.iter().any(|a| a.eq_ignore_ascii_case(host) || Some(a.to_ascii_lowercase()) == with_port)
    }

    /// The credential for `url`'s host, if one is configured.
    pub fn credential(&self, url: &reqwest::Url) -> Option<&A2aCredential> {
        let host = url.host_str()?;
        let with_port = url.port_or_known_default().map(|p| format!("{host}:{p}"));
        with_port.and_then(|h| self.credentials.get(&h)).or_else(|| self.credentials.get(host))
    }

    pub fn validate(&self) -> Result<(), (String, String, String)> {
        if self.timeout_ms < 10 {
            return Err(("a2a.timeout_ms".into(), self.timeout_ms.to_string(), "must be at least 10".into()));
        }
        if self.max_response_bytes < 1024 {
            let v = self.max_response_bytes.to_string();
            return Err(("a2a.max_response_bytes".into(), v, "must be at least 1024".into()));
        }
        Ok(())
    }
}
