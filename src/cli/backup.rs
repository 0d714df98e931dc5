//! `caxton cluster backup FILE` (over the API), and the offline commands
//! that found a new cluster from a backup or from a survivor's data:
//! `caxton cluster restore FILE --data-dir DIR` and `caxton cluster recover
//! --data-dir DIR --force-new-cluster`. The offline ones need no server,
//! and the node whose directory they change must be stopped.

use std::io::Write;
use std::path::{Path, PathBuf};

use caxton_cluster::backup::{self, BackupHeader};
use caxton_cluster::recovery::{self, Founded};
use futures::StreamExt;
use reqwest::Method;

use super::client::{ApiClient, CliError};

/// Streams a backup from the server into `file` (through `FILE.partial`,
/// renamed once its length and checksum match its header).
pub async fn save(client: &ApiClient, file: &Path, json: bool) -> Result<(), CliError> {
    let partial = partial_path(file);
    let written = download(client, &partial).await.and_then(|()| verify(&partial));
    let header = match written {
        Ok(h) => h,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    std::fs::rename(&partial, file).map_err(|e| usage(file, e))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&header).unwrap_or_default());
    } else {
        println!(
            "backup of cluster {} at index {} (term {}) from node {}: {} bytes, sha256 {}\nsaved to {}",
            header.cluster_id,
            header.index,
            header.term,
            header.node,
            header.bytes,
            header.sha256,
            file.display()
        );
    }
    Ok(())
}

fn partial_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

fn usage(path: &Path, e: impl std::fmt::Display) -> CliError {
    CliError::Usage(format!("{}: {e}", path.display()))
}

async fn download(client: &ApiClient, to: &Path) -> Result<(), CliError> {
    let resp = client.raw(Method::GET, "/v1/cluster/backup").await?;
    let mut out = std::fs::File::create(to).map_err(|e| usage(to, e))?;
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| CliError::Server(format!("the backup stream broke off: {e}")))?;
        out.write_all(&chunk).map_err(|e| usage(to, e))?;
    }
    out.sync_all().map_err(|e| usage(to, e))
}

/// Checks a downloaded file the way a restore will.
fn verify(file: &Path) -> Result<BackupHeader, CliError> {
    backup::check(file).map_err(|e| CliError::Server(e.to_string()))
}

/// `caxton cluster restore FILE --data-dir DIR [--node-id N]`.
pub fn restore(file: &Path, data_dir: &Path, node_id: u64, json: bool) -> Result<(), CliError> {
    let founded = offline(|| recovery::restore(file, data_dir, node_id))?;
    report(&founded, data_dir, "restored", json);
    Ok(())
}

/// `caxton cluster recover --data-dir DIR --force-new-cluster`.
pub fn recover(data_dir: &Path, force_new_cluster: bool, json: bool) -> Result<(), CliError> {
    if !force_new_cluster {
        return Err(CliError::Usage(
            "recover makes this node the only member of a new cluster: the other members' data is abandoned. \
             Run it only when a majority of voters is gone for good, on the survivor with the highest last \
             log index, with the node stopped; confirm with --force-new-cluster"
                .into(),
        ));
    }
    let founded = offline(|| recovery::force_new_cluster(data_dir))?;
    report(&founded, data_dir, "recovered", json);
    Ok(())
}

/// The storage layer blocks; keep it off the async workers.
fn offline(f: impl FnOnce() -> Result<Founded, recovery::RecoveryError>) -> Result<Founded, CliError> {
    tokio::task::block_in_place(f).map_err(|e| CliError::Usage(e.to_string()))
}

fn report(f: &Founded, data_dir: &Path, what: &str, json: bool) {
    if json {
        let v = serde_json::json!({"cluster_id": f.cluster_id, "node_id": f.node_id, "index": f.index, "term": f.term});
        println!("{v}");
        return;
    }
    println!(
        "{what}: {} is node {} of a new cluster {} at index {} (term {}).\n\
         Start it (`caxton server start --data-dir {}` with node id {}); it leads alone. \
         Then add nodes with empty data directories: they join as any node joins.",
        data_dir.display(),
        f.node_id,
        f.cluster_id,
        f.index,
        f.term,
        data_dir.display(),
        f.node_id
    );
}
