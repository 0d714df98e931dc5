//! Generic clustering for Caxton.
//!
//! Replicates any [`Application`] (a deterministic command → SQLite state
//! machine) with Raft, and owns node-to-node transport. Knows nothing of
//! agents. The façade is [`Cluster`]: start it with a [`ClusterConfig`] and
//! an application, then `write`, `read` and `status`.

mod application;
pub mod backup;
mod cached_sql;
mod catch_up;
mod codec;
mod config;
mod consensus;
mod identity;
mod limits;
mod local_member;
mod manager;
mod membership;
mod node;
mod observer;
pub mod pki;
pub mod placement;
pub mod recovery;
mod replica;
mod sealed_gossip;
mod secret;
mod storage;
pub mod trace_context;
mod transport;
mod types;
mod write_error;

pub use application::Application;
pub use cached_sql::CachedSql;
pub use codec::CodecError;
pub use config::{ClusterConfig, TlsFiles};
pub use membership::{GossipMember, GossipRole};
pub use node::{AdminError, Cluster, ClusterStatus, MemberStatus, MemberView, RaftRole, StartError};
pub use observer::WriteObserver;
pub use replica::{ReadError, Replica};
pub use storage::in_savepoint;
pub use transport::tls::TlsError;
pub use transport::TRACE_ID;
pub use types::{MemberRole, NodeAddr, NodeId};
pub use write_error::{WriteError, WriteOutcome};
