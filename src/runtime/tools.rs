//! Tools the runtime offers to models: built-ins (asking other agents) and,
//! later, MCP tools. An agent is offered only the tools in its allowlist.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::llm::{ToolCall, ToolSpec};
use crate::mcp::McpRegistry;
use crate::memory::types::{Place, Viewer};
use crate::memory::{MemoryBackend, SearchQuery};
use crate::messaging::{MessageKind, MessageService, SendOutcome, SendRequest, Target};

pub use crate::config::builtin_tools::{
    is_builtin, ASK_AGENT, BUILTIN_TOOLS, MEMORY_RELATE, MEMORY_SEARCH, MEMORY_STORE, PUBLISH, START_AUCTION,
    START_NEGOTIATION,
};

/// Who is calling a tool, for tools that act on the caller's behalf.
pub struct CallContext<'a> {
    pub agent: &'a str,
    /// The agent's `tools`: which server a tool call goes to.
    pub allowlist: &'a [String],
    /// Where this agent's memory lives and what it may see (None: memory off).
    pub memory: Option<(Place, Viewer)>,
    pub conversation_id: &'a str,
    pub hop: u32,
    pub trace_id: &'a str,
    pub deadline: Duration,
    /// Shadow traffic: only tools free of side effects run (these, plus
    /// `memory_search` and MCP tools annotated `readOnlyHint`).
    pub shadow: Option<&'a [String]>,
    /// The remote A2A agents the agent may call, by tool name.
    pub a2a: &'a [crate::config::A2aRemote],
}

pub struct Tools {
    messages: Arc<MessageService>,
    memory: Arc<dyn MemoryBackend>,
    mcp: Arc<McpRegistry>,
    a2a: Arc<crate::a2a::A2aClient>,
}

impl Tools {
    pub fn new(
        messages: Arc<MessageService>,
        memory: Arc<dyn MemoryBackend>,
        mcp: Arc<McpRegistry>,
        a2a: Arc<crate::a2a::A2aClient>,
    ) -> Self {
        Self { messages, memory, mcp, a2a }
    }

    /// The agent's remote A2A agents, as tools taking a message.
    pub fn offered_a2a(remotes: &[crate::config::A2aRemote]) -> Vec<ToolSpec> {
        remotes
            .iter()
            .map(|r| ToolSpec {
                name: r.name.clone(),
                description: r.description.clone().unwrap_or_else(|| {
                    format!("Ask the remote agent `{}` (A2A, card {}); it answers in text", r.name, r.card)
                }),
                parameters: json!({
                    "type": "object",
                    "properties": {"message": {"type": "string", "description": "What to ask it"}},
                    "required": ["message"]
                }),
            })
            .collect()
    }

    /// One call to a remote A2A agent: its answer, or why there is none.
    async fn call_a2a(
        &self,
        remote: &crate::config::A2aRemote,
        arguments: &Value,
        ctx: &CallContext<'_>,
    ) -> Result<String, String> {
        let Some(message) = arguments["message"].as_str().filter(|m| !m.trim().is_empty()) else {
            return Err(format!("`{}` takes {{\"message\": \"...\"}}", remote.name));
        };
        self.a2a.call(remote, message, ctx.conversation_id, ctx.deadline).await.map_err(|e| e.to_string())
    }

