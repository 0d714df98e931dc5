//! What a tool call can fail with, each limit by name, and how a failed
//! run is told apart.

use wasmtime::Trap;

use super::sandbox::Limits;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ToolError {
    #[error("not a valid WebAssembly module: {0}")]
    InvalidModule(String),
    #[error("memory limit exceeded: the module tried to grow past {limit_mb} MiB")]
    MemoryLimit { limit_mb: usize },
    #[error("CPU limit exceeded: the module used all of its {fuel} fuel")]
    CpuLimit { fuel: u64 },
    #[error("time limit exceeded: no result within {timeout_ms} ms")]
    Timeout { timeout_ms: u64 },
    #[error("output limit exceeded: the module wrote more than {limit} bytes")]
    OutputLimit { limit: usize },
    #[error("input limit exceeded: the request is {size} bytes, the limit is {limit}")]
    InputLimit { size: usize, limit: usize },
    #[error("the module never answered `initialize` (not an MCP server?)")]
    NoInitialize,
    #[error("the module trapped: {0}")]
    Trap(String),
    #[error("the module's answer is not MCP JSON-RPC: {0}")]
    Protocol(String),
    #[error("the tool returned an error ({code}): {message}")]
    Rpc { code: i64, message: String },
    /// A remote MCP server could not be reached or answered garbage.
    #[error("{0}")]
    Remote(String),
}

/// The limit (or fault) a failed run ran into; `denied_growth`: the
/// limiter refused the module memory.
pub(super) fn classify(e: wasmtime::Error, denied_growth: bool, limits: &Limits, written: usize) -> ToolError {
    match e.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => ToolError::CpuLimit { fuel: limits.fuel },
        Some(Trap::Interrupt) => ToolError::Timeout { timeout_ms: limits.timeout.as_millis() as u64 },
        _ if e.downcast_ref::<super::clock::DeadlineReached>().is_some() => {
            ToolError::Timeout { timeout_ms: limits.timeout.as_millis() as u64 }
        }
        _ if denied_growth => ToolError::MemoryLimit { limit_mb: limits.max_memory_bytes >> 20 },
        // The output pipe refuses a write that would pass its capacity.
        _ if written >= limits.max_output_bytes || format!("{e:#}").contains("beyond capacity") => {
            ToolError::OutputLimit { limit: limits.max_output_bytes }
        }
        _ => ToolError::Trap(format!("{e:#}")),
    }
}
