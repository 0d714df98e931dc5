//! Warm sessions for tool servers that declare themselves stateless
//! (`stateless = true` in the manifest).
//!
//! A stateless server is started and initialised once, then serves call
//! after call over the same MCP stdio session, run on the caller's own task
//! (wasmtime's async fibers): no fresh instance, no `initialize` handshake
//! and no blocking-thread hop per call.
//!
//! What stays per call: the call's fuel and wall-clock limit start again
//! when the guest reads the request (a call hook sees the read return), its
//! output is counted against the output limit, and a call that hits any
//! limit, traps or exits ends the session; the next call starts a new one.
//! The guest yields to the executor every [`YIELD_FUEL`] units of fuel and
//! every epoch tick, so a busy tool shares the async workers with Raft
//! heartbeats and HTTP instead of holding one.
//!
//! Servers granted a `/data` directory or network access keep fresh
//! sessions (their state and their blocking calls are theirs alone), and a
//! call runs fresh too when every warm session is busy and none can start
//! (at most [`MAX_WARM`], within the node's tool memory budget).

use std::collections::{HashMap, VecDeque};
use std::future::{poll_fn, Future};
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::OwnedSemaphorePermit;
use wasmtime::{CallHook, Engine, InstancePre, Store};
use wasmtime_wasi::cli::{IsTerminal, StdinStream, StdoutStream};
use wasmtime_wasi::p2::{InputStream, OutputStream, Pollable, StreamError, StreamResult};
use wasmtime_wasi::WasiCtxBuilder;

use super::budget::MemoryBudget;
use super::errors::{classify, ToolError};
use super::jsonrpc::{initialize_request, initialized_notification, result_of};
use super::sandbox::{Limits, Sandbox, StoreData};

/// Warm sessions alive at once on a node, across servers (each holds an
/// instance slot of its own, beside the fresh sessions' slots).
pub(super) const MAX_WARM: u32 = 16;
/// Fuel a guest burns between yields to the executor (about a millisecond
/// of CPU: a typical call never yields, a long one shares the workers).
const YIELD_FUEL: u64 = 1_000_000;
/// How long a call waits for a busy session to come back before it runs
/// fresh instead: a fresh call costs ten warm ones, so waiting is the
/// cheaper way through a burst; a session busy for longer than this is
/// running a long call, beside which a fresh instance adds parallelism.
const WAIT_FOR_IDLE: Duration = Duration::from_millis(20);
/// An idle session is dropped after this long unused.
const IDLE: Duration = Duration::from_secs(60);
/// Calls a session serves before it is replaced: what a guest leaks
/// (memory it never frees) cannot grow without bound.
const MAX_CALLS: u32 = 100_000;

/// The session's stdin: lines the caller queues, read by the guest.
#[derive(Clone, Default)]
struct Feed {
    state: Arc<Mutex<FeedState>>,
    /// Set when the guest takes bytes: a new call has begun.
    delivered: Arc<AtomicBool>,
}

#[derive(Default)]
struct FeedState {
    queue: VecDeque<Bytes>,
    waker: Option<Waker>,
}

impl Feed {
    fn push(&self, line: Bytes) {
        let waker = {
            let mut s = self.state.lock();
            s.queue.push_back(line);
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Up to `size` bytes; none when nothing is queued.
    fn take(&self, size: usize) -> Bytes {
        let mut s = self.state.lock();
        let Some(front) = s.queue.front_mut() else { return Bytes::new() };
        let out = if front.len() <= size { s.queue.pop_front().unwrap_or_default() } else { front.split_to(size) };
        self.delivered.store(true, Ordering::Release);
        out
    }

    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut s = self.state.lock();
        if s.queue.is_empty() {
            s.waker = Some(cx.waker().clone());
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }
}

impl IsTerminal for Feed {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdinStream for Feed {
    fn p2_stream(&self) -> Box<dyn InputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncRead + Send + Sync> {
        Box::new(self.clone())
    }
}

impl InputStream for Feed {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        Ok(self.take(size))
    }
}

#[async_trait::async_trait]
impl Pollable for Feed {
    async fn ready(&mut self) {
        poll_fn(|cx| self.poll_ready(cx)).await
    }
}

impl tokio::io::AsyncRead for Feed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.poll_ready(cx).is_pending() {
            return Poll::Pending;
        }
        buf.put_slice(&self.take(buf.remaining()));
        Poll::Ready(Ok(()))
    }
}

/// The session's stdout: complete lines for the caller, counted against
/// the current call's output limit.
#[derive(Clone)]
struct Sink(Arc<Mutex<SinkState>>);