    /// Deployed MCP tools the allowlist grants, as model-facing specs.
    pub async fn offered_mcp(&self, allowlist: &[String]) -> Vec<ToolSpec> {
        // Most agents allow only built-ins (or nothing): skip the replica read.
        if allowlist.iter().all(|t| BUILTIN_TOOLS.contains(&t.as_str())) {
            return Vec::new();
        }
        let mut seen = std::collections::HashSet::new();
        match self.mcp.tools().await {
            Ok(tools) => tools
                .into_iter()
                .filter(|(t, server)| allowlist.iter().any(|a| crate::mcp::entry_grants(a, server, &t.name)))
                // Several granted servers may offer one name: the model sees it once.
                .filter(|(t, _)| seen.insert(t.name.clone()))
                .map(|(t, _)| ToolSpec { name: t.name, description: t.description, parameters: t.input_schema })
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list MCP tools");
                Vec::new()
            }
        }
    }

    /// Specs of the tools `allowlist` grants that exist, plus the memory
    /// tools when the agent's memory is enabled.
    pub fn offered(&self, allowlist: &[String], memory_enabled: bool) -> Vec<ToolSpec> {
        let mut specs: Vec<ToolSpec> = allowlist.iter().filter_map(|name| builtin_spec(name)).collect();
        if memory_enabled {
            specs.extend([MEMORY_SEARCH, MEMORY_STORE, MEMORY_RELATE].iter().filter_map(|n| builtin_spec(n)));
        }
        specs
    }

    /// Runs one call. The result (or the error text) goes back to the model.
    pub async fn call(&self, call: &ToolCall, ctx: &CallContext<'_>) -> Result<String, String> {
        if let Some(free) = ctx.shadow {
            if !self.free_of_side_effects(&call.name, free).await {
                tracing::debug!(agent = ctx.agent, tool = %call.name, "tool not run for shadow traffic");
                return Ok(format!(
                    "(`{}` was not run: this request is shadow traffic; assume it succeeded)",
                    call.name
                ));
            }
        }
        if let Some(remote) = ctx.a2a.iter().find(|r| r.name == call.name) {
            return self.call_a2a(remote, &call.arguments, ctx).await;
        }
        match call.name.as_str() {
            ASK_AGENT => self.ask_agent(&call.arguments, ctx).await,
            PUBLISH => self.publish(&call.arguments, ctx).await,
            START_AUCTION | START_NEGOTIATION => self.bargain(call, ctx).await,
            MEMORY_SEARCH | MEMORY_STORE | MEMORY_RELATE => self.memory_tool(call, ctx).await,
            other => match self.mcp.call_granted(other, call.arguments.clone(), ctx.allowlist).await {
                Ok(result) => {
                    let text =
                        result["content"][0]["text"].as_str().map(str::to_owned).unwrap_or_else(|| result.to_string());
                    if result["isError"] == true {
                        Err(text)
                    } else {
                        Ok(text)
                    }
                }
                Err(e) => Err(e.to_string()),
            },
        }
    }

    async fn free_of_side_effects(&self, tool: &str, declared: &[String]) -> bool {
        // Built-ins are known: only the memory search is free of side
        // effects, whatever a revision declares (it cannot vouch for
        // `memory_store` or `ask_agent`).
        if is_builtin(tool) {
            return tool == MEMORY_SEARCH;
        }
        if declared.iter().any(|d| d == tool) {
            return true;
        }
        self.mcp.tools().await.is_ok_and(|tools| tools.iter().any(|(t, _)| t.name == tool && t.read_only()))
    }

    async fn ask_agent(&self, args: &Value, ctx: &CallContext<'_>) -> Result<String, String> {
        let message = args["message"]
            .as_str()
            .filter(|m| !m.trim().is_empty())
            .ok_or("`message` (a non-empty string) is required")?;
        let target = match (args["agent"].as_str(), args["capability"].as_str()) {
            (Some(a), _) if !a.is_empty() => Target::Agent(a.to_owned()),
            (_, Some(c)) if !c.is_empty() => Target::Capability(c.to_owned()),
            _ => return Err("give `agent` (a name) or `capability`".into()),
        };
        if matches!(&target, Target::Agent(a) if a.eq_ignore_ascii_case(ctx.agent)) {
            return Err("an agent cannot ask itself".into());
        }
        let req = SendRequest {
            sender: ctx.agent.to_owned(),
            conversation_id: Some(ctx.conversation_id.to_owned()),
            hop: ctx.hop + 1,
            trace_id: Some(ctx.trace_id.to_owned()),
            ..SendRequest::request(target, message)
        };
        match self.messages.send(req, Some(ctx.deadline)).await {
            Ok(SendOutcome::Answered { reply, .. }) if reply.kind == MessageKind::Response => Ok(reply.content),
            Ok(SendOutcome::Answered { reply, .. }) => Err(format!("{} failed: {}", reply.sender, reply.content)),
            Ok(SendOutcome::Accepted(m)) => {
                Err(format!("{} accepted the request ({}) but has not answered", m.receiver, m.id))
            }
            Err(e) => Err(e.to_string()),
        }
    }
}

