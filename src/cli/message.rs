//! `caxton message send`, `caxton conversation show`, `caxton chat`.

use std::io::{BufRead, Write};

use futures::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};

use super::client::{ApiClient, CliError};
use crate::sse::SseDecoder;

pub struct SendArgs<'a> {
    pub to: Option<&'a str>,
    pub capability: Option<&'a str>,
    pub text: &'a str,
    pub asynchronous: bool,
    pub conversation: Option<&'a str>,
}

pub async fn send(client: &ApiClient, a: SendArgs<'_>, json_out: bool) -> Result<(), CliError> {
    let mut body = json!({"content": a.text, "mode": if a.asynchronous { "async" } else { "sync" }});
    match (a.to, a.capability) {
        (Some(t), None) => body["to"] = json!(t),
        (None, Some(c)) => body["capability"] = json!(c),
        _ => return Err(CliError::Usage("give exactly one of --to NAME or --capability CAP".into())),
    }
    if let Some(c) = a.conversation {
        body["conversation_id"] = json!(c);
    }
    let (_, v) =
        client.request(Method::POST, "/v1/messages", Some(("application/json", body.to_string().into_bytes()))).await?;
    if json_out {
        println!("{v}");
        return Ok(());
    }
    let m = &v["message"];
    match v["reply"].as_object() {
        Some(reply) => {
            println!("{}", reply["content"].as_str().unwrap_or(""));
            eprintln!(
                "(message {} to {}, conversation {})",
                m["id"].as_str().unwrap_or(""),
                m["receiver"].as_str().unwrap_or(""),
                m["conversation_id"].as_str().unwrap_or("")
            );
            if reply["kind"] == "error" {
                return Err(CliError::Server(format!("the agent failed: {}", reply["content"].as_str().unwrap_or(""))));
            }
        }
        None => println!(
            "accepted: message {} to {} (conversation {})",
            m["id"].as_str().unwrap_or(""),
            m["receiver"].as_str().unwrap_or(""),
            m["conversation_id"].as_str().unwrap_or("")
        ),
    }
    Ok(())
}

pub async fn show_conversation(client: &ApiClient, id: &str, json_out: bool) -> Result<(), CliError> {
    let c = client.get_json(&format!("/v1/conversations/{id}")).await?;
    if json_out {
        println!("{}", serde_json::to_string_pretty(&c).unwrap_or_default());
        return Ok(());
    }
    println!(
        "conversation {} ({}, {})",
        c["id"].as_str().unwrap_or(""),
        c["protocol"].as_str().unwrap_or(""),
        c["state"].as_str().unwrap_or("")
    );
    for m in c["messages"].as_array().into_iter().flatten() {
        println!(
            "[{}] {} -> {}: {}",
            m["kind"].as_str().unwrap_or(""),
            m["sender"].as_str().unwrap_or(""),
            m["receiver"].as_str().unwrap_or(""),
            m["content"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

/// Reads one SSE stream, printing `token` events as they come; returns the
/// reply and the text printed.
async fn stream_reply(client: &ApiClient, id: &str) -> Result<(Value, String), CliError> {
    let resp = client.raw(Method::GET, &format!("/v1/messages/{id}/stream")).await?;
    let mut body = resp.bytes_stream();
    let mut sse = SseDecoder::default();
    let mut out = std::io::stdout();
    let mut printed = String::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| CliError::Server(format!("stream broke: {e}")))?;
        for ev in sse.feed(&chunk) {
            match ev.event.as_str() {
                "token" => {
                    print!("{}", ev.data);
                    printed.push_str(&ev.data);
                    let _ = out.flush();
                }
                "reply" => {
                    return serde_json::from_str(&ev.data)
                        .map(|v| (v, printed))
                        .map_err(|e| CliError::Server(e.to_string()))
                }
                "error" => return Err(CliError::Server(ev.data)),
                _ => {}
            }
        }
    }
    Err(CliError::Server("the stream ended without a reply".into()))
}

/// An interactive session: each line is a message; tokens stream as they arrive.
pub async fn chat(client: &ApiClient, agent: &str) -> Result<(), CliError> {
    let conversation = uuid::Uuid::now_v7().to_string();
    eprintln!("chatting with {agent} (conversation {conversation}); end with Ctrl-D");
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        eprint!("> ");
        let Some(Ok(line)) = lines.next() else { break };
        if line.trim().is_empty() {
            continue;
        }
        let body = json!({"to": agent, "content": line, "mode": "async", "conversation_id": conversation});
        let (_, v) = client
            .request(Method::POST, "/v1/messages", Some(("application/json", body.to_string().into_bytes())))
            .await?;
        let id = v["message"]["id"].as_str().unwrap_or_default().to_owned();
        let (reply, streamed) = stream_reply(client, &id).await?;
        // Whatever did not arrive as tokens (answered before we listened,
        // or longer than the server's replay buffer).
        if reply["kind"] == "response" {
            let content = reply["content"].as_str().unwrap_or("");
            let (crate::messaging::Unstreamed::Rest(text) | crate::messaging::Unstreamed::Whole(text)) =
                crate::messaging::unstreamed(content, &streamed);
            print!("{text}");
        }
        println!();
        if reply["kind"] == "error" {
            eprintln!("error: {}", reply["content"].as_str().unwrap_or(""));
        }
    }
    Ok(())
}
