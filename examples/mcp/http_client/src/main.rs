//! `http_client`: GET and POST through the host's `caxton.http_request`,
//! the only network a tool server has (allowlisted hosts, no internal
//! addresses unless the manifest allows them).

use mcp_stdio::{serve, Tool, ToolFailure};
use serde_json::{json, Value};

#[link(wasm_import_module = "caxton")]
extern "C" {
    fn http_request(req_ptr: *const u8, req_len: i32, out_ptr: *mut u8, out_cap: i32) -> i32;
}

fn request(req: &Value) -> Result<Value, ToolFailure> {
    let body = req.to_string();
    let mut out = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: both buffers are live for the call; the host writes at most `out.len()` bytes.
        let n = unsafe { http_request(body.as_ptr(), body.len() as i32, out.as_mut_ptr(), out.len() as i32) };
        if n < 0 {
            out.resize((-n) as usize, 0);
            continue;
        }
        let answer: Value = serde_json::from_slice(&out[..n as usize])?;
        return match answer.get("error") {
            Some(e) => Err(ToolFailure(e.as_str().unwrap_or("request failed").to_owned())),
            None => Ok(answer["ok"].clone()),
        };
    }
}

fn main() {
    let tools = vec![
        Tool {
            name: "http_get",
            description: "HTTP GET a URL (allowlisted hosts only)",
            input_schema: json!({"type": "object", "properties": {"url": {"type": "string"}}, "required": ["url"]}),
        },
        Tool {
            name: "http_post",
            description: "HTTP POST a body to a URL (allowlisted hosts only)",
            input_schema: json!({"type": "object", "properties": {
                "url": {"type": "string"}, "body": {"type": "string"}, "content_type": {"type": "string"}
            }, "required": ["url", "body"]}),
        },
    ];
    serve("http_client", tools, |tool, args| {
        let url = args["url"].as_str().ok_or("`url` (a string) is required")?;
        let req = match tool {
            "http_get" => json!({"method": "GET", "url": url}),
            _ => json!({
                "method": "POST", "url": url, "body": args["body"].as_str().unwrap_or(""),
                "headers": [["content-type", args["content_type"].as_str().unwrap_or("text/plain")]]
            }),
        };
        request(&req)
    });
}
