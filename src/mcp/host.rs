//! Compiling, caching and running tool servers.
//!
//! A call runs a fresh instance: no state leaks between calls or callers
//! (servers that declare themselves stateless may instead reuse a warm,
//! initialised session: see `warm`). Instances come pre-linked
//! (`InstancePre`) from the pooling allocator's preallocated slots, so a
//! fresh one costs microseconds, and at
//! most `MAX_CONCURRENT` run at once (one per slot; more would only queue
//! for the same two cores). The host feeds the MCP
//! handshake and the request to the module's stdin, runs it to completion
//! under its limits, and reads the JSON-RPC answers from its stdout.
//!
//! Limits, each reported by name when hit: linear memory (a resource
//! limiter refuses growth past the cap), CPU (fuel), wall-clock time (epoch
//! interruption, ticked by a host thread), input and output size.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, InstancePre, Linker, Module, PoolingAllocationConfig, Store,
};
use wasmtime_wasi::p1;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::WasiCtxBuilder;

use super::budget::MemoryBudget;
use super::errors::{classify, ToolError};
use super::jsonrpc::{answer, initialize_request, initialized_notification};
use super::sandbox::{Limits, Sandbox, StoreData};
use crate::config::tool_policy::DEFAULT_MEMORY_BUDGET_MB;

/// How often the epoch advances; wall-clock limits are counted in ticks.
const EPOCH_TICK: Duration = Duration::from_millis(5);
/// Instance slots in the pool, and so tool sessions running at once.
const MAX_CONCURRENT: u32 = 128;
/// The largest linear memory a manifest may allow (the wasm32 maximum).
const MAX_MEMORY_BYTES: usize = 4 << 30;

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ToolInfo {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(rename = "inputSchema", default)]
    pub input_schema: Value,
    /// MCP tool annotations (`readOnlyHint`, ...), as the server gave them.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub annotations: Value,
}

impl ToolInfo {
    /// The server declares the tool free of side effects.
    pub fn read_only(&self) -> bool {
        self.annotations["readOnlyHint"] == true
    }
}

/// A compiled, linked server, ready to instantiate: on a thread of its
/// own (`pre`) or on the caller's task (`warm`, for warm sessions).
#[derive(Clone)]
pub struct CompiledServer {
    pub hash: String,
    pre: InstancePre<StoreData>,
    warm: InstancePre<StoreData>,
}

pub struct McpHost {
    engine: Engine,
    linker: Linker<StoreData>,
    /// The same imports for warm sessions: WASI's async flavour and a
    /// sleep that awaits a timer.
    warm_linker: Linker<StoreData>,
    warm: super::warm::WarmPool,
    cache_dir: PathBuf,
    compiled: Mutex<HashMap<String, CompiledServer>>,
    /// One permit per pool slot.
    slots: Arc<tokio::sync::Semaphore>,
    /// What running sessions' memory limits may add up to.
    memory: MemoryBudget,
}

