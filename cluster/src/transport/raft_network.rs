//! openraft's network, over the cluster RPC transport.

use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{paths, Peer, RpcClient, RpcError};
use crate::limits;
use crate::types::{Entry, NodeAddr, NodeId, TypeConfig};

/// Roughly what an entry costs on the wire (its payload, plus a margin for
/// the log id and framing).
fn wire_size(entry: &Entry) -> usize {
    const FRAMING: usize = 64;
    FRAMING
        + match &entry.payload {
            openraft::EntryPayload::Normal(payload) => payload.0.len(),
            openraft::EntryPayload::Membership(m) => {
                m.nodes().map(|(_, n)| n.rpc.len() + n.api.len() + n.incarnation.len() + 16).sum()
            }
            openraft::EntryPayload::Blank => 0,
        }
}

/// How many of `entries`, from the first, fit in `budget` bytes; at least
/// one, so an entry larger than the budget still travels (alone).
fn entries_within(entries: &[Entry], budget: usize) -> usize {
    let mut used = 0;
    let fits = entries
        .iter()
        .take_while(|e| {
            used += wire_size(e);
            used <= budget
        })
        .count();
    fits.max(1).min(entries.len())
}

pub struct Network {
    pub client: RpcClient,
}

pub struct Connection {
    client: RpcClient,
    target: NodeId,
    addr: String,
    incarnation: String,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &NodeAddr) -> Connection {
        Connection {
            client: self.client.clone(),
            target,
            addr: node.rpc.clone(),
            incarnation: node.incarnation.clone(),
        }
    }
}

impl Connection {
    async fn send<Req, Resp, E>(
        &self,
        path: &str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, NodeAddr, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let timeout = option.hard_ttl().max(Duration::from_millis(100));
        let peer = Peer { addr: &self.addr, node: Some(self.target), incarnation: Some(&self.incarnation) };
        let result: Result<Resp, RaftError<NodeId, E>> =
            self.client.call_member(peer, path, req, timeout).await.map_err(|e| match e {
                RpcError::Unreachable { .. } => RPCError::Unreachable(Unreachable::new(&e)),
                other => RPCError::Network(NetworkError::new(&other)),
            })?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    /// Sends at most `APPEND_BATCH` bytes of entries (at least one entry):
    /// when the batch is cut, a success covers only what was sent, which
    /// openraft takes as progress and continues from.
    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, NodeAddr, RaftError<NodeId>>> {
        let fits = entries_within(&rpc.entries, limits::APPEND_BATCH);
        if fits == rpc.entries.len() {
            return self.send(paths::APPEND, &rpc, &option).await;
        }
        rpc.entries.truncate(fits);
        let last_sent = rpc.entries.last().map(|e| e.log_id);
        let answer = self.send(paths::APPEND, &rpc, &option).await?;
        Ok(match answer {
            AppendEntriesResponse::Success => AppendEntriesResponse::PartialSuccess(last_sent),
            other => other,
        })
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, NodeAddr, RaftError<NodeId, InstallSnapshotError>>>
    {
        self.send(paths::SNAPSHOT, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, NodeAddr, RaftError<NodeId>>> {
        self.send(paths::VOTE, &rpc, &option).await
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;
    use crate::types::{LogId, Payload};

    fn entries(sizes: &[usize]) -> Vec<Entry> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, n)| Entry {
                log_id: LogId::new(CommittedLeaderId::new(1, 1), i as u64 + 1),
                payload: EntryPayload::Normal(Payload(vec![0; *n])),
            })
            .collect()
    }

    #[test]
    fn a_batch_is_cut_at_its_byte_budget_but_never_empty() {
        let mib = 1 << 20;
        assert_eq!(entries_within(&entries(&[10, 10, 10]), mib), 3, "small entries all go");
        assert_eq!(entries_within(&entries(&[mib / 2, mib / 2, mib / 2]), mib), 1, "two halves plus framing exceed it");
        assert_eq!(entries_within(&entries(&[mib / 4; 8]), mib), 3);
        assert_eq!(entries_within(&entries(&[5 * mib, 10]), mib), 1, "an entry over the budget travels alone");
        assert_eq!(entries_within(&entries(&[]), mib), 0);
    }
}
