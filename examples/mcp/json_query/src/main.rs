//! `json_query`: a JSON value plus a path (`a.b[0].c`, `items[*].name`,
//! `items[?price>10].name`) to the matching values.

use mcp_stdio::{serve, Tool, ToolFailure};
use serde_json::{json, Value};

#[derive(Debug)]
enum Step {
    Key(String),
    Index(usize),
    All,
    Filter { key: String, op: String, value: Value },
}

fn parse(path: &str) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    let mut rest = path.trim().trim_start_matches('$').trim_start_matches('.');
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').ok_or("unclosed `[`")?;
            let inner = &r[..end];
            steps.push(if inner == "*" {
                Step::All
            } else if let Some(f) = inner.strip_prefix('?') {
                let op = ["==", "!=", ">=", "<=", ">", "<"].into_iter().find(|o| f.contains(o)).ok_or("filter needs ==, !=, >, <, >= or <=")?;
                let (k, v) = f.split_once(op).ok_or("bad filter")?;
                let value = serde_json::from_str(v.trim()).unwrap_or(Value::String(v.trim().trim_matches('\'').to_owned()));
                Step::Filter { key: k.trim().to_owned(), op: op.to_owned(), value }
            } else {
                Step::Index(inner.parse().map_err(|_| format!("`{inner}` is not an index"))?)
            });
            rest = r[end + 1..].trim_start_matches('.');
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            steps.push(Step::Key(rest[..end].to_owned()));
            rest = rest[end..].trim_start_matches('.');
        }
    }
    Ok(steps)
}

fn compare(a: &Value, op: &str, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => match op {
            "==" => x == y,
            "!=" => x != y,
            ">" => x > y,
            "<" => x < y,
            ">=" => x >= y,
            _ => x <= y,
        },
        _ => match op {
            "==" => a == b,
            "!=" => a != b,
            _ => false,
        },
    }
}

fn apply(values: Vec<Value>, step: &Step) -> Vec<Value> {
    values
        .into_iter()
        .flat_map(|v| match step {
            Step::Key(k) => v.get(k).cloned().into_iter().collect::<Vec<_>>(),
            Step::Index(i) => v.get(*i).cloned().into_iter().collect(),
            Step::All => match v {
                Value::Array(a) => a,
                Value::Object(o) => o.into_iter().map(|(_, v)| v).collect(),
                _ => vec![],
            },
            Step::Filter { key, op, value } => match v {
                Value::Array(a) => a.into_iter().filter(|item| item.get(key).is_some_and(|x| compare(x, op, value))).collect(),
                _ => vec![],
            },
        })
        .collect()
}

fn main() {
    let tools = vec![Tool {
        name: "json_query",
        description: "Select values from JSON with a path: a.b[0].c, items[*].name, items[?price>10].name",
        input_schema: json!({"type": "object", "properties": {
            "json": {"description": "The JSON value (or a string holding JSON)"},
            "path": {"type": "string"}
        }, "required": ["json", "path"]}),
    }];
    serve("json_query", tools, |_, args| {
        let doc = match &args["json"] {
            Value::String(s) => serde_json::from_str(s).map_err(|e| ToolFailure(format!("`json` is not JSON: {e}")))?,
            v => v.clone(),
        };
        let steps = parse(args["path"].as_str().ok_or("`path` (a string) is required")?).map_err(ToolFailure)?;
        let matches = steps.iter().fold(vec![doc], |acc, s| apply(acc, s));
        Ok(json!({"matches": matches, "count": matches.len()}))
    });
}
