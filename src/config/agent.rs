//! The agent TOML schema and its validation.
//!
//! Parsing happens in two steps: serde reads a "raw" document that keeps the
//! byte span of every field, then `validate` turns it into an [`AgentSpec`]
//! or a list of [`FieldError`]s, each naming file, line, field and reason.
//! Every problem in a file is reported at once, not just the first.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::span::Errors;
use super::span::FieldError;

/// The workspace of agents and API callers that name none.
pub const DEFAULT_WORKSPACE: &str = "default";

/// Largest agent file accepted. Prompts are text; anything bigger is a mistake.
pub const MAX_AGENT_FILE_BYTES: usize = 256 * 1024;

/// Variables every prompt template may use, whatever the agent's parameters.
pub const BUILTIN_TEMPLATE_VARS: [&str; 4] = ["request", "context", "requirements", "agent_name"];

/// A DNS-label-safe agent name: 1-63 ASCII letters, digits or hyphens,
/// starting with a letter and not ending with a hyphen. Names compare
/// case-insensitively (as DNS does) but keep the case they were written in.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "DataAnalyzer")]
pub struct AgentName(String);

impl AgentName {
    pub fn parse(name: &str) -> Result<Self, String> {
        let ok_chars = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if name.is_empty() {
            Err("must not be empty".into())
        } else if name.len() > 63 {
            Err(format!("is {} characters long; the limit is 63 (a DNS label)", name.len()))
        } else if !ok_chars {
            Err("may contain only ASCII letters, digits and '-' (a DNS label)".into())
        } else if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
            Err("must start with a letter".into())
        } else if name.ends_with('-') {
            Err("must not end with '-'".into())
        } else {
            Ok(Self(name.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The case-folded form used as the registry key.
    pub fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

impl PartialEq for AgentName {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}
impl Eq for AgentName {}

impl fmt::Display for AgentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for AgentName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s).map_err(|why| format!("agent name `{s}` {why}"))
    }
}

impl From<AgentName> for String {
    fn from(n: AgentName) -> String {
        n.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MemoryScope {
    /// `agent-only` is what v1 wrote (agent files, the log, the API).
    #[serde(alias = "agent-only")]
    AgentOnly,
    Workspace,
    Global,
}

impl MemoryScope {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "agent_only" | "agent-only" => Some(Self::AgentOnly),
            "workspace" => Some(Self::Workspace),
            "global" => Some(Self::Global),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MemorySettings {
    pub enabled: bool,
    pub scope: MemoryScope,
    pub auto_store: bool,
    pub search_limit: u32,
    pub min_similarity: f32,
}

impl Default for MemorySettings {
    fn default() -> Self {
        Self { enabled: false, scope: MemoryScope::AgentOnly, auto_store: false, search_limit: 5, min_similarity: 0.3 }
    }
}

/// A validated agent definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentSpec {
    pub name: AgentName,
    pub version: String,
    pub description: Option<String>,
    pub capabilities: Vec<String>,
    pub tools: Vec<String>,
    pub memory: MemorySettings,
    #[schema(value_type = Object)]
    pub parameters: serde_json::Map<String, serde_json::Value>,
    pub system_prompt: String,
    pub user_prompt_template: String,
    pub documentation: Option<String>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub max_turns: u32,
    pub timeout_ms: u64,
    /// How a new revision of this agent takes over; absent: at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<super::rollout::RolloutSpec>,
    /// Topic patterns the agent receives publications of (see `topic.rs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscriptions: Vec<String>,
    /// What it may use (`[limits]`); unset ones are the server's.
    #[serde(default, skip_serializing_if = "super::limits::AgentLimits::is_empty")]
    pub limits: super::limits::AgentLimits,
    /// Remote A2A agents it may call, each offered as a tool (`[[a2a]]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub a2a: Vec<A2aRemote>,
}

/// A remote A2A agent an agent may call: a tool named `name`, which sends
/// the model's message to the agent whose card is at `card`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct A2aRemote {
    pub name: String,
    /// The remote agent card's URL (its host must be in the node's
    /// `a2a.allowed_hosts`).
    pub card: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl AgentSpec {
    /// The workspace the agent works in (`parameters.workspace`): its
    /// workspace memory, and what a workspace-limited API key admits.
    pub fn workspace(&self) -> &str {
        workspace_of(&self.parameters)
    }
}

/// `parameters.workspace`, or the default workspace.
pub fn workspace_of(parameters: &serde_json::Map<String, serde_json::Value>) -> &str {
    parameters.get("workspace").and_then(|w| w.as_str()).unwrap_or(DEFAULT_WORKSPACE)
}

impl AgentSpec {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[error("invalid agent definition: {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
pub struct ParseAgentError(pub Vec<FieldError>);

// ---- raw document -----------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    name: Option<Spanned<String>>,
    version: Option<Spanned<String>>,
    description: Option<String>,
    capabilities: Option<Vec<Spanned<String>>>,
    tools: Option<Vec<Spanned<String>>>,
    memory: Option<Spanned<RawMemory>>,
    parameters: Option<Spanned<toml::Table>>,
    system_prompt: Option<Spanned<String>>,
    user_prompt_template: Option<Spanned<String>>,
    documentation: Option<Spanned<String>>,
    provider: Option<Spanned<String>>,
    model: Option<Spanned<String>>,
    max_turns: Option<Spanned<i64>>,
    timeout: Option<Spanned<toml::Value>>,
    rollout: Option<super::rollout::RawRollout>,
    subscriptions: Option<Vec<Spanned<String>>>,
    limits: Option<super::limits::RawLimits>,
    a2a: Option<Vec<Spanned<RawA2a>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawA2a {
    name: Spanned<String>,
    card: Spanned<String>,
    description: Option<String>,
}

/// `[memory]` plus the three prose keys. A TOML key written after a table
/// header belongs to that table, so a file that puts `system_prompt` after
/// `[memory]` (as the classic DataAnalyzer example does) means the top-level
/// key; we accept it there and hoist it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMemory {
    enabled: Option<bool>,
    scope: Option<Spanned<String>>,
    auto_store: Option<bool>,
    search_limit: Option<Spanned<i64>>,
    min_similarity: Option<Spanned<f64>>,
    system_prompt: Option<Spanned<String>>,
    user_prompt_template: Option<Spanned<String>>,
    documentation: Option<Spanned<String>>,
}

const HOISTED: [&str; 3] = ["system_prompt", "user_prompt_template", "documentation"];

/// Where an agent definition came from, for error messages.
#[derive(Debug, Clone, Copy)]
pub enum Origin<'a> {
    /// A TOML file or body: errors carry line and column.
    Toml(&'a str),
    /// TOML generated from a JSON body: positions would be meaningless.
    Json,
}

impl AgentSpec {
    /// Parses and validates an agent file. `file` names it in errors.
    pub fn from_toml(text: &str, file: &str) -> Result<Self, ParseAgentError> {
        Self::parse(text, Origin::Toml(file))
    }

    /// Validates an agent given as a JSON object (same keys as the TOML).
    pub fn from_json(value: &serde_json::Value) -> Result<(Self, String), ParseAgentError> {
        let toml_value: toml::Value = serde_json::from_value(value.clone()).map_err(|e| {
            ParseAgentError(vec![FieldError {
                file: "(request body)".into(),
                line: None,
                column: None,
                field: "(body)".into(),
                reason: format!("not representable as an agent definition: {e}"),
            }])
        })?;
        let text = toml::to_string(&toml_value).map_err(|e| {
            ParseAgentError(vec![FieldError {
                file: "(request body)".into(),
                line: None,
                column: None,
                field: "(body)".into(),
                reason: format!("must be a JSON object of agent keys: {e}"),
            }])
        })?;
        let spec = Self::parse(&text, Origin::Json)?;
        Ok((spec, text))
    }

    pub fn parse(text: &str, origin: Origin<'_>) -> Result<Self, ParseAgentError> {
        let (file, with_lines) = match origin {
            Origin::Toml(f) => (f, true),
            Origin::Json => ("(request body)", false),
        };
        let mut errs = Errors { file, text, with_lines, list: Vec::new() };
        if text.len() > MAX_AGENT_FILE_BYTES {
            errs.whole("(file)", format!("is {} bytes; the limit is {MAX_AGENT_FILE_BYTES} bytes", text.len()));
            return Err(ParseAgentError(errs.list));
        }
        let raw: RawAgent = match toml::from_str(text) {
            Ok(r) => r,
            Err(e) => {
                let field = field_from_toml_error(text, &e);
                match e.span() {
                    Some(span) => errs.at(span, &field, toml_message(&e)),
                    None => errs.whole(&field, toml_message(&e)),
                }
                return Err(ParseAgentError(errs.list));
            }
        };
        validate(raw, &mut errs).ok_or(ParseAgentError(errs.list))
    }
}

/// toml's messages are multi-line with a source excerpt; keep the first line.
fn toml_message(e: &toml::de::Error) -> String {
    e.message().lines().next().unwrap_or("invalid TOML").trim().to_owned()
}

/// Best-effort name of the key a TOML error points at.
fn field_from_toml_error(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message();
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        if let Some(end) = rest.find('`') {
            return rest[..end].to_owned();
        }
    }
    if let Some(span) = e.span() {
        // The key at the start of the offending line, if the line is `key = ...`.
        let line_start = text[..span.start.min(text.len())].rfind('\n').map(|i| i + 1).unwrap_or(0);
        let line = text[line_start..].lines().next().unwrap_or("");
        if let Some((key, _)) = line.split_once('=') {
            let key = key.trim();
            if !key.is_empty() && !key.contains(' ') {
                return key.to_owned();
            }
        }
    }
    "(file)".into()
}

fn validate(raw: RawAgent, errs: &mut Errors<'_>) -> Option<AgentSpec> {
    let start_count = errs.list.len();
    let name = match &raw.name {
        None => {
            errs.whole("name", "is required");
            None
        }
        Some(n) => match AgentName::parse(n.get_ref()) {
            Ok(name) => Some(name),
            Err(why) => {
                errs.at(n.span(), "name", format!("`{}` is not DNS-safe: {why}", n.get_ref()));
                None
            }
        },
    };

    let version = match &raw.version {
        None => "0.1.0".to_owned(),
        Some(v) => {
            if !is_version(v.get_ref()) {
                errs.at(v.span(), "version", format!("`{}` is not a version like \"1.2.3\"", v.get_ref()));
            }
            v.get_ref().clone()
        }
    };

    let capabilities = unique_labels(raw.capabilities.as_deref(), "capabilities", "capability", errs);
    let tools = unique_labels(raw.tools.as_deref(), "tools", "tool", errs);
    let subscriptions = subscription_patterns(raw.subscriptions.as_deref(), errs);
    let a2a = a2a_remotes(raw.a2a, &tools, errs);

    // Hoist prose keys that landed inside [memory] or [parameters].
    let (memory, mut hoisted) = match raw.memory {
        None => (MemorySettings::default(), BTreeMap::new()),
        Some(m) => validate_memory(m.into_inner(), errs),
    };
    let mut parameters = serde_json::Map::new();
    if let Some(p) = raw.parameters {
        let span = p.span();
        for (k, v) in p.into_inner() {
            if HOISTED.contains(&k.as_str()) {
                match v {
                    toml::Value::String(s) => {
                        hoisted.insert(k, Spanned::new(span.clone(), s));
                    }
                    _ => errs.at(span.clone(), &k, "must be a string"),
                }
                continue;
            }
            match serde_json::to_value(&v) {
                Ok(j) => {
                    parameters.insert(k, j);
                }
                Err(e) => errs.at(span.clone(), &format!("parameters.{k}"), format!("unsupported value: {e}")),
            }
        }
    }
    let mut prose = |top: Option<Spanned<String>>, key: &str, errs: &mut Errors<'_>| -> Option<Spanned<String>> {
        match (top, hoisted.remove(key)) {
            (Some(t), Some(h)) => {
                errs.at(h.span(), key, "is defined twice: at the top level and inside a table");
                Some(t)
            }
            (t, h) => t.or(h),
        }
    };
    let system_prompt = prose(raw.system_prompt, "system_prompt", errs);
    let user_prompt_template = prose(raw.user_prompt_template, "user_prompt_template", errs);
    let documentation = prose(raw.documentation, "documentation", errs);

    let system_prompt = match system_prompt {
        Some(s) if s.get_ref().trim().is_empty() => {
            errs.at(s.span(), "system_prompt", "must not be empty");
            String::new()
        }
        Some(s) => {
            check_template(&s, "system_prompt", &parameters, errs);
            s.into_inner()
        }
        None => {
            errs.whole("system_prompt", "is required");
            String::new()
        }
    };
    let user_prompt_template = match user_prompt_template {
        Some(t) => {
            check_template(&t, "user_prompt_template", &parameters, errs);
            t.into_inner()
        }
        None => "{{request}}".to_owned(),
    };

    let max_turns = match &raw.max_turns {
        None => 8,
        Some(t) if (1..=100).contains(t.get_ref()) => *t.get_ref() as u32,
        Some(t) => {
            errs.at(t.span(), "max_turns", format!("{} is outside 1..=100", t.get_ref()));
            0
        }
    };
    let timeout_ms = match &raw.timeout {
        None => 120_000,
        Some(t) => match parse_timeout(t.get_ref()) {
            Ok(d) if d >= Duration::from_millis(100) && d <= Duration::from_secs(3600) => d.as_millis() as u64,
            Ok(_) => {
                errs.at(t.span(), "timeout", "must be between 100ms and 1h");
                0
            }
            Err(why) => {
                errs.at(t.span(), "timeout", why);
                0
            }
        },
    };
    let provider = non_empty(raw.provider, "provider", errs);
    let model = non_empty(raw.model, "model", errs);
    let rollout = raw.rollout.and_then(|r| super::rollout::validate(r, errs)).filter(|r| !r.is_direct());
    let limits = raw.limits.map(|l| super::limits::validate(l, timeout_ms, errs)).unwrap_or_default();

    if errs.list.len() > start_count {
        return None;
    }
    Some(AgentSpec {
        name: name?,
        version,
        description: raw.description,
        capabilities,
        tools,
        memory,
        parameters,
        system_prompt,
        user_prompt_template,
        documentation: documentation.map(|d| d.into_inner()),
        provider,
        model,
        max_turns,
        timeout_ms,
        rollout,
        subscriptions,
        limits,
        a2a,
    })
}

/// `[[a2a]]`: each a distinct tool name (not a built-in or a listed tool)
/// and an http(s) card URL. Whether its host may be called is the node's
/// `a2a.allowed_hosts`, checked at each call.
fn a2a_remotes(raw: Option<Vec<Spanned<RawA2a>>>, tools: &[String], errs: &mut Errors<'_>) -> Vec<A2aRemote> {
    let mut out: Vec<A2aRemote> = Vec::new();
    for entry in raw.unwrap_or_default() {
        let entry = entry.into_inner();
        let name = entry.name.get_ref();
        let card = entry.card.get_ref();
        let valid_name = !name.is_empty()
            && name.len() <= 64
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid_name {
            errs.at(
                entry.name.span(),
                "a2a.name",
                format!("`{name}` is not a tool name (letters, digits, _ and -, at most 64)"),
            );
            continue;
        }
        if super::builtin_tools::is_builtin(name) || tools.contains(name) || out.iter().any(|r| &r.name == name) {
            errs.at(entry.name.span(), "a2a.name", format!("`{name}` is already a tool of this agent"));
            continue;
        }
        let url_ok = (card.starts_with("http://") || card.starts_with("https://")) && reqwest::Url::parse(card).is_ok();
        if !url_ok {
            errs.at(entry.card.span(), "a2a.card", format!("`{card}` is not an http(s) URL of an agent card"));
            continue;
        }
        out.push(A2aRemote { name: name.clone(), card: card.clone(), description: entry.description });
    }
    out
}

/// `subscriptions`: valid, distinct topic patterns.
fn subscription_patterns(list: Option<&[Spanned<String>]>, errs: &mut Errors<'_>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in list.unwrap_or_default() {
        let pattern = item.get_ref();
        if let Err(why) = super::topic::check_pattern(pattern) {
            errs.at(item.span(), "subscriptions", format!("`{pattern}` is not a topic pattern: {why}"));
        } else if out.contains(pattern) {
            errs.at(item.span(), "subscriptions", format!("`{pattern}` is listed more than once"));
        } else {
            out.push(pattern.clone());
        }
    }
    out
}

fn non_empty(v: Option<Spanned<String>>, field: &str, errs: &mut Errors<'_>) -> Option<String> {
    let v = v?;
    if v.get_ref().trim().is_empty() {
        errs.at(v.span(), field, "must not be empty when given");
        return None;
    }
    Some(v.into_inner())
}

fn parse_timeout(v: &toml::Value) -> Result<Duration, String> {
    match v {
        toml::Value::Integer(s) if *s >= 0 => Ok(Duration::from_secs(*s as u64)),
        toml::Value::String(s) => super::duration::parse(s),
        other => Err(format!("must be a duration string like \"30s\" or whole seconds, not {}", other.type_str())),
    }
}

fn validate_memory(m: RawMemory, errs: &mut Errors<'_>) -> (MemorySettings, BTreeMap<String, Spanned<String>>) {
    let d = MemorySettings::default();
    let scope = match &m.scope {
        None => d.scope,
        Some(s) => MemoryScope::parse(s.get_ref()).unwrap_or_else(|| {
            errs.at(
                s.span(),
                "memory.scope",
                format!("`{}` is not a scope; use one of agent_only, workspace, global", s.get_ref()),
            );
            d.scope
        }),
    };
    let search_limit = match &m.search_limit {
        None => d.search_limit,
        Some(l) if (1..=100).contains(l.get_ref()) => *l.get_ref() as u32,
        Some(l) => {
            errs.at(l.span(), "memory.search_limit", format!("{} is outside 1..=100", l.get_ref()));
            d.search_limit
        }
    };
    let min_similarity = match &m.min_similarity {
        None => d.min_similarity,
        Some(s) if (0.0..=1.0).contains(s.get_ref()) => *s.get_ref() as f32,
        Some(s) => {
            errs.at(s.span(), "memory.min_similarity", format!("{} is outside 0..1", s.get_ref()));
            d.min_similarity
        }
    };
    let settings = MemorySettings {
        enabled: m.enabled.unwrap_or(d.enabled),
        scope,
        auto_store: m.auto_store.unwrap_or(d.auto_store),
        search_limit,
        min_similarity,
    };
    let mut hoisted = BTreeMap::new();
    for (k, v) in [
        ("system_prompt", m.system_prompt),
        ("user_prompt_template", m.user_prompt_template),
        ("documentation", m.documentation),
    ] {
        if let Some(v) = v {
            hoisted.insert(k.to_owned(), v);
        }
    }
    (settings, hoisted)
}

fn is_version(v: &str) -> bool {
    let core = v.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    (1..=3).contains(&parts.len()) && parts.iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

/// Capabilities and tool names: non-empty identifiers, no duplicates.
fn unique_labels(list: Option<&[Spanned<String>]>, field: &str, what: &str, errs: &mut Errors<'_>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for item in list.unwrap_or_default() {
        let v = item.get_ref();
        let ok = !v.is_empty()
            && v.len() <= 128
            && v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/'));
        if !ok {
            errs.at(item.span(), field, format!("`{v}` is not a valid {what} (1-128 of letters, digits, - _ . : /)"));
        } else if !seen.insert(v.to_ascii_lowercase()) {
            errs.at(item.span(), field, format!("{what} `{v}` is listed more than once"));
        } else {
            out.push(v.clone());
        }
    }
    out
}

/// Every `{{var}}` must be a built-in variable or a key of `[parameters]`.
fn check_template(
    t: &Spanned<String>,
    field: &str,
    parameters: &serde_json::Map<String, serde_json::Value>,
    errs: &mut Errors<'_>,
) {
    match template_variables(t.get_ref()) {
        Err(why) => errs.at(t.span(), field, why),
        Ok(vars) => {
            for var in vars {
                if !BUILTIN_TEMPLATE_VARS.contains(&var.as_str()) && !parameters.contains_key(&var) {
                    let mut known: Vec<&str> = BUILTIN_TEMPLATE_VARS.to_vec();
                    known.extend(parameters.keys().map(String::as_str));
                    errs.at(
                        t.span(),
                        field,
                        format!("references undefined variable `{{{{{var}}}}}`; defined are: {}", known.join(", ")),
                    );
                }
            }
        }
    }
}

/// The variable names used in a `{{var}}` template, in order.
pub fn template_variables(template: &str) -> Result<Vec<String>, String> {
    let mut vars = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let close = after.find("}}").ok_or_else(|| "has a `{{` without a closing `}}`".to_owned())?;
        let var = after[..close].trim();
        if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("has an invalid placeholder `{{{{{}}}}}`", &after[..close]));
        }
        vars.push(var.to_owned());
        rest = &after[close + 2..];
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATA_ANALYZER: &str = include_str!("../../examples/agents/data-analyzer.toml");