struct SinkState {
    partial: Vec<u8>,
    lines: VecDeque<Vec<u8>>,
    written: usize,
    limit: usize,
}

impl Sink {
    fn new(limit: usize) -> Self {
        Self(Arc::new(Mutex::new(SinkState { partial: Vec::new(), lines: VecDeque::new(), written: 0, limit })))
    }

    /// A new call: its output is counted from zero.
    fn reset(&self) {
        self.0.lock().written = 0;
    }

    fn written(&self) -> usize {
        self.0.lock().written
    }

    fn pop_line(&self) -> Option<Vec<u8>> {
        self.0.lock().lines.pop_front()
    }

    fn accept(&self, bytes: &[u8]) -> Result<(), String> {
        let mut s = self.0.lock();
        if bytes.len() > s.limit.saturating_sub(s.written) {
            s.written = s.limit;
            return Err("write beyond capacity of the call's output limit".into());
        }
        s.written += bytes.len();
        let mut rest = bytes;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            let mut line = std::mem::take(&mut s.partial);
            line.extend_from_slice(&rest[..end]);
            if !line.iter().all(u8::is_ascii_whitespace) {
                s.lines.push_back(line);
            }
            rest = &rest[end + 1..];
        }
        s.partial.extend_from_slice(rest);
        Ok(())
    }
}

impl IsTerminal for Sink {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Sink {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for Sink {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.accept(&bytes).map_err(|e| StreamError::trap(&e))
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        let s = self.0.lock();
        match s.limit.saturating_sub(s.written) {
            0 => Err(StreamError::trap("write beyond capacity of the call's output limit")),
            n => Ok(n),
        }
    }
}

#[async_trait::async_trait]
impl Pollable for Sink {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for Sink {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Poll::Ready(self.accept(buf).map(|()| buf.len()).map_err(std::io::Error::other))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The guest's `_start`, running (parked on stdin between calls), with the
/// store it owns; ends with the run's result and whether a memory growth
/// was refused.
type Run = Pin<Box<dyn Future<Output = (wasmtime::Result<()>, bool)> + Send>>;

/// One initialised MCP session, ready for `tools/call`.
pub(super) struct WarmSession {
    run: Run,
    feed: Feed,
    sink: Sink,
    next_id: i64,
    calls: u32,
    last_used: Instant,
    /// The run ended, or a call left it in an unknown state.
    dead: bool,
    /// Its instance slot and its share of the memory budget.
    _held: (OwnedSemaphorePermit, OwnedSemaphorePermit),
}

enum Event {
    Line(Vec<u8>),
    Ended((wasmtime::Result<()>, bool)),
}

impl WarmSession {
    /// Instantiates the server and does the MCP handshake.
    async fn start(
        engine: &Engine,
        pre: &InstancePre<StoreData>,
        limits: &Limits,
        sandbox: &Sandbox,
        held: (OwnedSemaphorePermit, OwnedSemaphorePermit),
    ) -> Result<Self, ToolError> {
        let (feed, sink) = (Feed::default(), Sink::new(limits.max_output_bytes));
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdin(feed.clone()).stdout(sink.clone()).stderr(std::io::empty()).args(&["tool"]);
        for (k, v) in &sandbox.env {
            wasi.env(k, v);
        }
        let data = StoreData {
            wasi: wasi.build_p1(),
            max_memory: limits.max_memory_bytes,
            denied_growth: false,
            http: sandbox.http.clone(),
            deadline: Instant::now() + limits.timeout,
            max_output: limits.max_output_bytes,
        };
        let mut store = Store::new(engine, data);
        let trap = |e: wasmtime::Error| ToolError::Trap(e.to_string());
        store.limiter(|d| d);
        store.set_fuel(limits.fuel).map_err(trap)?;
        store.fuel_async_yield_interval(Some(YIELD_FUEL)).map_err(trap)?;
        store.epoch_deadline_async_yield_and_update(1);
        let (delivered, fuel, timeout) = (feed.delivered.clone(), limits.fuel, limits.timeout);
        store.call_hook(move |mut ctx, hook| {
            if matches!(hook, CallHook::ReturningFromHost) && delivered.swap(false, Ordering::AcqRel) {
                ctx.set_fuel(fuel)?;
                ctx.data_mut().deadline = Instant::now() + timeout;
            }
            Ok(())
        });
        let pre = pre.clone();
        let run: Run = Box::pin(async move {
            let result = async {
                let instance = pre.instantiate_async(&mut store).await?;
                let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
                start.call_async(&mut store, ()).await
            }
            .await;
            (result, store.data().denied_growth)
        });
        let mut session =
            Self { run, feed, sink, next_id: 1, calls: 0, last_used: Instant::now(), dead: false, _held: held };
        let answer = session.exchange(&initialize_request(), 0, limits).await;
        match answer {
            Ok(a) if a.get("result").is_some() => {}
            Ok(_) | Err(ToolError::Protocol(_)) => return Err(ToolError::NoInitialize),
            Err(e) => return Err(e),
        }
        session.feed.push(line_of(&initialized_notification()));
        Ok(session)
    }

