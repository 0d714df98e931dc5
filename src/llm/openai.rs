//! Any OpenAI-compatible Chat Completions endpoint (OpenAI, vLLM,
//! llama.cpp server, Ollama, …), with tools, streaming, and retries with
//! backoff on 429/5xx that honour `Retry-After`.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};

use crate::sse::SseDecoder;

use super::types::{ChatMessage, ChatRequest, ChatResponse, LlmError, LlmProvider, Role, TokenSink, ToolCall, Usage};

/// Its `Debug` shows whether an API key is set, never the key.
#[derive(Clone)]
pub struct OpenAiSettings {
    pub base_url: String,
    pub api_key: Option<String>,
    pub model: String,
    pub timeout: Duration,
    pub max_retries: u32,
    /// First backoff step; doubles per attempt (plus jitter), capped at 30 s.
    pub backoff: Duration,
}

impl std::fmt::Debug for OpenAiSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiSettings")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("model", &self.model)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("backoff", &self.backoff)
            .finish()
    }
}

pub struct OpenAiProvider {
    name: String,
    settings: OpenAiSettings,
    http: reqwest::Client,
}

/// Tool calls one streamed answer may make; a larger index is a broken or
/// hostile provider, not a plan.
const MAX_TOOL_CALLS: usize = 128;

/// `Retry-After` in seconds; anything that is not a finite, non-negative
/// number (or an HTTP date) is ignored and our own backoff applies.
fn parse_retry_after(v: &str) -> Option<Duration> {
    let secs = v.trim().parse::<f64>().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::try_from_secs_f64(secs).ok()).flatten()
}

/// Longest `Retry-After` we are willing to honour before giving up instead.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