impl Tools {
    /// Publishes to a topic as the calling agent; the result names how
    /// many subscriptions it reached.
    async fn publish(&self, args: &Value, ctx: &CallContext<'_>) -> Result<String, String> {
        let text = |k: &str| required_text(args, k);
        let req = crate::messaging::PublishRequest {
            topic: text("topic")?,
            content: text("content")?,
            publisher: ctx.agent.to_owned(),
            id: None,
            hop: ctx.hop + 1,
        };
        if req.hop > crate::messaging::MAX_HOPS {
            return Err(crate::messaging::MessageError::HopLimit.to_string());
        }
        let done = self.messages.publish(req).await.map_err(|e| e.to_string())?;
        Ok(format!("published {} to `{}`: {} subscription(s) notified", done.id, done.topic, done.recipients))
    }

    /// Starts an auction or a negotiation as the calling agent and waits
    /// (within the turn's deadline) for its end; the record goes back to
    /// the model as JSON.
    async fn bargain(&self, call: &ToolCall, ctx: &CallContext<'_>) -> Result<String, String> {
        let bad = |e: serde_json::Error| format!("invalid arguments for `{}`: {e}", call.name);
        let record = if call.name == START_AUCTION {
            let req = serde_json::from_value(call.arguments.clone()).map_err(bad)?;
            let started = self.messages.start_auction(req, ctx.agent).await.map_err(|e| e.to_string())?;
            let ended = self.messages.auction(&started.id, ctx.deadline).await.map_err(|e| e.to_string())?;
            serde_json::to_string(&ended)
        } else {
            let req = serde_json::from_value(call.arguments.clone()).map_err(bad)?;
            let started = self.messages.start_negotiation(req, ctx.agent).await.map_err(|e| e.to_string())?;
            let ended = self.messages.negotiation(&started.id, ctx.deadline).await.map_err(|e| e.to_string())?;
            serde_json::to_string(&ended)
        };
        record.map_err(|e| e.to_string())
    }

    async fn memory_tool(&self, call: &ToolCall, ctx: &CallContext<'_>) -> Result<String, String> {
        let (place, viewer) = ctx.memory.clone().ok_or("memory is not enabled for this agent")?;
        let args = &call.arguments;
        let text = |k: &str| required_text(args, k);
        match call.name.as_str() {
            MEMORY_SEARCH => {
                let q = SearchQuery {
                    text: text("query")?,
                    viewer,
                    scope: None,
                    entity_type: args["entity_type"].as_str().map(str::to_owned),
                    limit: args["limit"].as_u64().unwrap_or(5) as usize,
                    min_similarity: 0.0,
                };
                let hits = self.memory.search(q).await.map_err(|e| e.to_string())?;
                Ok(serde_json::to_string(&hits).unwrap_or_default())
            }
            MEMORY_STORE => {
                let observations: Vec<String> = match &args["observations"] {
                    serde_json::Value::Array(a) => a.iter().filter_map(|o| o.as_str().map(str::to_owned)).collect(),
                    serde_json::Value::String(s) => vec![s.clone()],
                    _ => return Err("`observations` (an array of strings) is required".into()),
                };
                let entity_type = args["entity_type"].as_str().unwrap_or("fact").to_owned();
                self.memory
                    .store(&place, &text("name")?, &entity_type, observations)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok("stored".into())
            }
            _ => {
                self.memory
                    .relate(&place, &text("from")?, &text("to")?, &text("relation_type")?)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok("related".into())
            }
        }
    }
}

