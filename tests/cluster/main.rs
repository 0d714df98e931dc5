//! Several real `caxton` processes on loopback: formation, failover,
//! placement, snapshots, partitions, cluster identity, and replication of
//! tools and memory.
//!
//! One test binary (`cargo test --test cluster`), one module per area:
//! `cargo test --test cluster cluster_identity::` runs one of them.
//! At most two clusters run at once (see `caxton::testing::TestCluster`).

mod cluster;
mod cluster_identity;
mod mcp_api;
mod memory;

#[test]
fn the_binary_under_test_is_the_one_cargo_built() {
    assert_eq!(caxton::testing::caxton_bin(), std::path::Path::new(env!("CARGO_BIN_EXE_caxton")));
}
