//! One node at a time: the real `caxton` binary on loopback (registry,
//! messages, agents, tools, memory, configuration, restarts and crashes)
//! and the in-process pieces behind it (WASM host, local model, embeddings).
//!
//! One test binary (`cargo test --test node`), one module per area:
//! `cargo test --test node messaging::` runs one of them.
//! Shared helpers: `caxton_testing`.

mod agent_runtime;
mod agent_validation;
mod agents_dir;
mod auth;
mod bounds;
mod browser;
mod console;
mod durability;
mod isolation;
mod limits;
mod local_model;
mod mcp_api;
mod mcp_host;
mod memory;
mod memory_model;
mod memory_postgres;
mod messaging;
mod openapi_problems;
mod poison;
mod registry_api;
mod remote_tools;
mod rollouts;
mod sample_agent;
mod sdk_clients;
mod server_config;
mod topics;
mod upgrade;

/// `caxton_testing` finds the binary at run time; unless `CAXTON_TEST_BIN`
/// chooses another, it must be the one cargo built for these tests.
#[test]
fn the_binary_under_test_is_the_one_cargo_built() {
    if std::env::var_os("CAXTON_TEST_BIN").is_none() {
        assert_eq!(caxton_testing::caxton_bin(), std::path::Path::new(env!("CARGO_BIN_EXE_caxton")));
    }
}
