//! A node started inside the calling process (benchmarks): no child
//! process, the same HTTP API on a loopback port.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::free_port;
use caxton::config::{ListenAddr, ServerConfig, Unset};
use caxton::node::Node;

pub struct InProcessNode {
    pub node: Node,
    /// `http://127.0.0.1:PORT` of the API.
    pub base: String,
    dir: tempfile::TempDir,
}

impl InProcessNode {
    /// Starts a one-node cluster on loopback ports in a fresh temp dir, logging
    /// errors only; `configure` adjusts the config before the start.
    pub async fn start(configure: impl FnOnce(&mut ServerConfig)) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut config = ServerConfig::default();
        config.server.listen = ListenAddr::new(SocketAddr::from(([127, 0, 0, 1], 0)));
        config.server.metrics_listen = Unset::default();
        config.cluster.rpc_listen = ListenAddr::new(SocketAddr::from(([127, 0, 0, 1], free_port())));
        config.server.data_dir = dir.path().join("data");
        config.log.level = "error".into();
        configure(&mut config);
        let node = Node::start(config).await?;
        let base = format!("http://{}", node.api_addr);
        Ok(Self { node, base, dir })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The temp dir holding `data/` (removed when the returned guard of
    /// [`Self::shutdown`], or this node, is dropped).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Graceful shutdown; the data dir stays until the returned guard drops.
    pub async fn shutdown(self) -> tempfile::TempDir {
        self.node.shutdown().await;
        self.dir
    }
}
