//! The shipped deployment files, exercised for real: the container image,
//! a three-container cluster from deploy/docker-compose.yml (needs a Docker
//! daemon and docker-compose: `make docker`), and the variables the files
//! set. The Kubernetes manifest cannot run here (no cluster, no image
//! registry); its conventions (ordinal node ids, ordinal-0 bootstrap) are
//! exercised by tests/cluster/cluster_identity.rs, and its variables by
//! `files`.
//!
//! One test binary: `cargo test --test deploy`.

mod compose;
mod files;
