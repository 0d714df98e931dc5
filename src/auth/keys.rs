//! Creating, listing and revoking keys: validation at the edge, then one
//! replicated command. The token is minted here and returned once; only
//! its hash is proposed.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::principal::Principal;
use super::token;
use crate::problems::{Classified, ProblemType};
use crate::state::{CreateKey, Grants, KeyRecord, Queries, RateLimit, RevokeKey, Scope, Store};
use crate::time::now_ms;

/// A key to create.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// Unique among live keys: letters, digits, `.`, `_`, `-`.
    pub name: String,
    /// admin, deploy, invoke, memory:read, memory:write, read.
    #[schema(value_type = Vec<String>)]
    pub scopes: Vec<Scope>,
    /// Agent-name patterns (`support-*`); empty = every agent.
    #[serde(default)]
    pub agents: Vec<String>,
    /// Workspaces; empty = every workspace.
    #[serde(default)]
    pub workspaces: Vec<String>,
    /// Lifetime from now: `30d`, `12h`, `90s`; absent = never expires.
    pub expires_in: Option<String>,
    /// Requests per second (with `burst`); absent = the server default.
    pub rate_per_second: Option<f64>,
    pub burst: Option<u32>,
}

/// A key as listed: everything but its token, which is never stored.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct KeyView {
    pub name: String,
    /// The public id the token starts with (`cxk_<id>_…`).
    pub id: String,
    #[schema(value_type = Vec<String>)]
    pub scopes: Vec<Scope>,
    pub agents: Vec<String>,
    pub workspaces: Vec<String>,
    pub rate_per_second: Option<f64>,
    pub burst: Option<u32>,
    pub expires_at_ms: Option<i64>,
    pub created_at_ms: i64,
    pub created_by: String,
    pub revoked_at_ms: Option<i64>,
    /// active | expired | revoked
    pub state: &'static str,
}

/// A created key: the only answer that carries the token.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub key: KeyView,
    /// The bearer token. Shown once: store it now.
    pub token: String,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("{0}")]
    Exists(String),
    #[error("no live key is named `{0}`")]
    NotFound(String),
    #[error("{0}")]
    Wider(String),
    #[error(transparent)]
    Write(#[from] caxton_cluster::WriteError),
    #[error(transparent)]
    Read(#[from] caxton_cluster::ReadError),
}

impl Classified for KeyError {
    fn problem_type(&self) -> ProblemType {
        match self {
            KeyError::Invalid { .. } => ProblemType::InvalidKey,
            KeyError::Exists(_) => ProblemType::KeyExists,
            KeyError::NotFound(_) => ProblemType::KeyNotFound,
            KeyError::Wider(_) => ProblemType::OutsideKeyGrant,
            KeyError::Write(e) => e.problem_type(),
            KeyError::Read(e) => e.problem_type(),
        }
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> KeyError {
    KeyError::Invalid { field, reason: reason.into() }
}

fn plain_name(s: &str, extra: &[char]) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c) || extra.contains(&c))
}

impl NewKey {
    fn grants(&self) -> Result<Grants, KeyError> {
        if !plain_name(&self.name, &[]) {
            return Err(invalid("name", "1 to 64 letters, digits, `.`, `_` or `-`"));
        }
        // Audit lines, budgets and stream caps know callers by name.
        if [super::DEV_NAME, super::BOOTSTRAP_NAME, super::principal::RELAY_NAME].contains(&self.name.as_str()) {
            return Err(invalid("name", format!("`{}` is reserved", self.name)));
        }
        if self.scopes.is_empty() {
            return Err(invalid("scopes", "name at least one scope"));
        }
        if let Some(p) = self.agents.iter().find(|p| !plain_name(p, &['*'])) {
            return Err(invalid("agents", format!("`{p}` is not an agent-name pattern (letters, digits, `._-`, `*`)")));
        }
        if let Some(w) = self.workspaces.iter().find(|w| !plain_name(w, &[])) {
            return Err(invalid("workspaces", format!("`{w}` is not a workspace name")));
        }
        let rate = match (self.rate_per_second, self.burst) {
            (None, None) => None,
            (Some(r), b) if (0.001..=1e9).contains(&r) => {
                Some(RateLimit { per_second: r, burst: b.unwrap_or((r.ceil() as u32).max(1)).max(1) })
            }
            (Some(r), _) => {
                return Err(invalid("rate_per_second", format!("{r}: expected 0.001 to 1e9 requests per second")))
            }
            (None, Some(_)) => return Err(invalid("burst", "needs rate_per_second")),
        };
        let mut scopes = self.scopes.clone();
        scopes.sort();
        scopes.dedup();
        Ok(Grants { scopes, agents: self.agents.clone(), workspaces: self.workspaces.clone(), rate })
    }
}

