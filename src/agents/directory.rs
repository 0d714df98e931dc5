//! The agents directory: `*.toml` files deployed at start and kept in sync.
//!
//! Polled rather than watched with inotify: polling works the same on every
//! filesystem (bind mounts, ConfigMap symlink swaps, network volumes) and a
//! rescan of a few hundred small files costs microseconds. A file is judged
//! by its content hash, so touching it without a change does nothing.

use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::registry::{AgentRegistry, RegistryError};
use crate::config::{AgentName, AgentSpec, FieldError};
use crate::state::AgentSource;

/// What the directory currently says about one file.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FileStatus {
    pub file: String,
    /// The agent the file defines (its last valid version, if broken now).
    pub agent: Option<String>,
    pub revision: Option<u64>,
    /// Why the current content was not deployed; the previous version runs on.
    pub errors: Vec<FieldError>,
}

#[derive(Clone)]
struct Tracked {
    hash: [u8; 32],
    agent: Option<AgentName>,
    revision: Option<u64>,
    errors: Vec<FieldError>,
}

#[derive(Clone)]
pub struct AgentsDirectory {
    dir: PathBuf,
    registry: AgentRegistry,
    files: Arc<RwLock<BTreeMap<String, Tracked>>>,
}

impl AgentsDirectory {
    pub fn new(dir: PathBuf, registry: AgentRegistry) -> Self {
        Self { dir, registry, files: Arc::new(RwLock::new(BTreeMap::new())) }
    }

    pub fn status(&self) -> Vec<FileStatus> {
        self.files
            .read()
            .iter()
            .map(|(file, t)| FileStatus {
                file: file.clone(),
                agent: t.agent.as_ref().map(|a| a.to_string()),
                revision: t.revision,
                errors: t.errors.clone(),
            })
            .collect()
    }

    /// Errors of the file that defines `agent`, if that file is broken now.
    pub fn errors_for(&self, agent: &AgentName) -> Vec<FieldError> {
        self.files
            .read()
            .values()
            .find(|t| t.agent.as_ref() == Some(agent))
            .map(|t| t.errors.clone())
            .unwrap_or_default()
    }

    /// Scans once: deploys new and changed files, removes agents whose file
    /// is gone. At start, also removes file-sourced agents whose file
    /// disappeared while the node was down.
    pub async fn sync(&self, at_start: bool) {
        let present = match list_toml_files(&self.dir) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot read agents directory");
                return;
            }
        };
        for (file, path) in &present {
            self.sync_file(file, path).await;
        }
        let gone: Vec<(String, Tracked)> = {
            let files = self.files.read();
            files.iter().filter(|(f, _)| !present.contains_key(*f)).map(|(f, t)| (f.clone(), t.clone())).collect()
        };
        for (file, tracked) in gone {
            if let Some(agent) = &tracked.agent {
                self.remove_for_file(agent, &file).await;
            }
            self.files.write().remove(&file);
        }
        if at_start {
            self.remove_orphans(&present).await;
        }
    }

    async fn remove_orphans(&self, present: &BTreeMap<String, PathBuf>) {
        let Ok(sourced) = self.registry.queries().file_sourced_agents().await else { return };
        for (name, file) in sourced {
            if present.contains_key(&file) {
                continue;
            }
            if let Ok(agent) = AgentName::parse(&name) {
                self.remove_for_file(&agent, &file).await;
            }
        }
    }

    async fn remove_for_file(&self, agent: &AgentName, file: &str) {
        match self.registry.remove(agent, Some(AgentSource::File(file.to_owned()))).await {
            Ok(_) => tracing::info!(%agent, file, "agent file removed: agent removed"),
            Err(RegistryError::NotFound(_)) => {}
            Err(e) => tracing::error!(%agent, file, error = %e, "could not remove agent of deleted file"),
        }
    }

    async fn sync_file(&self, file: &str, path: &Path) {
        let text = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::warn!(file, error = %e, "cannot read agent file");
                return;
            }
        };
        let hash: [u8; 32] = Sha256::digest(&text).into();
        let previous = self.files.read().get(file).cloned();
        if previous.as_ref().is_some_and(|p| p.hash == hash) {
            return;
        }
        let label = path.display().to_string();
        let parsed = String::from_utf8(text)
            .map_err(|_| {
                vec![FieldError {
                    file: label.clone(),
                    line: None,
                    column: None,
                    field: "(file)".into(),
                    reason: "is not UTF-8 text".into(),
                }]
            })
            .and_then(|t| AgentSpec::from_toml(&t, &label).map(|s| (s, t)).map_err(|e| e.0));
        let keep = |errors: Vec<FieldError>| Tracked {
            hash,
            agent: previous.as_ref().and_then(|p| p.agent.clone()),
            revision: previous.as_ref().and_then(|p| p.revision),
            errors,
        };
        let tracked = match parsed {
            Err(errors) => {
                for e in &errors {
                    tracing::warn!(error = %e, "agent file rejected; the previous version keeps running");
                }
                keep(errors)
            }
            Ok((spec, text)) => {
                // A file renamed its agent: the old one goes with the old name.
                if let Some(old) = previous.as_ref().and_then(|p| p.agent.clone()) {
                    if old != spec.name {
                        self.remove_for_file(&old, file).await;
                    }
                }
                let name = spec.name.clone();
                match self.registry.deploy_file(spec, text, &label, AgentSource::File(file.to_owned())).await {
                    Ok(outcome) => {
                        if outcome.changed {
                            tracing::info!(agent = %name, file, revision = outcome.revision, "agent file deployed");
                        }
                        Tracked { hash, agent: Some(name), revision: Some(outcome.revision), errors: vec![] }
                    }
                    Err(e) => {
                        tracing::error!(agent = %name, file, error = %e, "agent file could not be deployed; will retry");
                        // Forget the hash so the next scan retries.
                        Tracked {
                            hash: [0; 32],
                            ..keep(vec![FieldError {
                                file: label,
                                line: None,
                                column: None,
                                field: "(deploy)".into(),
                                reason: e.to_string(),
                            }])
                        }
                    }
                }
            }
        };
        self.files.write().insert(file.to_owned(), tracked);
    }

    /// Rescans every `interval` until `stop`.
    pub async fn watch(self, interval: Duration, stop: CancellationToken) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => self.sync(false).await,
            }
        }
    }
}

/// `*.toml` files directly in `dir` (hidden and editor temp files skipped).
fn list_toml_files(dir: &Path) -> std::io::Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        if name.starts_with('.') || !name.ends_with(".toml") || !path.is_file() {
            continue;
        }
        out.insert(name.to_owned(), path);
    }
    Ok(out)
}
