//! `caxton key create|list|revoke`.

use reqwest::Method;
use serde_json::{json, Value};

use super::client::{ApiClient, CliError};
use super::{table, KeyCommand};

/// A table cell; an empty limit list means "no limit".
fn cell(v: &Value) -> String {
    match v {
        Value::Array(a) if a.is_empty() => "*".into(),
        other => table::cell(other),
    }
}

fn when(v: &Value) -> String {
    v.as_i64()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.format("%Y-%m-%d %H:%M:%SZ").to_string())
        .unwrap_or_else(|| "-".into())
}

pub async fn run(client: &ApiClient, cmd: &KeyCommand, json_out: bool) -> Result<(), CliError> {
    match cmd {
        KeyCommand::Create { name, scopes, agents, workspaces, expires, rate, burst } => {
            let body = json!({
                "name": name, "scopes": scopes, "agents": agents, "workspaces": workspaces,
                "expires_in": expires, "rate_per_second": rate, "burst": burst,
            });
            let (_, v) = client
                .request(Method::POST, "/v1/keys", Some(("application/json", body.to_string().into_bytes())))
                .await?;
            if json_out {
                println!("{v}");
            } else {
                println!("created key `{}` (id {}), scopes {}", cell(&v["name"]), cell(&v["id"]), cell(&v["scopes"]));
                println!("token (shown once; store it now):\n{}", v["token"].as_str().unwrap_or(""));
            }
        }
        KeyCommand::List => {
            let v = client.get_json("/v1/keys").await?;
            if json_out {
                println!("{v}");
                return Ok(());
            }
            let rows = v["keys"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|k| {
                    vec![
                        cell(&k["name"]),
                        cell(&k["id"]),
                        cell(&k["state"]),
                        cell(&k["scopes"]),
                        cell(&k["agents"]),
                        cell(&k["workspaces"]),
                        when(&k["expires_at_ms"]),
                        cell(&k["created_by"]),
                    ]
                })
                .collect();
            table::print(&["NAME", "ID", "STATE", "SCOPES", "AGENTS", "WORKSPACES", "EXPIRES", "CREATED_BY"], rows);
        }
        KeyCommand::Revoke { name } => {
            client.request(Method::DELETE, &format!("/v1/keys/{name}"), None).await?;
            if json_out {
                println!("{}", json!({"revoked": name}));
            } else {
                println!("revoked key `{name}`");
            }
        }
    }
    Ok(())
}
