//! What a tool session may use and touch: its limits, its `/data`, its
//! environment and network policy, and the per-session store data that
//! enforces them. Below both the host that runs sessions and the clock
//! that ends them.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::FsPerms;

/// What one session may use; each limit is reported by name when hit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Limits {
    pub max_memory_bytes: usize,
    pub fuel: u64,
    pub timeout: Duration,
    pub max_input_bytes: usize,
    pub max_output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_memory_bytes: 64 << 20,
            fuel: 2_000_000_000,
            timeout: Duration::from_secs(5),
            max_input_bytes: 1 << 20,
            max_output_bytes: 1 << 20,
        }
    }
}

/// A server's `/data`: a host directory and the most it may hold.
#[derive(Debug, Clone)]
pub struct DataDir {
    pub path: PathBuf,
    pub quota_bytes: u64,
}

impl DataDir {
    /// How `/data` is opened for the next call: read-write while under its
    /// quota, read-only once it holds the quota or more (until the server
    /// deletes files, which a read-only mount does not allow: the operator
    /// raises the quota or clears the directory). The check is per call, so
    /// one call may overshoot by what it writes before it ends.
    pub(super) fn perms(&self) -> FsPerms {
        let used = dir_usage(&self.path, self.quota_bytes);
        if used >= self.quota_bytes {
            tracing::warn!(
                dir = %self.path.display(),
                used,
                quota = self.quota_bytes,
                "a tool server's /data is at its quota: mounted read-only"
            );
            FsPerms::ReadOnly
        } else {
            FsPerms::ReadWrite
        }
    }
}

/// Bytes under `dir` (files only), counting up to `stop` (enough to decide).
fn dir_usage(dir: &std::path::Path, stop: u64) -> u64 {
    let mut used = 0u64;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                used = used.saturating_add(meta.len());
            }
            if used >= stop {
                return used;
            }
        }
    }
    used
}

/// What a server may touch: nothing, unless declared.
#[derive(Debug, Clone, Default)]
pub struct Sandbox {
    /// Host directory preopened as `/data`, if declared and granted.
    pub preopen: Option<DataDir>,
    /// Environment variables the manifest declares (and only those).
    pub env: Vec<(String, String)>,
    /// Where `caxton.http_request` may go (nowhere by default).
    pub http: super::http::HttpPolicy,
}

/// A session's store: its WASI context and what enforces its limits.
pub(super) struct StoreData {
    pub(super) wasi: WasiP1Ctx,
    pub(super) max_memory: usize,
    pub(super) denied_growth: bool,
    pub(super) http: super::http::HttpPolicy,
    /// When the session's wall-clock limit runs out (host calls that block
    /// check it: HTTP requests and sleeps).
    pub(super) deadline: std::time::Instant,
    pub(super) max_output: usize,
}

impl ResourceLimiter for StoreData {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            self.denied_growth = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}
