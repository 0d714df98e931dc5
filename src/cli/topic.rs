//! `caxton topic publish|list|stream`, `caxton agent subscriptions`,
//! `caxton conversation list`.

use futures::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};

use super::client::{ApiClient, CliError};
use super::{table, TopicCommand};
use crate::sse::SseDecoder;

/// A path segment, percent-encoded (topics and patterns hold `*` and `>`).
pub(super) fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub async fn run(client: &ApiClient, cmd: &TopicCommand, json_out: bool) -> Result<(), CliError> {
    match cmd {
        TopicCommand::Publish { topic, text, id } => {
            let mut body = json!({"content": text});
            if let Some(id) = id {
                body["id"] = json!(id);
            }
            let path = format!("/v1/topics/{}/publications", encode(topic));
            let (_, v) =
                client.request(Method::POST, &path, Some(("application/json", body.to_string().into_bytes()))).await?;
            if json_out {
                println!("{v}");
            } else {
                let again = if v["duplicate"] == true { " (already published)" } else { "" };
                println!(
                    "published {} to {}: {} subscription(s) notified{again}",
                    v["id"].as_str().unwrap_or(""),
                    v["topic"].as_str().unwrap_or(""),
                    v["recipients"]
                );
            }
            Ok(())
        }
        TopicCommand::List => {
            let v = client.get_json("/v1/topics").await?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                return Ok(());
            }
            let rows = rows(&v, &["topic", "publications", "last_published_at_ms"]);
            table::print(&["TOPIC", "PUBLICATIONS", "LAST (ms)"], rows);
            Ok(())
        }
        TopicCommand::Stream { pattern, after } => {
            let mut path = format!("/v1/topics/{}/stream", encode(pattern));
            if let Some(after) = after {
                path.push_str(&format!("?after={after}"));
            }
            let resp = client.raw(Method::GET, &path).await?;
            let mut decoder = SseDecoder::default();
            let mut body = resp.bytes_stream();
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| CliError::Server(format!("stream broke: {e}")))?;
                for event in decoder.feed(&chunk) {
                    let p: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
                    if json_out {
                        println!("{}", event.data);
                    } else {
                        println!(
                            "#{} {} {}: {}",
                            p["position"],
                            p["topic"].as_str().unwrap_or(""),
                            p["publisher"].as_str().unwrap_or(""),
                            p["content"].as_str().unwrap_or("")
                        );
                    }
                }
            }
            Ok(())
        }
    }
}

/// An agent's subscriptions; with `add`, subscribe it first; with
/// `cancel`, cancel one first.
pub async fn subscriptions(
    client: &ApiClient,
    name: &str,
    add: Option<&str>,
    cancel: Option<&str>,
    json_out: bool,
) -> Result<(), CliError> {
    let base = format!("/v1/agents/{}/subscriptions", encode(name));
    if let Some(pattern) = add {
        let body = json!({"pattern": pattern}).to_string().into_bytes();
        let (_, v) = client.request(Method::POST, &base, Some(("application/json", body))).await?;
        eprintln!("subscribed {name} to {pattern} (subscription {})", v["id"].as_str().unwrap_or(""));
    }
    if let Some(id) = cancel {
        client.request(Method::DELETE, &format!("{base}/{}", encode(id)), None).await?;
        eprintln!("cancelled subscription {id}");
    }
    let v = client.get_json(&base).await?;
    if json_out {
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(());
    }
    table::print(
        &["PATTERN", "SOURCE", "ID", "CONVERSATION"],
        rows(&v, &["pattern", "source", "id", "conversation_id"]),
    );
    Ok(())
}

/// `caxton conversation list`.
pub async fn conversations(
    client: &ApiClient,
    protocol: Option<&str>,
    state: Option<&str>,
    participant: Option<&str>,
    json_out: bool,
) -> Result<(), CliError> {
    let query: Vec<String> = [("protocol", protocol), ("state", state), ("participant", participant)]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={}", encode(v))))
        .collect();
    let v = client.get_json(&format!("/v1/conversations?{}", query.join("&"))).await?;
    if json_out {
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(());
    }
    let mut list = rows(&v, &["id", "protocol", "state"]);
    for (row, c) in list.iter_mut().zip(v.as_array().into_iter().flatten()) {
        let people: Vec<&str> = c["participants"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        row.push(people.join(", "));
    }
    table::print(&["ID", "PROTOCOL", "STATE", "PARTICIPANTS"], list);
    Ok(())
}

fn rows(v: &Value, keys: &[&str]) -> Vec<Vec<String>> {
    v.as_array().into_iter().flatten().map(|item| keys.iter().map(|k| table::cell(&item[*k])).collect()).collect()
}