    #[test]
    fn seed_example_parses_as_written() {
        let spec = AgentSpec::from_toml(DATA_ANALYZER, "data-analyzer.toml").unwrap();
        assert_eq!(spec.name.as_str(), "DataAnalyzer");
        assert_eq!(spec.memory.scope, MemoryScope::Workspace);
        assert!(spec.memory.enabled);
        assert!(spec.system_prompt.contains("data analysis expert"));
        assert!(spec.user_prompt_template.contains("{{request}}"));
        assert!(spec.documentation.unwrap().contains("# DataAnalyzer Agent"));
        assert_eq!(spec.parameters["supported_formats"][0], "csv");
    }

    #[test]
    fn template_variables_are_extracted() {
        assert_eq!(template_variables("a {{ x }} b {{y_1}}").unwrap(), vec!["x", "y_1"]);
        assert!(template_variables("a {{ x").is_err());
        assert!(template_variables("{{a b}}").is_err());
    }

    #[test]
    fn names_are_dns_labels() {
        assert!(AgentName::parse("data-analyzer-2").is_ok());
        assert!(AgentName::parse("DataAnalyzer").is_ok());
        for bad in ["", "-x", "1abc", "a_b", "abc-", "a.b", &"a".repeat(64)] {
            assert!(AgentName::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(AgentName::parse("Foo").unwrap(), AgentName::parse("foo").unwrap());
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics(s in "\\PC{0,300}") {
            let _ = AgentSpec::from_toml(&s, "fuzz.toml");
        }

        #[test]
        fn valid_names_round_trip(name in "[a-zA-Z][a-zA-Z0-9-]{0,61}[a-zA-Z0-9]") {
            let n = AgentName::parse(&name).unwrap();
            proptest::prop_assert_eq!(n.as_str(), name.as_str());
        }
    }
}