impl OpenAiProvider {
    pub fn new(name: &str, settings: OpenAiSettings) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .expect("HTTP client with static settings");
        Self { name: name.to_owned(), settings, http }
    }

    fn body(&self, req: &ChatRequest, stream: bool) -> Value {
        let messages: Vec<Value> = req.messages.iter().map(wire_message).collect();
        let mut body = json!({
            "model": req.model.clone().unwrap_or_else(|| self.settings.model.clone()),
            "messages": messages,
            "stream": stream,
        });
        if !req.tools.is_empty() {
            body["tools"] = req
                .tools
                .iter()
                .map(|t| json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}))
                .collect();
        }
        if let Some(t) = req.temperature {
            body["temperature"] = json!(t);
        }
        if let Some(m) = req.max_tokens {
            body["max_tokens"] = json!(m);
        }
        if let Some(p) = req.top_p {
            body["top_p"] = json!(p);
        }
        if !req.stop.is_empty() {
            body["stop"] = json!(req.stop);
        }
        if let Some(seed) = req.seed {
            body["seed"] = json!(seed);
        }
        body
    }

    fn err_unavailable(&self, attempts: u32, last: String) -> LlmError {
        LlmError::Unavailable { provider: self.name.clone(), attempts, last }
    }

    /// Sends with retries; returns the successful response.
    async fn send(&self, body: &Value) -> Result<reqwest::Response, LlmError> {
        let url = format!("{}/chat/completions", self.settings.base_url.trim_end_matches('/'));
        let attempts = self.settings.max_retries + 1;
        let mut last = String::new();
        for attempt in 0..attempts {
            let mut req = self.http.post(&url).timeout(self.settings.timeout).json(body);
            if let Some(key) = &self.settings.api_key {
                req = req.bearer_auth(key);
            }
            let wait = match req.send().await {
                Ok(resp) if resp.status().is_success() => return Ok(resp),
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let retry_after = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_retry_after);
                    let text = resp.text().await.unwrap_or_default();
                    if status != 429 && status < 500 {
                        return Err(LlmError::Rejected {
                            provider: self.name.clone(),
                            status,
                            message: error_message(&text),
                        });
                    }
                    last = format!("HTTP {status}: {}", error_message(&text));
                    match retry_after {
                        Some(d) if d > MAX_RETRY_AFTER => {
                            return Err(
                                self.err_unavailable(attempt + 1, format!("{last} (Retry-After {d:?} is too long)"))
                            )
                        }
                        Some(d) => d,
                        None => self.backoff(attempt),
                    }
                }
                Err(e) if e.is_timeout() => {
                    last = format!("timed out after {:?}", self.settings.timeout);
                    self.backoff(attempt)
                }
                Err(e) => {
                    last = e.to_string();
                    self.backoff(attempt)
                }
            };
            if attempt + 1 < attempts {
                tracing::warn!(provider = %self.name, attempt = attempt + 1, wait_ms = wait.as_millis() as u64, error = %last, "LLM call failed; retrying");
                tokio::time::sleep(wait).await;
            }
        }
        if last.starts_with("timed out") {
            return Err(LlmError::Timeout {
                provider: self.name.clone(),
                timeout_ms: self.settings.timeout.as_millis() as u64,
            });
        }
        Err(self.err_unavailable(attempts, last))
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.settings.backoff.saturating_mul(1 << attempt.min(16)).min(Duration::from_secs(30));
        let jitter = rand::random::<f64>() * 0.25;
        base.mul_f64(1.0 + jitter)
    }

    fn protocol(&self, detail: impl Into<String>) -> LlmError {
        LlmError::Protocol { provider: self.name.clone(), detail: detail.into() }
    }

    async fn read_stream(&self, resp: reqwest::Response, tokens: &TokenSink) -> Result<ChatResponse, LlmError> {
        let mut out = ChatResponse::default();
        // Tool calls arrive in fragments keyed by index.
        let mut calls: Vec<(String, String, String)> = Vec::new();
        let mut sse = SseDecoder::default();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.protocol(format!("stream broke: {e}")))?;
            let events = sse.feed(&chunk);
            if sse.overflowed() {
                return Err(self.protocol(format!("a stream event over {} bytes", crate::sse::MAX_EVENT_BYTES)));
            }
            for ev in events {
                let data = ev.data.trim();
                if data == "[DONE]" {
                    return Ok(finish(out, calls));
                }
                let v: Value =
                    serde_json::from_str(data).map_err(|e| self.protocol(format!("bad stream chunk: {e}")))?;
                let choice = &v["choices"][0];
                if let Some(text) = choice["delta"]["content"].as_str() {
                    out.content.push_str(text);
                    let _ = tokens.send(text.to_owned());
                }
                for tc in choice["delta"]["tool_calls"].as_array().into_iter().flatten() {
                    let i = match tc["index"].as_u64() {
                        None => 0,
                        Some(i) if i < MAX_TOOL_CALLS as u64 => i as usize,
                        Some(i) => {
                            return Err(self.protocol(format!(
                                "tool call index {i} is beyond the {MAX_TOOL_CALLS} calls one answer may make"
                            )))
                        }
                    };
                    while calls.len() <= i {
                        calls.push(Default::default());
                    }
                    if let Some(id) = tc["id"].as_str() {
                        calls[i].0 = id.to_owned();
                    }
                    if let Some(n) = tc["function"]["name"].as_str() {
                        calls[i].1.push_str(n);
                    }
                    if let Some(a) = tc["function"]["arguments"].as_str() {
                        calls[i].2.push_str(a);
                    }
                }
                if let Some(r) = choice["finish_reason"].as_str() {
                    out.finish_reason = r.to_owned();
                }
                if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
                    out.usage = parse_usage(u);
                }
            }
        }
        // No `[DONE]`: a stream that also never said why it finished was cut off.
        if out.finish_reason.is_empty() {
            return Err(self.protocol("the stream ended before the answer did (no finish_reason, no [DONE])"));
        }
        Ok(finish(out, calls))
    }
}

