//! `chart_generator`: a series of labelled values to an SVG bar or line chart.

use mcp_stdio::{serve, Tool, ToolFailure};
use serde_json::{json, Value};

const W: f64 = 640.0;
const H: f64 = 360.0;
const PAD: f64 = 40.0;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn chart(kind: &str, title: &str, labels: &[String], values: &[f64]) -> String {
    let max = values.iter().cloned().fold(0.0f64, f64::max).max(1e-9);
    let n = values.len() as f64;
    let step = (W - 2.0 * PAD) / n;
    let y = |v: f64| H - PAD - (v / max) * (H - 2.0 * PAD);
    let mut svg = format!(r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}">"#);
    svg.push_str(&format!(r#"<text x="{}" y="24" text-anchor="middle" font-size="16">{}</text>"#, W / 2.0, escape(title)));
    svg.push_str(&format!(r#"<line x1="{PAD}" y1="{}" x2="{}" y2="{}" stroke="black"/>"#, H - PAD, W - PAD, H - PAD));
    match kind {
        "line" => {
            let points: Vec<String> = values.iter().enumerate().map(|(i, v)| format!("{:.1},{:.1}", PAD + step * (i as f64 + 0.5), y(*v))).collect();
            svg.push_str(&format!(r#"<polyline fill="none" stroke="steelblue" stroke-width="2" points="{}"/>"#, points.join(" ")));
        }
        _ => {
            for (i, v) in values.iter().enumerate() {
                let x = PAD + step * i as f64 + step * 0.1;
                svg.push_str(&format!(r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="steelblue"/>"#, y(*v), step * 0.8, (H - PAD) - y(*v)));
            }
        }
    }
    for (i, l) in labels.iter().enumerate() {
        svg.push_str(&format!(r#"<text x="{:.1}" y="{}" text-anchor="middle" font-size="11">{}</text>"#, PAD + step * (i as f64 + 0.5), H - PAD + 16.0, escape(l)));
    }
    svg.push_str("</svg>");
    svg
}

fn main() {
    let tools = vec![Tool {
        name: "chart",
        description: "Render a bar or line chart of labelled values as SVG",
        input_schema: json!({"type": "object", "properties": {
            "kind": {"type": "string", "enum": ["bar", "line"]},
            "title": {"type": "string"},
            "series": {"type": "array", "items": {"type": "object", "properties": {"label": {"type": "string"}, "value": {"type": "number"}}}}
        }, "required": ["series"]}),
    }];
    serve("chart_generator", tools, |_, args: &Value| {
        let series = args["series"].as_array().ok_or("`series` (an array of {label, value}) is required")?;
        if series.is_empty() || series.len() > 1000 {
            return Err(ToolFailure("`series` must have 1-1000 points".into()));
        }
        let mut labels = Vec::new();
        let mut values = Vec::new();
        for (i, p) in series.iter().enumerate() {
            labels.push(p["label"].as_str().map(str::to_owned).unwrap_or_else(|| i.to_string()));
            let v = p["value"].as_f64().ok_or_else(|| ToolFailure(format!("series[{i}].value must be a number")))?;
            if v < 0.0 {
                return Err(ToolFailure(format!("series[{i}].value must not be negative")));
            }
            values.push(v);
        }
        let kind = args["kind"].as_str().unwrap_or("bar");
        let svg = chart(kind, args["title"].as_str().unwrap_or(""), &labels, &values);
        Ok(json!({"svg": svg, "points": values.len(), "kind": kind}))
    });
}