    /// `tools/call`; the session stays usable unless `dead` is set.
    async fn call(&mut self, name: &str, arguments: Value, limits: &Limits) -> Result<Value, ToolError> {
        let id = self.next_id;
        self.next_id += 1;
        self.calls += 1;
        let request = serde_json::json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": name, "arguments": arguments}});
        result_of(self.exchange(&request, id, limits).await?)
    }

    /// Sends one request and reads lines until the answer to `id`.
    async fn exchange(&mut self, request: &Value, id: i64, limits: &Limits) -> Result<Value, ToolError> {
        let line = line_of(request);
        if line.len() > limits.max_input_bytes {
            return Err(ToolError::InputLimit { size: line.len(), limit: limits.max_input_bytes });
        }
        self.sink.reset();
        self.feed.push(line);
        let answer = match tokio::time::timeout(limits.timeout, self.answer_to(id, limits)).await {
            Ok(answer) => answer,
            Err(_) => Err(ToolError::Timeout { timeout_ms: limits.timeout.as_millis() as u64 }),
        };
        if answer.is_err() {
            self.dead = true;
        }
        answer
    }

    async fn answer_to(&mut self, id: i64, limits: &Limits) -> Result<Value, ToolError> {
        loop {
            let event = poll_fn(|cx| {
                if let Some(line) = self.sink.pop_line() {
                    return Poll::Ready(Event::Line(line));
                }
                // The guest writes its answer while it runs, then parks on
                // stdin (pending) or ends (ready).
                if let Poll::Ready(end) = self.run.as_mut().poll(cx) {
                    return Poll::Ready(Event::Ended(end));
                }
                self.sink.pop_line().map_or(Poll::Pending, |line| Poll::Ready(Event::Line(line)))
            })
            .await;
            match event {
                Event::Line(line) => {
                    if let Some(answer) = answer_in(&line, id)? {
                        return Ok(answer);
                    }
                }
                Event::Ended((result, denied_growth)) => {
                    self.dead = true;
                    while let Some(line) = self.sink.pop_line() {
                        if let Some(answer) = answer_in(&line, id)? {
                            return Ok(answer);
                        }
                    }
                    return Err(match result {
                        Err(e) if e.downcast_ref::<wasmtime_wasi::I32Exit>().is_none_or(|c| c.0 != 0) => {
                            classify(e, denied_growth, limits, self.sink.written())
                        }
                        _ => ToolError::Protocol("the server exited without answering".into()),
                    });
                }
            }
        }
    }
}

fn line_of(message: &Value) -> Bytes {
    let mut line = message.to_string().into_bytes();
    line.push(b'\n');
    Bytes::from(line)
}

/// The message on `line` if it answers `id`; other messages (notifications,
/// answers to nothing) are skipped.
fn answer_in(line: &[u8], id: i64) -> Result<Option<Value>, ToolError> {
    let message: Value = serde_json::from_slice(line).map_err(|e| {
        ToolError::Protocol(format!("{e}: {}", String::from_utf8_lossy(line).chars().take(200).collect::<String>()))
    })?;
    Ok((message["id"] == id).then_some(message))
}

/// Idle warm sessions by what they were started with.
pub(super) struct WarmPool {
    idle: Mutex<HashMap<u64, Vec<WarmSession>>>,
    live: Arc<tokio::sync::Semaphore>,
    /// Told when a session is put back or its slot freed.
    returned: tokio::sync::Notify,
    swept: Mutex<Instant>,
}

impl Default for WarmPool {
    fn default() -> Self {
        Self {
            idle: Mutex::new(HashMap::new()),
            live: Arc::new(tokio::sync::Semaphore::new(MAX_WARM as usize)),
            returned: tokio::sync::Notify::new(),
            swept: Mutex::new(Instant::now()),
        }
    }
}

/// Whether calls with this sandbox may share a session: not when the
/// server has a `/data` of its own or may reach the network.
pub(super) fn eligible(sandbox: &Sandbox) -> bool {
    sandbox.preopen.is_none() && sandbox.http.allow.is_empty()
}

/// Sessions are shared only by calls to the same module under the same
/// limits and environment.
fn key(hash: &str, limits: &Limits, sandbox: &Sandbox) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    hash.hash(&mut h);
    (limits.max_memory_bytes, limits.fuel, limits.timeout, limits.max_input_bytes, limits.max_output_bytes)
        .hash(&mut h);
    sandbox.env.hash(&mut h);
    sandbox.http.allow_private.hash(&mut h);
    h.finish()
}

/// What a warm call needs from the host.
pub(super) struct Target<'a> {
    pub engine: &'a Engine,
    pub pre: &'a InstancePre<StoreData>,
    pub hash: &'a str,
    pub memory: &'a MemoryBudget,
}

impl WarmPool {
    /// Calls `name` on a warm session; `Err(arguments)` when none is free
    /// and none can start (the caller runs the call fresh).
    pub(super) async fn call(
        &self,
        target: Target<'_>,
        name: &str,
        arguments: Value,
        limits: &Limits,
        sandbox: &Sandbox,
    ) -> Result<Result<Value, ToolError>, Value> {
        let key = key(target.hash, limits, sandbox);
        let waited = Instant::now();
        let mut session = loop {
            // Listening before looking: a session put back in between is
            // not missed.
            let returned = self.returned.notified();
            tokio::pin!(returned);
            returned.as_mut().enable();
            if let Some(s) = self.take(key) {
                break s;
            }
            if let Some(held) = self.reserve(&target, limits) {
                match WarmSession::start(target.engine, target.pre, limits, sandbox, held).await {
                    Ok(s) => break s,
                    Err(e) => return Ok(Err(e)),
                }
            }
            let left = WAIT_FOR_IDLE.saturating_sub(waited.elapsed());
            if left.is_zero() || tokio::time::timeout(left, returned).await.is_err() {
                return Err(arguments);
            }
        };
        let result = session.call(name, arguments, limits).await;
        self.put(key, session);
        Ok(result)
    }