fn engine_config() -> Config {
    // Fresh sessions' slots, then warm sessions' own.
    let slots = MAX_CONCURRENT + super::warm::MAX_WARM;
    let mut pool = PoolingAllocationConfig::default();
    pool.total_core_instances(slots)
        .total_memories(slots)
        .total_tables(slots)
        .total_stacks(super::warm::MAX_WARM)
        .max_memory_size(MAX_MEMORY_BYTES)
        // Small tools touch little memory: keep a slot's first pages mapped
        // (zeroed, not unmapped) between instances.
        .linear_memory_keep_resident(1 << 20)
        .table_keep_resident(64 << 10);
    let mut config = Config::new();
    config.consume_fuel(true).epoch_interruption(true).allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

impl McpHost {
    pub fn new(cache_dir: &Path) -> anyhow::Result<Arc<Self>> {
        Self::with_memory_budget(cache_dir, DEFAULT_MEMORY_BUDGET_MB)
    }

    /// A host whose sessions' memory limits add up to at most `budget_mib`.
    pub fn with_memory_budget(cache_dir: &Path, budget_mib: u32) -> anyhow::Result<Arc<Self>> {
        std::fs::create_dir_all(cache_dir)?;
        let engine = Engine::new(&engine_config())?;
        let mut linker: Linker<StoreData> = Linker::new(&engine);
        p1::add_to_linker_sync(&mut linker, |d: &mut StoreData| &mut d.wasi)?;
        super::clock::link(&mut linker)?;
        link_http(&mut linker)?;
        let mut warm_linker: Linker<StoreData> = Linker::new(&engine);
        p1::add_to_linker_async(&mut warm_linker, |d: &mut StoreData| &mut d.wasi)?;
        super::clock::link_async(&mut warm_linker)?;
        // Warm sessions never have network access (see `warm::eligible`):
        // the policy refuses every request before any I/O.
        link_http(&mut warm_linker)?;
        let ticker = engine.weak();
        std::thread::Builder::new().name("wasm-epoch".into()).spawn(move || loop {
            std::thread::sleep(EPOCH_TICK);
            match ticker.upgrade() {
                Some(engine) => engine.increment_epoch(),
                None => return,
            }
        })?;
        Ok(Arc::new(Self {
            engine,
            linker,
            warm_linker,
            warm: Default::default(),
            cache_dir: cache_dir.to_path_buf(),
            compiled: Mutex::new(HashMap::new()),
            slots: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT as usize)),
            memory: MemoryBudget::new(budget_mib),
        }))
    }

    /// Compiles a module once per node: in memory by content hash, and on
    /// disk (`wasm-cache/HASH.cwasm`) across restarts.
    /// The already compiled server with this content hash, if any.
    pub fn compiled(&self, hash: &str) -> Option<CompiledServer> {
        self.compiled.lock().get(hash).cloned()
    }

    pub fn compile(&self, bytes: &[u8]) -> Result<CompiledServer, ToolError> {
        let hash = hex::encode(Sha256::digest(bytes));
        if let Some(c) = self.compiled.lock().get(&hash) {
            return Ok(c.clone());
        }
        let cached = self.cache_dir.join(format!("{hash}.cwasm"));
        // SAFETY: the file was written by `Module::serialize` of this engine
        // into our own cache directory; wasmtime checks its version header.
        let module = match unsafe { Module::deserialize_file(&self.engine, &cached) } {
            Ok(m) => m,
            Err(_) => {
                let m = Module::new(&self.engine, bytes).map_err(|e| ToolError::InvalidModule(format!("{e:#}")))?;
                if let Ok(serialized) = m.serialize() {
                    let tmp = cached.with_extension("tmp");
                    if std::fs::write(&tmp, serialized).is_ok() {
                        let _ = std::fs::rename(&tmp, &cached);
                    }
                }
                m
            }
        };
        let invalid = |e: wasmtime::Error| ToolError::InvalidModule(format!("{e:#}"));
        let pre = self.linker.instantiate_pre(&module).map_err(invalid)?;
        let warm = self.warm_linker.instantiate_pre(&module).map_err(invalid)?;
        let server = CompiledServer { hash: hash.clone(), pre, warm };
        self.compiled.lock().insert(hash, server.clone());
        Ok(server)
    }

    /// Runs one session: `requests` go to stdin, answers come from stdout.
    fn run(
        &self,
        server: &CompiledServer,
        requests: &[Value],
        limits: &Limits,
        sandbox: &Sandbox,
    ) -> Result<Vec<Value>, ToolError> {
        let mut input = String::new();
        for r in requests {
            input.push_str(&r.to_string());
            input.push('\n');
        }
        if input.len() > limits.max_input_bytes {
            return Err(ToolError::InputLimit { size: input.len(), limit: limits.max_input_bytes });
        }
        let stdout = MemoryOutputPipe::new(limits.max_output_bytes);
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdin(MemoryInputPipe::new(input))
            .stdout(stdout.clone())
            .stderr(MemoryOutputPipe::new(64 * 1024))
            .args(&["tool"]);
        for (k, v) in &sandbox.env {
            wasi.env(k, v);
        }
        if let Some(dir) = &sandbox.preopen {
            wasi.preopened_dir(&dir.path, "/data", dir.perms())
                .map_err(|e| ToolError::Trap(format!("cannot preopen {}: {e}", dir.path.display())))?;
        }
        let data = StoreData {
            wasi: wasi.build_p1(),
            max_memory: limits.max_memory_bytes,
            denied_growth: false,
            http: sandbox.http.clone(),
            deadline: std::time::Instant::now() + limits.timeout,
            max_output: limits.max_output_bytes,
        };
        let mut store = Store::new(&self.engine, data);
        store.limiter(|d| d);
        store.set_fuel(limits.fuel).map_err(|e| ToolError::Trap(e.to_string()))?;
        store.set_epoch_deadline((limits.timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64);
        let result = server.pre.instantiate(&mut store).and_then(|instance| {
            let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
            start.call(&mut store, ())
        });
        let output = stdout.contents();
        if let Err(e) = result {
            // A clean `exit(0)` is not a failure.
            let exited_ok = e.downcast_ref::<wasmtime_wasi::I32Exit>().is_some_and(|c| c.0 == 0);
            if !exited_ok {
                return Err(classify(e, store.data().denied_growth, limits, output.len()));
            }
        }
        if output.len() >= limits.max_output_bytes {
            return Err(ToolError::OutputLimit { limit: limits.max_output_bytes });
        }
        String::from_utf8_lossy(&output)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .map_err(|e| ToolError::Protocol(format!("{e}: {}", l.chars().take(200).collect::<String>())))
            })
            .collect()
    }

    /// Runs a session on a blocking thread, bounded by the wall-clock limit.
    async fn session(
        self: &Arc<Self>,
        server: &CompiledServer,
        requests: Vec<Value>,
        limits: Limits,
        sandbox: Sandbox,
    ) -> Result<Vec<Value>, ToolError> {
        let memory = self.memory.reserve(limits.max_memory_bytes).await;
        let slot = self.slots.clone().acquire_owned().await.map_err(|e| ToolError::Trap(e.to_string()))?;
        let (host, server) = (self.clone(), server.clone());
        tokio::task::spawn_blocking(move || {
            let _held = (slot, memory);
            host.run(&server, &requests, &limits, &sandbox)
        })
        .await
        .map_err(|e| ToolError::Trap(e.to_string()))?
    }

    fn handshake() -> Vec<Value> {
        vec![initialize_request(), initialized_notification()]
    }

    /// `initialize` then `tools/list`.
    pub async fn list_tools(
        self: &Arc<Self>,
        server: &CompiledServer,
        limits: Limits,
    ) -> Result<Vec<ToolInfo>, ToolError> {
        let mut requests = Self::handshake();
        requests.push(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}));
        let answers = self.session(server, requests, limits, Sandbox::default()).await?;
        let result = answer(answers, 1)?;
        serde_json::from_value(result["tools"].clone()).map_err(|e| ToolError::Protocol(format!("tools/list: {e}")))
    }

    /// `initialize` then `tools/call`; returns the call's `result`.
    pub async fn call_tool(
        self: &Arc<Self>,
        server: &CompiledServer,
        name: &str,
        arguments: Value,
        limits: Limits,
        sandbox: Sandbox,
    ) -> Result<Value, ToolError> {
        let mut requests = Self::handshake();
        requests.push(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name, "arguments": arguments}}));
        let answers = self.session(server, requests, limits, sandbox).await?;
        answer(answers, 1)
    }

    /// [`call_tool`](Self::call_tool) for a server that declares itself
    /// stateless: on a warm session when its sandbox allows one and one
    /// is free or can start, else fresh.
    pub async fn call_stateless(
        self: &Arc<Self>,
        server: &CompiledServer,
        name: &str,
        arguments: Value,
        limits: Limits,
        sandbox: Sandbox,
    ) -> Result<Value, ToolError> {
        if !super::warm::eligible(&sandbox) {
            return self.call_tool(server, name, arguments, limits, sandbox).await;
        }
        let target =
            super::warm::Target { engine: &self.engine, pre: &server.warm, hash: &server.hash, memory: &self.memory };
        match self.warm.call(target, name, arguments, &limits, &sandbox).await {
            Ok(result) => result,
            Err(arguments) => self.call_tool(server, name, arguments, limits, sandbox).await,
        }
    }

    /// Warm sessions alive on this node.
    pub fn warm_sessions(&self) -> usize {
        self.warm.live()
    }
}

