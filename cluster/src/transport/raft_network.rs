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

use super::{paths, RpcClient, RpcError};
use crate::types::{NodeAddr, NodeId, TypeConfig};

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
        let result: Result<Resp, RaftError<NodeId, E>> =
            self.client.call_member(&self.addr, Some(&self.incarnation), path, req, timeout).await.map_err(
                |e| match e {
                    RpcError::Unreachable { .. } => RPCError::Unreachable(Unreachable::new(&e)),
                    other => RPCError::Network(NetworkError::new(&other)),
                },
            )?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, NodeAddr, RaftError<NodeId>>> {
        self.send(paths::APPEND, &rpc, &option).await
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
