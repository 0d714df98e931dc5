//! `CAXTON_*` environment overrides for every config key.
//!
//! The key list is not maintained by hand: it is read off the default config
//! serialized to TOML, so a new key is overridable the day it is added.
//! `server.listen` ↔ `CAXTON_SERVER_LISTEN`.

use toml::{Table, Value};

pub fn env_name(path: &[&str]) -> String {
    format!("CAXTON_{}", path.join("_").to_ascii_uppercase())
}

/// Leaf keys of `defaults`, as dotted paths with their default value.
fn leaves(prefix: &mut Vec<String>, table: &Table, out: &mut Vec<(Vec<String>, Value)>) {
    for (k, v) in table {
        prefix.push(k.clone());
        match v {
            Value::Table(t) => leaves(prefix, t, out),
            other => out.push((prefix.clone(), other.clone())),
        }
        prefix.pop();
    }
}

/// Reads the override for one key, typed like its default.
fn parse_like(default: &Value, raw: &str) -> Result<Value, String> {
    match default {
        Value::Integer(_) => raw.trim().parse().map(Value::Integer).map_err(|_| "expected an integer".into()),
        Value::Float(_) => raw.trim().parse().map(Value::Float).map_err(|_| "expected a number".into()),
        Value::Boolean(_) => match raw.trim() {
            "true" | "1" | "yes" => Ok(Value::Boolean(true)),
            "false" | "0" | "no" => Ok(Value::Boolean(false)),
            _ => Err("expected true or false".into()),
        },
        Value::Array(_) => Ok(Value::Array(
            raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| Value::String(s.into())).collect(),
        )),
        _ => Ok(Value::String(raw.to_owned())),
    }
}

/// Applies every set `CAXTON_*` override onto `doc`.
/// Errors name the variable, the value and why.
pub fn apply(
    doc: &mut Table,
    defaults: &Table,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<(), (String, String, String)> {
    let mut keys = Vec::new();
    leaves(&mut Vec::new(), defaults, &mut keys);
    for (path, default) in keys {
        let parts: Vec<&str> = path.iter().map(String::as_str).collect();
        let var = env_name(&parts);
        let Some(raw) = lookup(&var) else { continue };
        set_leaf(doc, &parts, &default, &raw).map_err(|why| (var.clone(), raw.clone(), why))?;
    }
    Ok(())
}

/// Sets the dotted `key` in `doc` from `raw`, typed like its default: the
/// one way a command-line flag and an environment variable become config.
pub fn set(doc: &mut Table, defaults: &Table, key: &str, raw: &str) -> Result<(), String> {
    let parts: Vec<&str> = key.split('.').collect();
    let mut default = None;
    let mut table = defaults;
    for (i, part) in parts.iter().enumerate() {
        match table.get(*part) {
            Some(Value::Table(t)) if i + 1 < parts.len() => table = t,
            Some(v) if i + 1 == parts.len() => default = Some(v),
            _ => break,
        }
    }
    let default = default.ok_or_else(|| format!("`{key}` is not a config key"))?;
    set_leaf(doc, &parts, default, raw)
}

fn set_leaf(doc: &mut Table, parts: &[&str], default: &Value, raw: &str) -> Result<(), String> {
    let value = parse_like(default, raw)?;
    let mut table = &mut *doc;
    for part in &parts[..parts.len() - 1] {
        let entry = table.entry(part.to_string()).or_insert_with(|| Value::Table(Table::new()));
        table = match entry {
            Value::Table(t) => t,
            _ => return Err(format!("`{part}` in the config file is not a table")),
        };
    }
    table.insert(parts[parts.len() - 1].to_owned(), value);
    Ok(())
}

/// Every overridable variable with its dotted key (for docs and tests).
pub fn all_variables(defaults: &Table) -> Vec<(String, String)> {
    let mut keys = Vec::new();
    leaves(&mut Vec::new(), defaults, &mut keys);
    keys.into_iter()
        .map(|(p, _)| {
            let parts: Vec<&str> = p.iter().map(String::as_str).collect();
            (p.join("."), env_name(&parts))
        })
        .collect()
}