/// `caxton.http_request(req_ptr, req_len, out_ptr, out_cap) -> i32`: the
/// request is JSON `{method, url, headers, body}`; the answer, JSON
/// `{"ok": {status, headers, body}}` or `{"error": "..."}`, is written at
/// `out_ptr`. Returns its length, or `-needed` if `out_cap` is too small.
/// Epoch interruption cannot stop a blocking host call, so the request's
/// own timeout is the time the call has left.
fn link_http(linker: &mut Linker<StoreData>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "caxton",
        "http_request",
        |mut caller: wasmtime::Caller<'_, StoreData>,
         req_ptr: i32,
         req_len: i32,
         out_ptr: i32,
         out_cap: i32|
         -> wasmtime::Result<i32> {
            let memory = caller
                .get_export("memory")
                .and_then(|e| e.into_memory())
                .ok_or_else(|| wasmtime::Error::msg("module exports no memory"))?;
            // Copied out of the guest's own memory (bounded by its memory
            // limit), never allocated from the length the guest claims.
            let (start, len) = (req_ptr.max(0) as usize, req_len.max(0) as usize);
            let buf = memory
                .data(&caller)
                .get(start..start.saturating_add(len))
                .ok_or_else(|| wasmtime::Error::msg("http_request: the request lies outside the module's memory"))?
                .to_vec();
            let data = caller.data();
            let left = data.deadline.saturating_duration_since(std::time::Instant::now());
            let answer = match serde_json::from_slice::<super::http::HttpRequest>(&buf) {
                Err(e) => json!({"error": format!("bad request JSON: {e}")}),
                Ok(req) if left.is_zero() => json!({"error": format!("no time left for {}", req.url)}),
                Ok(req) => match super::http::perform(&data.http, req, left, data.max_output) {
                    Ok(resp) => json!({"ok": resp}),
                    Err(e) => json!({"error": e}),
                },
            };
            let bytes = answer.to_string().into_bytes();
            if bytes.len() > out_cap.max(0) as usize {
                return Ok(-(bytes.len() as i32));
            }
            memory.write(&mut caller, out_ptr as usize, &bytes)?;
            Ok(bytes.len() as i32)
        },
    )?;
    Ok(())
}
