//! `caxton mcp deploy|list|remove|call`.

use base64::Engine;
use reqwest::Method;
use serde_json::json;

use super::client::{ApiClient, CliError};
use super::{table, McpCommand};

fn usage(e: impl std::fmt::Display) -> CliError {
    CliError::Usage(e.to_string())
}

pub async fn run(client: &ApiClient, cmd: &McpCommand, json_out: bool) -> Result<(), CliError> {
    match cmd {
        McpCommand::Deploy { dir } => {
            let manifest = std::fs::read_to_string(dir.join("manifest.toml"))
                .map_err(|e| usage(format!("{}/manifest.toml: {e}", dir.display())))?;
            let wasm: Vec<_> = std::fs::read_dir(dir)
                .map_err(|e| usage(format!("{}: {e}", dir.display())))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
                .collect();
            let [module_path] = wasm.as_slice() else {
                return Err(usage(format!(
                    "{}: expected exactly one .wasm module beside manifest.toml, found {}",
                    dir.display(),
                    wasm.len()
                )));
            };
            let module = std::fs::read(module_path).map_err(|e| usage(format!("{}: {e}", module_path.display())))?;
            let body =
                json!({"manifest": manifest, "module": base64::engine::general_purpose::STANDARD.encode(module)});
            let (_, v) = client
                .request(Method::POST, "/v1/mcp-servers", Some(("application/json", body.to_string().into_bytes())))
                .await?;
            if json_out {
                println!("{v}");
            } else {
                let tools: Vec<&str> =
                    v["tools"].as_array().into_iter().flatten().filter_map(|t| t["name"].as_str()).collect();
                println!(
                    "deployed {} {} (tools: {})",
                    v["name"].as_str().unwrap_or(""),
                    v["version"].as_str().unwrap_or(""),
                    tools.join(", ")
                );
            }
        }
        McpCommand::List => {
            let v = client.get_json("/v1/mcp-servers").await?;
            if json_out {
                println!("{v}");
            } else {
                let rows = v["servers"]
                    .as_array()
                    .map(|s| {
                        s.iter()
                            .map(|s| {
                                let tools: Vec<&str> = s["tools"]
                                    .as_array()
                                    .into_iter()
                                    .flatten()
                                    .filter_map(|t| t["name"].as_str())
                                    .collect();
                                vec![
                                    s["name"].as_str().unwrap_or("").to_owned(),
                                    s["version"].as_str().unwrap_or("").to_owned(),
                                    s["size_bytes"].to_string(),
                                    tools.join(","),
                                ]
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                table::print(&["NAME", "VERSION", "BYTES", "TOOLS"], rows);
            }
        }
        McpCommand::Remove { name } => {
            client.request(Method::DELETE, &format!("/v1/mcp-servers/{name}"), None).await?;
            println!("removed {name}");
        }
        McpCommand::Call { tool, arguments } => {
            let args: serde_json::Value =
                serde_json::from_str(arguments).map_err(|e| usage(format!("arguments are not JSON: {e}")))?;
            let body = json!({"arguments": args});
            let (_, v) = client
                .request(
                    Method::POST,
                    &format!("/v1/tools/{tool}/call"),
                    Some(("application/json", body.to_string().into_bytes())),
                )
                .await?;
            if json_out {
                println!("{v}");
            } else {
                println!("{}", v["content"][0]["text"].as_str().unwrap_or(&v.to_string()));
            }
            if v["isError"] == true {
                return Err(CliError::Server("the tool reported an error".into()));
            }
        }
    }
    Ok(())
}
