//! A small HTTP server speaking the OpenAI Chat Completions wire format,
//! answering from a script: the stand-in for a remote paid LLM API.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

#[derive(Clone, Debug)]
pub struct StubReply {
    pub status: u16,
    pub body: Value,
    pub headers: Vec<(String, String)>,
    pub delay: Duration,
    /// For a request with `stream: true`: these chunks as SSE, `gap` apart.
    pub chunks: Option<(Vec<String>, Duration)>,
    /// For a request with `stream: true`: exactly these SSE `data:` payloads,
    /// nothing added (to play a provider that misbehaves).
    pub raw_frames: Option<Vec<String>>,
}

impl StubReply {
    pub fn text(content: &str) -> Self {
        Self::ok(json!({
            "id": "chatcmpl-stub", "object": "chat.completion", "created": 0, "model": "stub",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
        }))
    }

    pub fn tool_call(name: &str, args: Value) -> Self {
        Self::ok(json!({
            "id": "chatcmpl-stub", "object": "chat.completion", "created": 0, "model": "stub",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [
                {"id": format!("call_{name}"), "type": "function", "function": {"name": name, "arguments": args.to_string()}}
            ]}, "finish_reason": "tool_calls"}]
        }))
    }

    pub fn ok(body: Value) -> Self {
        Self { status: 200, body, headers: vec![], delay: Duration::ZERO, chunks: None, raw_frames: None }
    }

    /// Streams `chunks` one by one, `gap` apart, to a client that asks for a
    /// stream; answers them joined to one that does not.
    pub fn streamed(chunks: &[&str], gap: Duration) -> Self {
        Self { chunks: Some((chunks.iter().map(|c| c.to_string()).collect(), gap)), ..Self::text(&chunks.concat()) }
    }

    pub fn error(status: u16, message: &str) -> Self {
        Self {
            status,
            body: json!({"error": {"message": message, "type": "invalid_request_error"}}),
            headers: vec![],
            delay: Duration::ZERO,
            chunks: None,
            raw_frames: None,
        }
    }

    /// Streams exactly `frames` as SSE data (no closing chunk, no `[DONE]`
    /// unless given).
    pub fn raw_stream(frames: &[Value]) -> Self {
        Self { raw_frames: Some(frames.iter().map(|f| f.to_string()).collect()), ..Self::text("") }
    }

    pub fn with_header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }

    /// Reports this many prompt and completion tokens.
    pub fn with_usage(mut self, prompt: u32, completion: u32) -> Self {
        self.body["usage"] =
            json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion});
        self
    }

    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

type Responder = Box<dyn Fn(&Value) -> StubReply + Send + Sync>;

struct Inner {
    script: Mutex<VecDeque<StubReply>>,
    fallback: Mutex<Option<Responder>>,
    requests: Mutex<Vec<(Instant, Value)>>,
    /// Stream chunks written so far, over all requests.
    chunks_sent: std::sync::atomic::AtomicUsize,
}

#[derive(Clone)]
pub struct OpenAiStub {
    pub url: String,
    inner: Arc<Inner>,
}

async fn handle(State(inner): State<Arc<Inner>>, _headers: HeaderMap, Json(body): Json<Value>) -> Response {
    inner.requests.lock().unwrap().push((Instant::now(), body.clone()));
    let scripted = inner.script.lock().unwrap().pop_front();
    let reply = match scripted {
        Some(r) => r,
        None => match &*inner.fallback.lock().unwrap() {
            Some(f) => f(&body),
            None => StubReply::error(500, "stub script exhausted"),
        },
    };
    tokio::time::sleep(reply.delay).await;
    if let (Some(frames), true) = (reply.raw_frames.clone(), body["stream"] == json!(true)) {
        let text: String = frames.iter().map(|f| format!("data: {f}\n\n")).collect();
        return Response::builder().header("content-type", "text/event-stream").body(text.into()).unwrap();
    }
    if let (Some((chunks, gap)), true) = (reply.chunks.clone(), body["stream"] == json!(true)) {
        return sse(inner.clone(), chunks, gap);
    }
    let mut resp = (StatusCode::from_u16(reply.status).unwrap(), Json(reply.body)).into_response();
    for (k, v) in reply.headers {
        resp.headers_mut().insert(axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
    }
    resp
}

/// Chat completion chunks as OpenAI streams them, then `[DONE]`.
fn sse(inner: Arc<Inner>, chunks: Vec<String>, gap: Duration) -> Response {
    let frames = async_stream::stream! {
        for c in chunks {
            let chunk = json!({"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": 0, "model": "stub",
                "choices": [{"index": 0, "delta": {"content": c}, "finish_reason": null}]});
            yield Ok::<_, std::convert::Infallible>(format!("data: {chunk}\n\n"));
            inner.chunks_sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(gap).await;
        }
        let end = json!({"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": 0, "model": "stub",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
        yield Ok(format!("data: {end}\n\ndata: [DONE]\n\n"));
    };
    Response::builder().header("content-type", "text/event-stream").body(axum::body::Body::from_stream(frames)).unwrap()
}

impl OpenAiStub {
    pub async fn start() -> Self {
        let inner = Arc::new(Inner {
            script: Mutex::new(VecDeque::new()),
            fallback: Mutex::new(None),
            requests: Mutex::new(Vec::new()),
            chunks_sent: Default::default(),
        });
        let app = Router::new().route("/v1/chat/completions", post(handle)).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, inner }
    }

    /// Replies in order; when the script runs out, the responder (if any) answers.
    pub fn script(&self, replies: impl IntoIterator<Item = StubReply>) {
        self.inner.script.lock().unwrap().extend(replies);
    }

    pub fn respond_with(&self, f: impl Fn(&Value) -> StubReply + Send + Sync + 'static) {
        *self.inner.fallback.lock().unwrap() = Some(Box::new(f));
    }

    /// Stream chunks handed to the HTTP body so far (over all requests).
    pub fn chunks_sent(&self) -> usize {
        self.inner.chunks_sent.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<Value> {
        self.inner.requests.lock().unwrap().iter().map(|(_, v)| v.clone()).collect()
    }

    pub fn request_times(&self) -> Vec<Instant> {
        self.inner.requests.lock().unwrap().iter().map(|(t, _)| *t).collect()
    }

    /// Config lines declaring this stub as provider `name`.
    pub fn provider_config(&self, name: &str, extra: &str) -> String {
        format!(
            "[llm.providers.{name}]\nkind = \"openai\"\nbase_url = \"{}\"\nmodel = \"stub-model\"\nmax_retries = 3\nretry_backoff_ms = 50\n{extra}\n",
            self.url
        )
    }
}

/// The last message of a given role in a recorded request.
pub fn last_of_role(request: &Value, role: &str) -> Option<Value> {
    request["messages"].as_array()?.iter().rev().find(|m| m["role"] == role).cloned()
}