    fn take(&self, key: u64) -> Option<WarmSession> {
        self.idle.lock().get_mut(&key)?.pop()
    }

    /// A slot and memory for a new session, evicting the least recently
    /// used idle session (of any server) if that is what it takes.
    fn reserve(&self, target: &Target<'_>, limits: &Limits) -> Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)> {
        loop {
            let slot = self.live.clone().try_acquire_owned().ok();
            let memory = slot.as_ref().and_then(|_| target.memory.try_reserve(limits.max_memory_bytes));
            if let (Some(slot), Some(memory)) = (slot, memory) {
                return Some((slot, memory));
            }
            if !self.evict_oldest() {
                return None;
            }
        }
    }

    fn evict_oldest(&self) -> bool {
        let mut idle = self.idle.lock();
        let oldest = idle
            .iter()
            .flat_map(|(k, v)| v.iter().enumerate().map(move |(i, s)| (*k, i, s.last_used)))
            .min_by_key(|(_, _, used)| *used);
        let Some((key, i, _)) = oldest else { return false };
        let evicted = idle.get_mut(&key).map(|v| v.swap_remove(i));
        drop(idle);
        drop(evicted);
        true
    }

    fn put(&self, key: u64, mut session: WarmSession) {
        if session.dead || session.calls >= MAX_CALLS {
            // Its slot is free now: a waiter may start a session in it.
            drop(session);
            self.returned.notify_waiters();
            return;
        }
        session.last_used = Instant::now();
        self.idle.lock().entry(key).or_default().push(session);
        // Every waiter looks: the session may be for any of their servers.
        self.returned.notify_waiters();
        self.sweep();
    }

    /// Drops sessions idle past [`IDLE`] (checked at most once a second).
    fn sweep(&self) {
        {
            let mut swept = self.swept.lock();
            if swept.elapsed() < Duration::from_secs(1) {
                return;
            }
            *swept = Instant::now();
        }
        let mut expired = Vec::new();
        let mut idle = self.idle.lock();
        for sessions in idle.values_mut() {
            let (keep, old): (Vec<_>, Vec<_>) = sessions.drain(..).partition(|s| s.last_used.elapsed() < IDLE);
            *sessions = keep;
            expired.extend(old);
        }
        idle.retain(|_, v| !v.is_empty());
        drop(idle);
        drop(expired);
    }

    /// Sessions alive now (idle or serving a call).
    pub(super) fn live(&self) -> usize {
        MAX_WARM as usize - self.live.available_permits()
    }
}
