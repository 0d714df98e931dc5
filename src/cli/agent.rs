use std::path::{Path, PathBuf};

use reqwest::Method;

use super::client::{ApiClient, CliError};
use super::{table, AgentCommand, RolloutCommand};

fn agent_files(path: &Path) -> Result<Vec<PathBuf>, CliError> {
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(CliError::Usage(format!("{}: no *.toml files", path.display())));
        }
        Ok(files)
    } else {
        Ok(vec![path.to_path_buf()])
    }
}

fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b == b'-' { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

pub async fn run(client: &ApiClient, cmd: &AgentCommand, json: bool) -> Result<(), CliError> {
    match cmd {
        AgentCommand::Deploy { path, strategy } => {
            let mut failures = Vec::new();
            let url = match strategy {
                Some(s) => format!("/v1/agents?strategy={}", encode(s)),
                None => "/v1/agents".to_owned(),
            };
            for file in agent_files(path)? {
                let text = std::fs::read(&file).map_err(|e| CliError::Usage(format!("{}: {e}", file.display())))?;
                match client.request(Method::POST, &url, Some(("application/toml", text))).await {
                    Ok((_, v)) => {
                        if json {
                            println!("{v}");
                        } else {
                            let what = if v["created"] == true {
                                "created"
                            } else if v["changed"] == true {
                                "updated"
                            } else {
                                "unchanged"
                            };
                            println!(
                                "{}: {} revision {} ({what})",
                                file.display(),
                                v["name"].as_str().unwrap_or("?"),
                                v["revision"]
                            );
                        }
                    }
                    // The server names the body; name the file for the person.
                    Err(CliError::Server(msg)) => failures.push(format!(
                        "{}: {}",
                        file.display(),
                        msg.replace("(request body)", &file.display().to_string())
                    )),
                    Err(e) => return Err(e),
                }
            }
            if failures.is_empty() {
                Ok(())
            } else {
                Err(CliError::Server(failures.join("\n")))
            }
        }
        AgentCommand::List { capability } => {
            let mut agents = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let mut path = "/v1/agents?limit=500".to_owned();
                if let Some(c) = capability {
                    path.push_str(&format!("&capability={}", encode(c)));
                }
                if let Some(a) = &after {
                    path.push_str(&format!("&after={}", encode(a)));
                }
                let page = client.get_json(&path).await?;
                agents.extend(page["agents"].as_array().cloned().unwrap_or_default());
                match page["next"].as_str() {
                    Some(n) => after = Some(n.to_owned()),
                    None => break,
                }
            }
            if json {
                println!("{}", serde_json::Value::Array(agents));
            } else {
                table::agents(&agents);
            }
            Ok(())
        }
        AgentCommand::Get { name } => {
            let a = client.get_json(&format!("/v1/agents/{}", encode(name))).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&a).unwrap_or_default());
            } else {
                table::agent(&a);
            }
            Ok(())
        }
        AgentCommand::History { name } => {
            let h = client.get_json(&format!("/v1/agents/{}/revisions", encode(name))).await?;
            if json {
                println!("{h}");
            } else {
                table::revisions(&h);
            }
            Ok(())
        }
        AgentCommand::Rollback { name, to } => {
            let body = serde_json::json!({ "to": to }).to_string().into_bytes();
            let path = format!("/v1/agents/{}/rollback", encode(name));
            let (_, v) = client.request(Method::POST, &path, Some(("application/json", body))).await?;
            if json {
                println!("{v}");
            } else if v["changed"] == true {
                println!("{name}: revision {} restores revision {}", v["revision"], v["restored"]);
            } else {
                println!("{name}: revision {} already serves that definition", v["revision"]);
            }
            Ok(())
        }
        AgentCommand::Rollout { command } => rollout(client, command, json).await,
        AgentCommand::Subscriptions { name, add, cancel } => {
            super::topic::subscriptions(client, name, add.as_deref(), cancel.as_deref(), json).await
        }
        AgentCommand::Remove { name } => {
            let (_, v) = client.request(Method::DELETE, &format!("/v1/agents/{}", encode(name)), None).await?;
            if json {
                println!("{v}")
            } else {
                println!("removed {}", v["name"].as_str().unwrap_or(name))
            }
            Ok(())
        }
    }
}

async fn rollout(client: &ApiClient, cmd: &RolloutCommand, json: bool) -> Result<(), CliError> {
    let (name, action) = match cmd {
        RolloutCommand::Status { name } => {
            let r = client.get_json(&format!("/v1/agents/{}/rollout", encode(name))).await?;
            if json {
                println!("{r}");
            } else {
                table::rollout(&r);
            }
            return Ok(());
        }
        RolloutCommand::Promote { name } => (name, "promote"),
        RolloutCommand::Abort { name } => (name, "abort"),
        RolloutCommand::Pause { name } => (name, "pause"),
        RolloutCommand::Resume { name } => (name, "resume"),
    };
    let path = format!("/v1/agents/{}/rollout/{action}", encode(name));
    let (_, r) = client.request(Method::POST, &path, None).await?;
    if json {
        println!("{r}");
    } else {
        table::rollout(&r);
    }
    Ok(())
}
