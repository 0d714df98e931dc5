//! What a key limited to some agents or workspaces may see. The gate has
//! already checked the route's scope; these checks look at the records a
//! request names. A record outside the key's grant answers exactly like a
//! missing one (404), so a key cannot learn what exists beyond it; a write
//! naming something outside it is refused (403).
//!
//! Unlimited keys skip every lookup here.

use crate::auth::Principal;
use crate::config::{workspace_of, AgentName};
use crate::state::{AgentRecord, Message, Place, Queries, Viewer};

use super::problem::{Problem, ProblemType};

pub fn outside(detail: impl Into<String>) -> Problem {
    Problem::of(ProblemType::OutsideKeyGrant, detail)
}

pub fn sees_record(caller: &Principal, record: &AgentRecord) -> bool {
    caller.sees_agent(&record.name, record.spec.workspace())
}

/// Every agent the caller sees.
pub async fn visible_agents(caller: &Principal, queries: &Queries) -> Result<Vec<AgentRecord>, Problem> {
    Ok(queries.all_agents().await?.into_iter().filter(|a| sees_record(caller, a)).collect())
}

/// Whether the caller sees the agent called `name` (looked up only for a
/// key limited by workspace; a name that is no agent is not seen).
pub async fn sees_agent_named(caller: &Principal, queries: &Queries, name: &str) -> Result<bool, Problem> {
    if !caller.is_limited() {
        return Ok(true);
    }
    let (name, pinned) = crate::messaging::split_revision(name);
    if !caller.admits_agent_name(name) {
        return Ok(false);
    }
    if caller.grants().workspaces.is_empty() {
        return Ok(true);
    }
    let Ok(name) = AgentName::parse(name) else { return Ok(false) };
    if !queries.agent(&name).await?.is_some_and(|r| sees_record(caller, &r)) {
        return Ok(false);
    }
    // `NAME@N` runs revision N, with N's workspace and memory.
    match pinned {
        Some(revision) => sees_revision(caller, queries, &name, revision).await,
        None => Ok(true),
    }
}

/// Whether the caller sees revision `revision` of `name` (its workspace
/// may differ from the serving one's). A revision that does not exist is
/// left to the caller's own lookup to report.
pub async fn sees_revision(
    caller: &Principal,
    queries: &Queries,
    name: &AgentName,
    revision: u64,
) -> Result<bool, Problem> {
    if !caller.is_limited() {
        return Ok(true);
    }
    Ok(match queries.revision_spec(name, revision).await? {
        Some(spec) => caller.sees_agent(name.as_str(), spec.workspace()),
        None => true,
    })
}

/// The tools a limited key may call: those the agents it sees declare
/// (entries name a tool, a server, or `server/tool`). `None`: any tool.
pub async fn tools_granted(caller: &Principal, queries: &Queries) -> Result<Option<Vec<String>>, Problem> {
    if !caller.is_limited() {
        return Ok(None);
    }
    let mut granted: Vec<String> = Vec::new();
    for agent in visible_agents(caller, queries).await? {
        granted.extend(agent.spec.tools.iter().cloned());
    }
    granted.sort();
    granted.dedup();
    Ok(Some(granted))
}

/// A message is seen by a key that sees either end of it.
pub async fn sees_message(caller: &Principal, queries: &Queries, m: &Message) -> Result<bool, Problem> {
    Ok(sees_agent_named(caller, queries, &m.receiver).await? || sees_agent_named(caller, queries, &m.sender).await?)
}

/// The agent a definition names and the workspace it would live in, read
/// loosely (a malformed definition is the registry's to report).
pub fn definition_target(toml_or_json: &serde_json::Value) -> Option<(String, String)> {
    let name = toml_or_json.get("name")?.as_str()?.to_owned();
    let workspace = toml_or_json.get("parameters").and_then(|p| p.as_object()).map(workspace_of);
    Some((name, workspace.unwrap_or(crate::memory::types::DEFAULT_WORKSPACE).to_owned()))
}

/// A limited key uses memory only where it may act: its agents' own
/// memory, its workspaces, and global memory for reading only.
pub async fn check_place(caller: &Principal, queries: &Queries, place: &Place, write: bool) -> Result<(), Problem> {
    if !caller.is_limited() {
        return Ok(());
    }
    use crate::state::MemoryScope as S;
    let allowed = match place.scope {
        S::AgentOnly => sees_agent_named(caller, queries, &place.owner).await?,
        S::Workspace => caller.admits_workspace(&place.owner),
        S::Global => !write,
    };
    if allowed {
        Ok(())
    } else {
        Err(outside(format!(
            "the API key `{}` may not use {} memory `{}`",
            caller.name,
            crate::state::scope_str(place.scope),
            place.owner
        )))
    }
}

/// The viewer a read acts as, checked against the key: `?agent=` and
/// `?workspace=` are claims, honoured only when the key admits them.
pub async fn check_viewer(caller: &Principal, queries: &Queries, viewer: &Viewer) -> Result<(), Problem> {
    if !caller.is_limited() {
        return Ok(());
    }
    if let Some(agent) = &viewer.agent {
        if !sees_agent_named(caller, queries, agent).await? {
            return Err(outside(format!("the API key `{}` may not act as agent `{agent}`", caller.name)));
        }
    }
    if let Some(ws) = &viewer.workspace {
        if !caller.admits_workspace(ws) {
            return Err(outside(format!("the API key `{}` may not read workspace `{ws}`", caller.name)));
        }
    }
    Ok(())
}
