//! The façade: one running cluster member replicating an [`Application`].
//!
//! [`Cluster`] is split by job, each file depending only on those listed
//! after it: membership administration and shutdown (`admin.rs`), what the
//! node reports about itself and its peers (`status.rs`), starting, reading
//! and writing (`cluster.rs`), and the errors callers see (`error.rs`).
//!
//! [`Application`]: crate::Application

mod admin;
mod backup;
mod cluster;
mod error;
mod features;
pub(crate) mod observe;
mod status;

pub use admin::AdminError;
pub use cluster::Cluster;
pub use error::StartError;
pub use status::{ClusterStatus, MemberStatus, MemberView, RaftRole};
