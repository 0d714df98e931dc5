//! The typed write handle over the cluster.

use std::sync::Arc;

use caxton_cluster::{Cluster, CodecError, WriteError};

use super::command::Command;
use super::envelope::Proposal;
use super::machine::CaxtonState;

/// Proposes commands to the cluster and hands back their typed answers.
#[derive(Clone)]
pub struct Store {
    cluster: Arc<Cluster<CaxtonState>>,
}

impl Store {
    pub fn new(cluster: Arc<Cluster<CaxtonState>>) -> Self {
        Self { cluster }
    }

    /// Whether every voter advertises `feature` (can apply what needs it).
    pub async fn supports(&self, feature: &str) -> bool {
        self.cluster.voters_lacking(feature).await.is_empty()
    }

    /// Commits `proposal` through Raft (forwarding to the leader) and
    /// returns once this node has applied it.
    pub async fn propose<P: Proposal + Into<Command>>(&self, proposal: P) -> Result<P::Output, WriteError> {
        if let Some(feature) = P::FEATURE {
            let lacking = self.cluster.voters_lacking(feature).await;
            if !lacking.is_empty() {
                return Err(WriteError::Rejected(format!(
                    "voters {lacking:?} do not advertise `{feature}` (an older version?): upgrade every node first"
                )));
            }
        }
        let response = self.cluster.write(&proposal.into()).await?;
        P::output(response)
            .map_err(|other| WriteError::Decode(CodecError::Json(format!("{} was answered with {other:?}", P::NAME))))
    }
}
