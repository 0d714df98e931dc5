//! Memory data: what is stored, who may see it, what comes back.

use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::ToSchema;

pub use crate::config::MemoryScope;

/// The default workspace of agents and API callers that name none.
pub const DEFAULT_WORKSPACE: &str = "default";

/// Where an entity lives: a scope and, for agent-only and workspace
/// scopes, its owner (the agent's case-folded name, or the workspace name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Place {
    pub scope: MemoryScope,
    pub owner: String,
}

impl Place {
    pub fn global() -> Self {
        Self { scope: MemoryScope::Global, owner: String::new() }
    }
    pub fn agent(name: &str) -> Self {
        Self { scope: MemoryScope::AgentOnly, owner: name.to_ascii_lowercase() }
    }
    pub fn workspace(name: &str) -> Self {
        Self { scope: MemoryScope::Workspace, owner: name.to_owned() }
    }
    pub fn scope_str(&self) -> &'static str {
        scope_str(self.scope)
    }
}

pub fn scope_str(s: MemoryScope) -> &'static str {
    match s {
        MemoryScope::AgentOnly => "agent-only",
        MemoryScope::Workspace => "workspace",
        MemoryScope::Global => "global",
    }
}

pub fn parse_scope(s: &str) -> Option<MemoryScope> {
    match s {
        "agent-only" => Some(MemoryScope::AgentOnly),
        "workspace" => Some(MemoryScope::Workspace),
        "global" => Some(MemoryScope::Global),
        _ => None,
    }
}

/// Who is reading. Isolation is enforced against this in every query: an
/// agent-only entity is visible only to its agent, a workspace entity only
/// within its workspace.
#[derive(Debug, Clone, Default)]
pub struct Viewer {
    pub agent: Option<String>,
    pub workspace: Option<String>,
}

impl Viewer {
    pub fn can_see(&self, place: &Place) -> bool {
        match place.scope {
            MemoryScope::Global => true,
            MemoryScope::Workspace => self.workspace.as_deref() == Some(place.owner.as_str()),
            MemoryScope::AgentOnly => self.agent.as_ref().is_some_and(|a| a.to_ascii_lowercase() == place.owner),
        }
    }
}

/// A 384-dim embedding; on the wire as base64 of little-endian f32s (a
/// third of the size of a JSON number array, and exact).
#[derive(Debug, Clone, PartialEq)]
pub struct Vector(pub Vec<f32>);

impl Vector {
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.iter().flat_map(|f| f.to_le_bytes()).collect()
    }
    pub fn from_bytes(b: &[u8]) -> Self {
        Self(b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }
}

impl Serialize for Vector {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(self.to_bytes()))
    }
}

impl<'de> Deserialize<'de> for Vector {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(s).map_err(serde::de::Error::custom)?;
        Ok(Self::from_bytes(&bytes))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewObservation {
    pub text: String,
    pub embedding: Vector,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Observation {
    pub text: String,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Entity {
    pub name: String,
    pub entity_type: String,
    pub scope: MemoryScope,
    /// Agent (agent-only) or workspace (workspace); empty for global.
    pub owner: String,
    pub observations: Vec<Observation>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Relation {
    pub from: String,
    pub to: String,
    pub relation_type: String,
    pub scope: MemoryScope,
    pub owner: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Related {
    pub relation_type: String,
    /// `out`: this entity → name; `in`: name → this entity.
    pub direction: &'static str,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SearchHit {
    pub name: String,
    pub entity_type: String,
    pub score: f32,
    /// The best-matching observation of the entity.
    pub observation: String,
    pub scope: MemoryScope,
    pub owner: String,
    /// Entities one relation away, to enrich the hit.
    pub related: Vec<Related>,
}
