//! Human-readable output: aligned columns, no decoration.

use serde_json::Value;

pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

pub fn print(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row);
    }
}

pub fn agents(list: &[Value]) {
    let rows = list
        .iter()
        .map(|a| {
            ["name", "version", "revision", "state", "owner_node", "capabilities", "deployed_at"]
                .iter()
                .map(|k| cell(&a[*k]))
                .collect()
        })
        .collect();
    print(&["NAME", "VERSION", "REV", "STATE", "OWNER", "CAPABILITIES", "DEPLOYED"], rows);
}

pub fn agent(a: &Value) {
    for key in
        ["name", "version", "revision", "state", "owner_node", "capabilities", "tools", "deployed_at", "updated_at"]
    {
        println!("{key:<13} {}", cell(&a[key]));
    }
    let source = match a["source"]["kind"].as_str() {
        Some("file") => format!("file {}", cell(&a["source"]["value"])),
        _ => "api".to_owned(),
    };
    println!("{:<13} {source}", "source");
    if let Some(errors) = a["source_errors"].as_array().filter(|e| !e.is_empty()) {
        println!("source errors (the deployed revision keeps running):");
        for e in errors {
            println!("  line {}: {}: {}", cell(&e["line"]), cell(&e["field"]), cell(&e["reason"]));
        }
    }
}

pub fn cluster_status(s: &Value) {
    println!(
        "cluster {}\nnode {} ({}), leader {}, term {}, applied {}, snapshot {}",
        cell(&s["cluster_id"]),
        cell(&s["node_id"]),
        cell(&s["state"]),
        cell(&s["leader"]),
        cell(&s["term"]),
        cell(&s["applied_index"]),
        cell(&s["snapshot_index"])
    );
    let rows = s["members"]
        .as_array()
        .map(|m| {
            m.iter()
                .map(|m| {
                    let leader = if m["is_leader"] == true { "yes" } else { "" };
                    vec![
                        cell(&m["id"]),
                        cell(&m["role"]),
                        leader.to_owned(),
                        cell(&m["api_addr"]),
                        cell(&m["rpc_addr"]),
                        cell(&m["matched_index"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    print(&["ID", "ROLE", "LEADER", "API", "RPC", "MATCHED"], rows);
}

pub fn members(v: &Value) {
    let rows = v["members"]
        .as_array()
        .map(|m| {
            m.iter()
                .map(|m| {
                    let leader = if m["is_leader"] == true { "yes" } else { "" };
                    vec![
                        cell(&m["id"]),
                        cell(&m["role"]),
                        leader.to_owned(),
                        cell(&m["alive"]),
                        cell(&m["ready"]),
                        cell(&m["load"]),
                        cell(&m["api_addr"]),
                        cell(&m["rpc_addr"]),
                        cell(&m["gossip_addr"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    print(&["ID", "ROLE", "LEADER", "ALIVE", "READY", "LOAD", "API", "RPC", "GOSSIP"], rows);
}

pub fn placement(v: &Value) {
    println!("{} of {} shards assigned, max epoch {}", cell(&v["assigned"]), cell(&v["shards"]), cell(&v["max_epoch"]));
    let rows = v["nodes"]
        .as_array()
        .map(|n| n.iter().map(|n| vec![cell(&n["node"]), cell(&n["shards"]), cell(&n["agents"])]).collect())
        .unwrap_or_default();
    print(&["NODE", "SHARDS", "AGENTS"], rows);
}

pub fn done(v: &Value) {
    println!("{}", v["detail"].as_str().unwrap_or("ok"));
}

fn time_of(ms: &Value) -> String {
    ms.as_i64()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "-".into())
}

/// `agent history`: one row per revision, the serving one marked.
pub fn revisions(h: &Value) {
    let serving = h["serving"].as_u64();
    let rows = h["revisions"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|r| {
                    let mark = if r["revision"].as_u64() == serving { "*" } else { "" };
                    vec![
                        format!("{}{mark}", cell(&r["revision"])),
                        cell(&r["version"]),
                        time_of(&r["deployed_at_ms"]),
                        cell(&r["deployed_by"]),
                        cell(&r["hash"]).chars().take(12).collect(),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    print(&["REVISION", "VERSION", "DEPLOYED", "BY", "HASH"], rows);
}

fn figures(f: &Value) -> String {
    if f.is_null() {
        return "-".into();
    }
    let n = f["requests"].as_u64().unwrap_or(0);
    let pct = |k: &str| if n == 0 { 0.0 } else { f[k].as_u64().unwrap_or(0) as f64 * 100.0 / n as f64 };
    let p95 = f["p95_ms"].as_u64().map(|p| format!("{p} ms")).unwrap_or_else(|| "-".into());
    format!("{n} requests, {:.1} % errors, {:.1} % timeouts, p95 {p95}", pct("errors"), pct("timeouts"))
}

/// `agent rollout status`: where it is and what the analysis saw.
pub fn rollout(r: &Value) {
    let steps = r["spec"]["steps"].as_array().map(Vec::len).unwrap_or(0);
    println!("agent:      {}", cell(&r["agent"]));
    println!("strategy:   {}", cell(&r["spec"]["strategy"]));
    println!("state:      {}", cell(&r["state"]));
    println!("revisions:  stable {} -> candidate {}", cell(&r["stable"]), cell(&r["candidate"]));
    let weight = r["weight"].as_u64().unwrap_or(0);
    println!("weights:    stable {} %, candidate {weight} %", 100 - weight.min(100));
    if steps > 0 {
        println!("step:       {} of {steps}", r["step"].as_u64().unwrap_or(0) + 1);
    }
    if let Some(left) = r["step_time_left_ms"].as_i64() {
        println!("step ends:  in {:.0} s", left as f64 / 1000.0);
    }
    if !r["candidate_now"].is_null() {
        println!("candidate:  {}", figures(&r["candidate_now"]));
        println!("stable:     {}", figures(&r["stable_now"]));
    }
    let shadow = &r["shadow"];
    if !shadow.is_null() {
        println!("shadow:     {} copies sent, {}", cell(&shadow["sent"]), figures(&shadow["shadow"]));
        println!("stable:     {}", figures(&shadow["stable"]));
        let sim = |k: &str| shadow[k].as_f64().map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into());
        println!(
            "similarity: mean {}, min {} over {} compared answers",
            sim("similarity_mean"),
            sim("similarity_min"),
            cell(&shadow["compared"])
        );
    }
    let check = &r["last_check"];
    if !check.is_null() {
        let verdict = if check["passed"] == true { "passed" } else { "failed" };
        println!("last check: {verdict} at {}: {}", time_of(&check["at_ms"]), cell(&check["note"]));
        println!(
            "failed:     {} of {} allowed",
            cell(&r["failed_checks"]),
            cell(&r["spec"]["analysis"]["failure_limit"])
        );
    }
    if !r["reason"].is_null() {
        println!("reason:     {}", cell(&r["reason"]));
    }
}
