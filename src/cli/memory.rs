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
            let v = client.get_json("/v1/memory/export").await?;
            let text = serde_json::to_string_pretty(&v).unwrap_or_default();
            match output {
                // Memory is private: the file is the user's alone (0600).
                Some(path) => {
                    write_private(path, &text).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?
                }
                None => println!("{text}"),
            }
        }
        MemoryCommand::Import { file } => {
            let bytes = std::fs::read(file).map_err(|e| CliError::Usage(format!("{}: {e}", file.display())))?;
            let (_, v) = client.request(Method::POST, "/v1/memory/import", Some(("application/json", bytes))).await?;
            if json_out {
                println!("{v}")
            } else {
                println!("imported {} entities", v["entities"])
            }
        }
    }
    Ok(())
}

/// Writes `text` to `path`, readable and writable by its owner only.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    // An existing file keeps its mode on open: set it.
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    file.write_all(text.as_bytes())
}
