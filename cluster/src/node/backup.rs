//! Taking a backup on this member (the format is `crate::backup`'s).

use std::path::Path;

use super::cluster::Cluster;
use crate::application::Application;
use crate::backup::{copy_replica, scratch_dir, Backup, BackupError};

impl<A: Application> Cluster<A> {
    /// Copies the replica once it holds every write acknowledged anywhere
    /// so far; the copy is made beside the replica, on the data volume.
    pub async fn backup(&self) -> Result<Backup, BackupError> {
        self.linearizable().await?;
        let cluster_id = self.local.identity.get().unwrap_or_default();
        let replica = self.replica.path().to_path_buf();
        let scratch = replica.parent().map(scratch_dir).unwrap_or_else(|| scratch_dir(Path::new(".")));
        let node = self.node_id();
        tokio::task::spawn_blocking(move || copy_replica(&replica, &scratch, cluster_id, node))
            .await
            .map_err(|e| BackupError::Copy(e.to_string()))?
    }
}