fn finish(mut out: ChatResponse, calls: Vec<(String, String, String)>) -> ChatResponse {
    out.tool_calls = calls
        .into_iter()
        .map(|(id, name, args)| ToolCall {
            id,
            name,
            arguments: serde_json::from_str(&args).unwrap_or(Value::String(args)),
        })
        .collect();
    if out.finish_reason.is_empty() {
        out.finish_reason = "stop".into();
    }
    out
}

fn parse_usage(u: &Value) -> Usage {
    Usage {
        prompt_tokens: u["prompt_tokens"].as_u64().unwrap_or(0) as u32,
        completion_tokens: u["completion_tokens"].as_u64().unwrap_or(0) as u32,
    }
}

/// OpenAI errors are `{"error": {"message": ...}}`; anything else verbatim.
fn error_message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| body.chars().take(500).collect())
}

fn wire_message(m: &ChatMessage) -> Value {
    let role = match m.role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    };
    let mut v = json!({"role": role, "content": m.content});
    if !m.tool_calls.is_empty() {
        v["tool_calls"] = m
            .tool_calls
            .iter()
            .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments.to_string()}}))
            .collect();
    }
    if let Some(id) = &m.tool_call_id {
        v["tool_call_id"] = json!(id);
    }
    v
}

#[async_trait::async_trait]
impl LlmProvider for OpenAiProvider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn chat(&self, request: ChatRequest, tokens: Option<TokenSink>) -> Result<ChatResponse, LlmError> {
        let stream = tokens.is_some();
        let resp = self.send(&self.body(&request, stream)).await?;
        // Some servers ignore `stream: true` and answer with one JSON body.
        let is_sse = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if let (Some(t), true) = (&tokens, is_sse) {
            return self.read_stream(resp, t).await;
        }
        let parsed = self.parse_completion(resp).await?;
        if let Some(t) = tokens {
            if !parsed.content.is_empty() {
                let _ = t.send(parsed.content.clone());
            }
        }
        Ok(parsed)
    }
}

impl OpenAiProvider {
    async fn parse_completion(&self, resp: reqwest::Response) -> Result<ChatResponse, LlmError> {
        let v: Value = resp.json().await.map_err(|e| self.protocol(format!("response is not JSON: {e}")))?;
        let choice = &v["choices"][0];
        if choice.is_null() {
            return Err(self.protocol(format!("no choices in {v}")));
        }
        let msg = &choice["message"];
        let tool_calls = msg["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                let args = c["function"]["arguments"].as_str().unwrap_or("{}");
                ToolCall {
                    id: c["id"].as_str().unwrap_or_default().to_owned(),
                    name: c["function"]["name"].as_str().unwrap_or_default().to_owned(),
                    arguments: serde_json::from_str(args).unwrap_or(Value::String(args.to_owned())),
                }
            })
            .collect();
        Ok(ChatResponse {
            content: msg["content"].as_str().unwrap_or_default().to_owned(),
            tool_calls,
            finish_reason: choice["finish_reason"].as_str().unwrap_or("stop").to_owned(),
            usage: parse_usage(&v["usage"]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_ignores_what_is_not_a_sane_number() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 0.5 "), Some(Duration::from_millis(500)));
        for bad in ["-1", "NaN", "inf", "1e400", "Wed, 21 Oct 2015 07:28:00 GMT", ""] {
            assert_eq!(parse_retry_after(bad), None, "{bad}");
        }
    }

    #[test]
    fn debug_never_shows_the_api_key() {
        let s = OpenAiSettings {
            base_url: "https://api.example.com/v1".into(),
            api_key: Some("sk-live-abcdef".into()),
            model: "m".into(),
            timeout: Duration::from_secs(1),
            max_retries: 0,
            backoff: Duration::from_millis(1),
        };
        let shown = format!("{s:?}");
        assert!(!shown.contains("sk-live") && shown.contains("<redacted>"), "{shown}");
    }
}