/// Argument `k` of a tool call: a non-empty string, or the error the model reads.
fn required_text(args: &Value, k: &str) -> Result<String, String> {
    args[k]
        .as_str()
        .filter(|s| !s.trim().is_empty())
        .map(str::to_owned)
        .ok_or(format!("`{k}` (a non-empty string) is required"))
}

fn builtin_spec(name: &str) -> Option<ToolSpec> {
    match name {
        MEMORY_SEARCH => Some(ToolSpec {
            name: MEMORY_SEARCH.into(),
            description: "Search your memory for facts related to a query.".into(),
            parameters: json!({"type": "object", "properties": {
                "query": {"type": "string"}, "limit": {"type": "integer"}, "entity_type": {"type": "string"}
            }, "required": ["query"]}),
        }),
        MEMORY_STORE => Some(ToolSpec {
            name: MEMORY_STORE.into(),
            description: "Remember facts about an entity for later conversations.".into(),
            parameters: json!({"type": "object", "properties": {
                "name": {"type": "string", "description": "The entity, e.g. a person or project"},
                "entity_type": {"type": "string"},
                "observations": {"type": "array", "items": {"type": "string"}}
            }, "required": ["name", "observations"]}),
        }),
        MEMORY_RELATE => Some(ToolSpec {
            name: MEMORY_RELATE.into(),
            description: "Record a relation between two remembered entities.".into(),
            parameters: json!({"type": "object", "properties": {
                "from": {"type": "string"}, "to": {"type": "string"}, "relation_type": {"type": "string"}
            }, "required": ["from", "to", "relation_type"]}),
        }),
        PUBLISH => Some(ToolSpec {
            name: PUBLISH.into(),
            description: "Publish a message to a topic: every agent subscribed to it is notified.".into(),
            parameters: json!({"type": "object", "properties": {
                "topic": {"type": "string", "description": "Dot-separated, e.g. orders.created"},
                "content": {"type": "string"}
            }, "required": ["topic", "content"]}),
        }),
        START_AUCTION => Some(ToolSpec {
            name: START_AUCTION.into(),
            description: "Auction an item among agents (by capability or by name) and get the result: winner, price, every bid.".into(),
            parameters: json!({"type": "object", "properties": {
                "kind": {"type": "string", "enum": ["english", "sealed_bid"]},
                "item": {"type": "string"},
                "capability": {"type": "string", "description": "Every agent declaring it bids"},
                "bidders": {"type": "array", "items": {"type": "string"}},
                "reserve": {"type": "number"},
                "increment": {"type": "number"},
                "round_ms": {"type": "integer"},
                "max_rounds": {"type": "integer"},
                "pricing": {"type": "string", "enum": ["first_price", "second_price"]},
                "deadline_ms": {"type": "integer"}
            }, "required": ["kind", "item"]}),
        }),
        START_NEGOTIATION => Some(ToolSpec {
            name: START_NEGOTIATION.into(),
            description: "Negotiate a subject between agents by alternating offers and get the outcome: agreed terms or why it failed.".into(),
            parameters: json!({"type": "object", "properties": {
                "subject": {"type": "string"},
                "parties": {"type": "array", "items": {"type": "string"}, "description": "Two or more agents, in turn order"},
                "max_rounds": {"type": "integer"},
                "deadline_ms": {"type": "integer"}
            }, "required": ["subject", "parties"]}),
        }),
        ASK_AGENT => Some(ToolSpec {
            name: ASK_AGENT.into(),
            description: "Ask another agent (by name, or any agent with a capability) and get its answer.".into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "agent": {"type": "string", "description": "Name of the agent to ask"},
                    "capability": {"type": "string", "description": "Ask any agent declaring this capability"},
                    "message": {"type": "string", "description": "The question or task"}
                },
                "required": ["message"]
            }),
        }),
        _ => None,
    }
}
