//! Agent cards: one per agent (its skills are its capabilities) and the
//! node's router card (its skills are every capability it can route to).

use serde_json::{json, Value};

use super::wire::VERSION;
use crate::state::AgentRecord;

/// Where an agent's A2A interface lives, under the node's base URL.
pub fn agent_path(name: &str) -> String {
    format!("/a2a/agents/{name}")
}

/// The router's interface: messages sent there go to a capability.
pub const ROUTER_PATH: &str = "/a2a";

/// What a card says about calling its interface.
pub struct CardContext<'a> {
    /// `scheme://host[:port]` as the caller reached this node.
    pub base_url: &'a str,
    /// Whether calls need a key (false on a dev node).
    pub keys_required: bool,
}

fn interfaces(url: &str) -> Value {
    json!([
        {"url": url, "protocolBinding": "JSONRPC", "protocolVersion": VERSION},
        {"url": url, "protocolBinding": "HTTP+JSON", "protocolVersion": VERSION},
    ])
}

fn skill(capability: &str, description: String) -> Value {
    json!({"id": capability, "name": capability, "description": description, "tags": [capability]})
}

fn card(
    ctx: &CardContext<'_>,
    name: &str,
    description: String,
    version: &str,
    url: String,
    skills: Vec<Value>,
) -> Value {
    let mut card = json!({
        "name": name,
        "description": description,
        "version": version,
        "supportedInterfaces": interfaces(&url),
        "provider": {"organization": "Caxton", "url": ctx.base_url},
        "capabilities": {"streaming": true, "pushNotifications": false, "extendedAgentCard": false},
        "defaultInputModes": ["text/plain", "application/json"],
        "defaultOutputModes": ["text/plain"],
        "skills": skills,
    });
    if ctx.keys_required {
        card["securitySchemes"] = json!({
            "caxtonKey": {"httpAuthSecurityScheme": {
                "scheme": "Bearer",
                "description": "a Caxton API key with the invoke scope (caxton key create --scope invoke)"
            }}
        });
        card["securityRequirements"] = json!([{"schemes": {"caxtonKey": {"list": []}}}]);
    }
    card
}

/// One agent's card.
pub fn agent_card(ctx: &CardContext<'_>, agent: &AgentRecord) -> Value {
    let spec = &agent.spec;
    let description = spec.description.clone().unwrap_or_else(|| format!("The Caxton agent {}", spec.name));
    let skills = if spec.capabilities.is_empty() {
        // A card needs a skill: an agent without capabilities answers anything.
        vec![skill("chat", format!("Talk to {}", spec.name))]
    } else {
        spec.capabilities.iter().map(|c| skill(c, format!("{} offers `{c}`", spec.name))).collect()
    };
    let url = format!("{}{}", ctx.base_url, agent_path(&agent.name));
    let version = if spec.version.is_empty() { agent.revision.to_string() } else { spec.version.clone() };
    card(ctx, &agent.name, description, &version, url, skills)
}

/// The node's card: a message sent to it names a skill (a capability) in
/// its metadata and goes to an agent offering it, as `POST /v1/messages`
/// routes by capability.
pub fn router_card(ctx: &CardContext<'_>, capabilities: &[String]) -> Value {
    let skills = capabilities
        .iter()
        .map(|c| skill(c, format!("Routed to an agent offering `{c}`: set metadata.skill = \"{c}\"")))
        .collect();
    let url = format!("{}{ROUTER_PATH}", ctx.base_url);
    let description = "Caxton's router: each skill is a capability; a message naming one in metadata.skill \
                       goes to an agent that offers it"
        .to_owned();
    card(ctx, "caxton", description, env!("CARGO_PKG_VERSION"), url, skills)
}
