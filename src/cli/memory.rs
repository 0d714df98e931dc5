//! `caxton memory add|search|export|import`.

use reqwest::Method;
use serde_json::json;

use super::client::{ApiClient, CliError};
use super::{table, MemoryCommand};

fn query_string(pairs: &[(&str, Option<String>)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    pairs.iter().filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", enc(v)))).collect::<Vec<_>>().join("&")
}

pub async fn run(client: &ApiClient, cmd: &MemoryCommand, json_out: bool) -> Result<(), CliError> {
    match cmd {
        MemoryCommand::Add { name, observations, entity_type, scope, agent, workspace } => {
            let body = json!({"name": name, "entity_type": entity_type, "scope": scope, "agent": agent, "workspace": workspace, "observations": observations});
            let (_, v) = client
                .request(Method::POST, "/v1/memory/entities", Some(("application/json", body.to_string().into_bytes())))
                .await?;
            if json_out {
                println!("{v}")
            } else {
                println!("stored {} observation(s) for {name}", observations.len())
            }
        }
        MemoryCommand::Search { query, scope, agent, workspace, limit, min_similarity } => {
            let qs = query_string(&[
                ("q", Some(query.clone())),
                ("scope", scope.clone()),
                ("agent", agent.clone()),
                ("workspace", workspace.clone()),
                ("limit", Some(limit.to_string())),
                ("min_similarity", min_similarity.map(|m| m.to_string())),
            ]);
            let v = client.get_json(&format!("/v1/memory/search?{qs}")).await?;
            if json_out {
                println!("{v}");
            } else {
                let rows = v["results"]
                    .as_array()
                    .map(|r| {
                        r.iter()
                            .map(|h| {
                                vec![
                                    format!("{:.3}", h["score"].as_f64().unwrap_or(0.0)),
                                    h["name"].as_str().unwrap_or("").to_owned(),
                                    h["entity_type"].as_str().unwrap_or("").to_owned(),
                                    h["observation"].as_str().unwrap_or("").to_owned(),
                                ]
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                table::print(&["SCORE", "NAME", "TYPE", "OBSERVATION"], rows);
            }
        }
        MemoryCommand::Export { output } => {
            let resp = client.raw(Method::GET, "/v1/memory/export").await?;
            let written = match output {
                // Memory is private: the file is the user's alone (0600).
                Some(path) => {
                    let file = open_private(path).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
                    copy_body(resp, tokio::fs::File::from_std(file)).await
                }
                None => copy_body(resp, tokio::io::stdout()).await,
            };
            written.map_err(|e| CliError::Server(format!("the export did not complete: {e}")))?;
        }
        MemoryCommand::Import { file } => {
            let imported = super::memory_import::import_file(client, file).await?;
            if json_out {
                println!("{}", json!({ "entities": imported }))
            } else {
                println!("imported {imported} entities")
            }
        }
    }
    Ok(())
}

/// Streams a response body into `out` (an export is never held whole).
async fn copy_body(resp: reqwest::Response, mut out: impl tokio::io::AsyncWrite + Unpin) -> std::io::Result<()> {
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        out.write_all(&chunk.map_err(std::io::Error::other)?).await?;
    }
    out.flush().await
}

/// Creates (or truncates) `path`, readable and writable by its owner only.
fn open_private(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(path)?;
    // An existing file keeps its mode on open: set it.
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(file)
}
