//! Several real `caxton` processes on loopback: formation, failover,
//! placement, snapshots, partitions, cluster identity, and replication of
//! tools and memory.
//!
//! One test binary (`cargo test --test cluster`), one module per area:
//! `cargo test --test cluster cluster_identity::` runs one of them.
//! At most two clusters run at once (see `caxton_testing::TestCluster`).

mod a2a;
mod cluster;
mod cluster_identity;
mod cluster_tls;
mod console;
mod keys;
mod mcp_api;
mod memory;
mod observability;
mod operations;
mod protocols;
mod rollouts;
mod rpc_limits;
mod token_streams;

/// `caxton_testing` finds the binary at run time; unless `CAXTON_TEST_BIN`
/// chooses another, it must be the one cargo built for these tests.
#[test]
fn the_binary_under_test_is_the_one_cargo_built() {
    if std::env::var_os("CAXTON_TEST_BIN").is_none() {
        assert_eq!(caxton_testing::caxton_bin(), std::path::Path::new(env!("CARGO_BIN_EXE_caxton")));
    }
}
