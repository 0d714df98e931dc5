//! `caxton auction start|show|list`, `caxton negotiation start|show`.

use reqwest::Method;
use serde_json::{json, Value};

use super::client::{ApiClient, CliError};
use super::{table, AuctionCommand, NegotiationCommand};

/// Reads `path` until the protocol ended (polling with a server-side wait).
async fn until_over(client: &ApiClient, path: &str, open: &str) -> Result<Value, CliError> {
    loop {
        let v = client.get_json(&format!("{path}?wait_ms=60000")).await?;
        if v["state"] != open {
            return Ok(v);
        }
    }
}

async fn post(client: &ApiClient, path: &str, body: Value) -> Result<Value, CliError> {
    let body = Some(("application/json", body.to_string().into_bytes()));
    Ok(client.request(Method::POST, path, body).await?.1)
}

pub async fn auction(client: &ApiClient, cmd: &AuctionCommand, json_out: bool) -> Result<(), CliError> {
    let v = match cmd {
        AuctionCommand::Start(a) => {
            let mut body = json!({"kind": a.kind, "item": a.item, "reserve": a.reserve});
            match (&a.capability, a.bidders.is_empty()) {
                (Some(c), true) => body["capability"] = json!(c),
                (None, false) => body["bidders"] = json!(a.bidders),
                _ => {
                    return Err(CliError::Usage(
                        "give exactly one of --capability CAP or --bidder NAME (repeatable)".into(),
                    ))
                }
            }
            for (key, value) in [
                ("increment", a.increment.map(|v| json!(v))),
                ("round_ms", a.round_ms.map(|v| json!(v))),
                ("max_rounds", a.max_rounds.map(|v| json!(v))),
                ("pricing", a.pricing.as_ref().map(|v| json!(v))),
                ("deadline_ms", a.deadline_ms.map(|v| json!(v))),
            ] {
                if let Some(value) = value {
                    body[key] = value;
                }
            }
            let started = post(client, "/v1/auctions", body).await?;
            let id = started["id"].as_str().unwrap_or_default().to_owned();
            if !json_out {
                eprintln!("auction {id} started among {}", table::cell(&started["bidders"]));
            }
            if a.no_wait {
                started
            } else {
                until_over(client, &format!("/v1/auctions/{id}"), "open").await?
            }
        }
        AuctionCommand::Show { id } => client.get_json(&format!("/v1/auctions/{id}")).await?,
        AuctionCommand::List { open } => {
            let list = client.get_json(&format!("/v1/auctions?open={open}")).await?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&list).unwrap_or_default());
                return Ok(());
            }
            let rows = list
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| {
                    vec![
                        table::cell(&a["id"]),
                        table::cell(&a["rules"]["kind"]),
                        table::cell(&a["state"]),
                        table::cell(&a["result"]["reason"]),
                    ]
                })
                .collect();
            table::print(&["ID", "KIND", "STATE", "RESULT"], rows);
            return Ok(());
        }
    };
    if json_out {
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(());
    }
    println!(
        "auction {} ({}): {}",
        table::cell(&v["id"]),
        table::cell(&v["state"]),
        table::cell(&v["result"]["reason"])
    );
    let rows = v["bids"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| {
            let amount = if b["passed"] == true { "pass".to_owned() } else { table::cell(&b["amount"]) };
            vec![table::cell(&b["round"]), table::cell(&b["bidder"]), amount, table::cell(&b["rejected"])]
        })
        .collect();
    table::print(&["ROUND", "BIDDER", "BID", "REJECTED"], rows);
    Ok(())
}

pub async fn negotiation(client: &ApiClient, cmd: &NegotiationCommand, json_out: bool) -> Result<(), CliError> {
    let v = match cmd {
        NegotiationCommand::Start { subject, parties, max_rounds, deadline_ms, no_wait } => {
            let mut body = json!({"subject": subject, "parties": parties});
            if let Some(m) = max_rounds {
                body["max_rounds"] = json!(m);
            }
            if let Some(d) = deadline_ms {
                body["deadline_ms"] = json!(d);
            }
            let started = post(client, "/v1/negotiations", body).await?;
            let id = started["id"].as_str().unwrap_or_default().to_owned();
            if !json_out {
                eprintln!("negotiation {id} started between {}", parties.join(", "));
            }
            if *no_wait {
                started
            } else {
                until_over(client, &format!("/v1/negotiations/{id}"), "open").await?
            }
        }
        NegotiationCommand::Show { id } => client.get_json(&format!("/v1/negotiations/{id}")).await?,
    };
    if json_out {
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(());
    }
    println!("negotiation {} ({}): {}", table::cell(&v["id"]), table::cell(&v["state"]), table::cell(&v["reason"]));
    let rows = v["moves"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let what = m["terms"].as_str().or(m["reason"].as_str()).unwrap_or("");
            vec![table::cell(&m["round"]), table::cell(&m["party"]), table::cell(&m["kind"]), what.to_owned()]
        })
        .collect();
    table::print(&["ROUND", "PARTY", "MOVE", "TERMS / REASON"], rows);
    Ok(())
}
