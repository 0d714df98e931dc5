//! The shipped deployment files, exercised for real: the container image,
//! a three-container cluster from deploy/docker-compose.yml (needs a Docker
//! daemon and docker-compose: `make docker`), and the variables the files
//! set. The Kubernetes manifests cannot run here (no cluster, no image
//! registry): `kubernetes` renders the kustomize base and every overlay with
//! `kubectl kustomize` (`make kubectl`) and checks the rendered objects (the
//! Pod Security "restricted" profile, resources, spread, disruption budget,
//! probes, network policy, advertised names, images); their conventions
//! (ordinal node ids, ordinal-0 bootstrap) are exercised by
//! tests/cluster/cluster_identity.rs, and their variables and the init
//! container's certificate by `files`.
//!
//! One test binary: `cargo test --test deploy`.

mod compose;
mod files;
mod kubernetes;