pub fn view(k: &KeyRecord, now_ms: i64) -> KeyView {
    let state = match (k.revoked_at_ms, k.expires_at_ms) {
        (Some(_), _) => "revoked",
        (None, Some(at)) if at <= now_ms => "expired",
        _ => "active",
    };
    KeyView {
        name: k.name.clone(),
        id: k.id.clone(),
        scopes: k.grants.scopes.clone(),
        agents: k.grants.agents.clone(),
        workspaces: k.grants.workspaces.clone(),
        rate_per_second: k.grants.rate.map(|r| r.per_second),
        burst: k.grants.rate.map(|r| r.burst),
        expires_at_ms: k.expires_at_ms,
        created_at_ms: k.created_at_ms,
        created_by: k.created_by.clone(),
        revoked_at_ms: k.revoked_at_ms,
        state,
    }
}

/// What a new key's `grants` would allow beyond its creator's, if anything:
/// a key limited to agents or workspaces (admin or not) mints only keys
/// limited at least as narrowly, with no scope it lacks.
fn wider_than(grants: &Grants, by: &Principal) -> Option<String> {
    let mine = by.grants();
    if let Some(scope) = grants.scopes.iter().find(|s| !by.has(**s)) {
        return Some(format!("it lacks the `{scope}` scope"));
    }
    if !mine.agents.is_empty() {
        // Each new pattern must be one of the creator's, or a name it admits.
        let outside =
            grants.agents.iter().find(|p| !mine.agents.contains(p) && (p.contains('*') || !by.admits_agent_name(p)));
        if grants.agents.is_empty() {
            return Some(format!("it is limited to agents {:?}: name some of them in `agents`", mine.agents));
        }
        if let Some(p) = outside {
            return Some(format!("agents `{p}` is outside its own {:?}", mine.agents));
        }
    }
    if !mine.workspaces.is_empty() {
        if grants.workspaces.is_empty() {
            return Some(format!(
                "it is limited to workspaces {:?}: name some of them in `workspaces`",
                mine.workspaces
            ));
        }
        if let Some(w) = grants.workspaces.iter().find(|w| !mine.workspaces.contains(w)) {
            return Some(format!("workspace `{w}` is outside its own {:?}", mine.workspaces));
        }
    }
    None
}

pub async fn create(store: &Store, request: NewKey, by: &Principal) -> Result<CreatedKey, KeyError> {
    let grants = request.grants()?;
    if let Some(why) = wider_than(&grants, by) {
        return Err(KeyError::Wider(format!("the API key `{}` cannot create a key wider than itself: {why}", by.name)));
    }
    let at_ms = now_ms();
    let expires_at_ms = match &request.expires_in {
        None => None,
        Some(text) => {
            let d = crate::config::duration::parse(text).map_err(|e| invalid("expires_in", e))?;
            if d.is_zero() {
                return Err(invalid("expires_in", "must be longer than 0"));
            }
            Some(at_ms.saturating_add(d.as_millis().min(i64::MAX as u128) as i64))
        }
    };
    let minted = token::mint();
    let command = CreateKey {
        id: minted.id,
        name: request.name,
        hash: minted.hash,
        grants,
        expires_at_ms,
        created_by: by.name.to_string(),
        at_ms,
    };
    let record = command.record();
    store.propose(command).await?.map_err(KeyError::Exists)?;
    tracing::info!(target: "caxton::audit", key = %by.name, created = %record.name, id = %record.id, "key created");
    Ok(CreatedKey { key: view(&record, at_ms), token: minted.token })
}

pub async fn list(queries: &Queries) -> Result<Vec<KeyView>, KeyError> {
    let now = now_ms();
    Ok(queries.keys().await?.iter().map(|k| view(k, now)).collect())
}

pub async fn get(queries: &Queries, name: &str) -> Result<KeyView, KeyError> {
    let key = queries.live_key(name).await?.ok_or_else(|| KeyError::NotFound(name.into()))?;
    Ok(view(&key, now_ms()))
}

pub async fn revoke(store: &Store, name: &str, by: &Principal) -> Result<(), KeyError> {
    if !store.propose(RevokeKey { name: name.into(), at_ms: now_ms() }).await? {
        return Err(KeyError::NotFound(name.into()));
    }
    tracing::info!(target: "caxton::audit", key = %by.name, revoked = %name, "key revoked");
    Ok(())
}
