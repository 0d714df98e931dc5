//! `csv_parser`: CSV text to rows, column types and summary statistics.

use mcp_stdio::{serve, Tool};
use serde_json::{json, Map, Value};

/// Splits one CSV record, honouring double-quoted fields.
fn split(line: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            c if c == sep && !quoted => out.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    out.push(field);
    out
}

fn main() {
    let tools = vec![Tool {
        name: "csv_parse",
        description: "Parse CSV (header row first) into rows, infer column types, and summarise numeric columns",
        input_schema: json!({"type": "object", "properties": {
            "csv": {"type": "string"}, "delimiter": {"type": "string", "default": ","}
        }, "required": ["csv"]}),
    }];
    serve("csv_parser", tools, |_, args| {
        let text = args["csv"].as_str().ok_or("`csv` (a string) is required")?;
        let sep = args["delimiter"].as_str().and_then(|d| d.chars().next()).unwrap_or(',');
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let header = split(lines.next().ok_or("empty CSV")?, sep);
        let records: Vec<Vec<String>> = lines.map(|l| split(l, sep)).collect();
        let mut rows = Vec::new();
        for (n, r) in records.iter().enumerate() {
            if r.len() != header.len() {
                return Err(format!("row {} has {} fields, the header has {}", n + 2, r.len(), header.len()).into());
            }
            let obj: Map<String, Value> = header.iter().cloned().zip(r.iter().map(|v| Value::String(v.clone()))).collect();
            rows.push(Value::Object(obj));
        }
        let mut columns = Vec::new();
        for (i, name) in header.iter().enumerate() {
            let values: Vec<&str> = records.iter().map(|r| r[i].as_str()).filter(|v| !v.is_empty()).collect();
            let nums: Vec<f64> = values.iter().filter_map(|v| v.parse().ok()).collect();
            let ty = if !values.is_empty() && nums.len() == values.len() {
                if values.iter().all(|v| v.parse::<i64>().is_ok()) { "integer" } else { "number" }
            } else if !values.is_empty() && values.iter().all(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "false")) {
                "boolean"
            } else {
                "string"
            };
            let mut col = json!({"name": name, "type": ty, "non_empty": values.len()});
            if !nums.is_empty() && nums.len() == values.len() {
                let sum: f64 = nums.iter().sum();
                col["min"] = json!(nums.iter().cloned().fold(f64::INFINITY, f64::min));
                col["max"] = json!(nums.iter().cloned().fold(f64::NEG_INFINITY, f64::max));
                col["mean"] = json!(sum / nums.len() as f64);
                col["sum"] = json!(sum);
            }
            columns.push(col);
        }
        Ok(json!({"row_count": rows.len(), "columns": columns, "rows": rows}))
    });
}
