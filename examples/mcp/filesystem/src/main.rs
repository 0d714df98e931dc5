//! `filesystem`: read, write and list files inside the server's sandbox
//! directory (preopened by the host as `/data`). Paths are relative to it;
//! the host gives the module no other directory, so `..` or absolute paths
//! outside it fail in the WASI layer, not just here.

use mcp_stdio::{serve, Tool, ToolFailure};
use serde_json::{json, Value};

const ROOT: &str = "/data";

fn resolve(path: &str) -> String {
    if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("{ROOT}/{path}")
    }
}

fn main() {
    let path_schema = json!({"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]});
    let tools = vec![
        Tool { name: "read_file", description: "Read a text file from the sandbox", input_schema: path_schema.clone() },
        Tool {
            name: "write_file",
            description: "Write a text file in the sandbox",
            input_schema: json!({"type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"}}, "required": ["path", "content"]}),
        },
        Tool { name: "list_dir", description: "List a directory of the sandbox", input_schema: json!({"type": "object", "properties": {"path": {"type": "string", "default": "."}}}) },
    ];
    serve("filesystem", tools, |tool, args: &Value| {
        let path = resolve(args["path"].as_str().unwrap_or("."));
        match tool {
            "read_file" => {
                let text = std::fs::read_to_string(&path).map_err(|e| ToolFailure(format!("cannot read {path}: {e}")))?;
                Ok(json!({"path": path, "content": text}))
            }
            "write_file" => {
                let content = args["content"].as_str().ok_or("`content` (a string) is required")?;
                std::fs::write(&path, content).map_err(|e| ToolFailure(format!("cannot write {path}: {e}")))?;
                Ok(json!({"path": path, "bytes": content.len()}))
            }
            _ => {
                let mut entries: Vec<Value> = std::fs::read_dir(&path)
                    .map_err(|e| ToolFailure(format!("cannot list {path}: {e}")))?
                    .filter_map(|e| e.ok())
                    .map(|e| json!({"name": e.file_name().to_string_lossy(), "dir": e.file_type().map(|t| t.is_dir()).unwrap_or(false)}))
                    .collect();
                entries.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
                Ok(json!({"path": path, "entries": entries}))
            }
        }
    });
}
