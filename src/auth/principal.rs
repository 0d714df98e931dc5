//! Who is calling, and what they may touch.

use std::sync::Arc;

use crate::state::{Grants, KeyRecord, RateLimit, Scope};

/// How the caller proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// Dev mode: a loopback node without an admin key; no key was sent.
    Dev,
    /// The node's configured admin key (`CAXTON_ADMIN_KEY`).
    Bootstrap,
    /// A key from the replicated state, by id.
    Key { id: String },
    /// Another node relaying one message's answer stream (`auth::relay`).
    Relay,
}

/// The authenticated caller of one request. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The key's name, as audit lines and limits know it (never its token).
    pub name: Arc<str>,
    pub credential: Credential,
    grants: Arc<Grants>,
}

pub const DEV_NAME: &str = "dev";
pub const BOOTSTRAP_NAME: &str = "bootstrap-admin";
pub const RELAY_NAME: &str = "peer-relay";

impl Principal {
    pub fn dev() -> Self {
        Self::unlimited(DEV_NAME, Credential::Dev)
    }

    /// A peer node streaming one message it was given a credential for:
    /// invoke scope, nothing else.
    pub fn relay() -> Self {
        Self {
            name: RELAY_NAME.into(),
            credential: Credential::Relay,
            grants: Arc::new(Grants { scopes: vec![Scope::Invoke], ..Grants::default() }),
        }
    }

    pub fn bootstrap() -> Self {
        Self::unlimited(BOOTSTRAP_NAME, Credential::Bootstrap)
    }

    fn unlimited(name: &str, credential: Credential) -> Self {
        Self {
            name: name.into(),
            credential,
            grants: Arc::new(Grants { scopes: vec![Scope::Admin], ..Grants::default() }),
        }
    }

    pub fn of_key(key: &KeyRecord) -> Self {
        Self {
            name: key.name.as_str().into(),
            credential: Credential::Key { id: key.id.clone() },
            grants: Arc::new(key.grants.clone()),
        }
    }

    /// `admin` holds every scope.
    pub fn has(&self, scope: Scope) -> bool {
        self.grants.scopes.iter().any(|s| *s == scope || *s == Scope::Admin)
    }

    /// The key's own budget, if it has one.
    pub fn rate(&self) -> Option<RateLimit> {
        self.grants.rate
    }

    pub fn grants(&self) -> &Grants {
        &self.grants
    }

    /// Limited to some agents or workspaces.
    pub fn is_limited(&self) -> bool {
        !self.grants.agents.is_empty() || !self.grants.workspaces.is_empty()
    }

    /// Whether the key's agent patterns admit `name` (case-insensitively,
    /// as agent names are).
    pub fn admits_agent_name(&self, name: &str) -> bool {
        self.grants.agents.is_empty() || self.grants.agents.iter().any(|p| glob_match(p, name))
    }

    pub fn admits_workspace(&self, workspace: &str) -> bool {
        self.grants.workspaces.is_empty() || self.grants.workspaces.iter().any(|w| w == workspace)
    }

    /// Whether this caller may see (and message) an agent living in `workspace`.
    pub fn sees_agent(&self, name: &str, workspace: &str) -> bool {
        self.admits_agent_name(name) && self.admits_workspace(workspace)
    }
}

/// `*` matches any run of characters; everything else matches itself,
/// ignoring ASCII case.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) =
        (pattern.to_ascii_lowercase().chars().collect(), text.to_ascii_lowercase().chars().collect());
    // Iterative matcher with one backtrack point: linear in practice, no recursion.
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_like_shell_globs_without_case() {
        assert!(glob_match("support-*", "support-agent"));
        assert!(glob_match("support-*", "Support-"));
        assert!(!glob_match("support-*", "billing-agent"));
        assert!(glob_match("*-agent", "billing-agent"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
        assert!(glob_match("*", ""));
        assert!(glob_match("exact", "EXACT"));
        assert!(!glob_match("exact", "exactly"));
    }

    #[test]
    fn admin_holds_every_scope_and_limits_apply_to_agents_and_workspaces() {
        assert!(Scope::ALL.iter().all(|s| Principal::bootstrap().has(*s)));
        let key = KeyRecord {
            id: "0123456789ab".into(),
            name: "support".into(),
            hash: String::new(),
            grants: Grants {
                scopes: vec![Scope::Invoke],
                agents: vec!["support-*".into()],
                workspaces: vec!["support".into()],
                rate: None,
            },
            expires_at_ms: None,
            created_by: "t".into(),
            created_at_ms: 0,
            revoked_at_ms: None,
        };
        let p = Principal::of_key(&key);
        assert!(p.has(Scope::Invoke) && !p.has(Scope::Read) && !p.has(Scope::Admin));
        assert!(p.sees_agent("support-1", "support"));
        assert!(!p.sees_agent("billing-agent", "support"));
        assert!(!p.sees_agent("support-1", "default"));
    }
}
