//! Reads over the local replica. [`Queries`] is one handle; its methods
//! live beside the records they read, in the file of each capability
//! (`agents.rs`, `messages.rs`, `memory.rs`, `tools.rs`).

use caxton_cluster::Replica;

#[derive(Clone)]
pub struct Queries {
    replica: Replica,
}

impl Queries {
    pub fn new(replica: Replica) -> Self {
        Self { replica }
    }

    pub(crate) fn replica(&self) -> &Replica {
        &self.replica
    }
}
