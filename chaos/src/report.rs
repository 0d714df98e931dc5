//! What people look at after a run: a summary table (Markdown) and a
//! timeline picture (SVG): throughput and latency per second, fault
//! windows shaded, and the leader of each moment.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::check::Finding;
use crate::history::{History, Op, Outcome};

pub fn summary(h: &History, findings: &[Finding], minutes: f64) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Chaos run, seed {}\n", h.seed);
    let _ = writeln!(s, "{} operations in {minutes:.1} minutes, {} faults.\n", h.events.len(), h.faults.len());
    let _ = writeln!(s, "| operation | ok | failed | unknown |\n| --- | --- | --- | --- |");
    let mut by: BTreeMap<&str, [usize; 3]> = BTreeMap::new();
    for e in &h.events {
        let kind = match e.op {
            Op::Write { .. } => "registry write",
            Op::Read { .. } => "registry read (linearizable)",
            Op::Send { .. } => "message send",
            Op::Remember { .. } => "memory write",
            Op::Search { .. } => "memory search",
            Op::Publish { .. } => "publication",
            Op::Auction { .. } => "auction",
        };
        let slot = match e.outcome {
            Outcome::Ok { .. } => 0,
            Outcome::Fail { .. } => 1,
            Outcome::Unknown { .. } => 2,
        };
        by.entry(kind).or_default()[slot] += 1;
    }
    for (kind, [ok, fail, unknown]) in by {
        let _ = writeln!(s, "| {kind} | {ok} | {fail} | {unknown} |");
    }
    let _ = writeln!(s, "\n| fault | injected |\n| --- | --- |");
    let mut faults: BTreeMap<&str, usize> = BTreeMap::new();
    for f in &h.faults {
        *faults.entry(f.kind.as_str()).or_default() += 1;
    }
    for (kind, n) in faults {
        let _ = writeln!(s, "| {kind} | {n} |");
    }
    let _ = writeln!(s, "\n| invariant | checked | violations | undecided |\n| --- | --- | --- | --- |");
    for f in findings {
        let _ = writeln!(s, "| {} | {} | {} | {} |", f.checker, f.checked, f.violations.len(), f.undecided.len());
    }
    for f in findings.iter().filter(|f| !f.violations.is_empty() || !f.undecided.is_empty()) {
        let _ = writeln!(s, "\n## {}\n", f.checker);
        for v in f.violations.iter().take(20) {
            let _ = writeln!(s, "- VIOLATION: {v}");
        }
        for u in f.undecided.iter().take(20) {
            let _ = writeln!(s, "- undecided: {u}");
        }
    }
    let _ = writeln!(s, "\n## Faults\n\n| from (s) | to (s) | fault | detail |\n| --- | --- | --- | --- |");
    for f in &h.faults {
        let _ = writeln!(
            s,
            "| {:.1} | {:.1} | {} | {} |",
            f.start_ms as f64 / 1e3,
            f.end_ms as f64 / 1e3,
            f.kind,
            f.detail
        );
    }
    s
}

const W: f64 = 1200.0;
const PLOT_H: f64 = 160.0;
const PALETTE: [&str; 5] = ["#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2"];

pub fn timeline(h: &History) -> String {
    let end_ms = h.events.iter().map(|e| e.complete_ms).max().unwrap_or(1).max(1);
    let seconds = (end_ms / 1000 + 1) as usize;
    let mut ok = vec![0u64; seconds];
    let mut failed = vec![0u64; seconds];
    let mut latency: Vec<Vec<u64>> = vec![Vec::new(); seconds];
    for e in &h.events {
        let s = (e.complete_ms / 1000) as usize;
        if e.is_ok() {
            ok[s] += 1;
            latency[s].push(e.complete_ms - e.invoke_ms);
        } else {
            failed[s] += 1;
        }
    }
    let p50: Vec<u64> = latency
        .iter_mut()
        .map(|l| {
            l.sort_unstable();
            l.get(l.len() / 2).copied().unwrap_or(0)
        })
        .collect();
    let x = |ms: f64| 60.0 + ms / end_ms as f64 * (W - 80.0);
    let mut svg = String::new();
    let height = 40.0 + 2.0 * (PLOT_H + 40.0) + 60.0;
    let _ = writeln!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"11\">"
    );
    let _ = writeln!(svg, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
    let _ = writeln!(
        svg,
        "<text x=\"10\" y=\"18\" font-size=\"14\">Chaos run, seed {}: {} operations</text>",
        h.seed,
        h.events.len()
    );
    // Fault windows across both plots.
    for f in &h.faults {
        let (x0, x1) = (x(f.start_ms as f64), x(f.end_ms as f64));
        let _ = writeln!(
            svg,
            "<rect x=\"{x0:.1}\" y=\"30\" width=\"{:.1}\" height=\"{:.0}\" fill=\"#d62728\" fill-opacity=\"0.12\"><title>{} {}</title></rect>",
            (x1 - x0).max(1.0),
            2.0 * (PLOT_H + 40.0),
            f.kind,
            f.detail
        );
        let _ = writeln!(svg, "<text x=\"{x0:.1}\" y=\"40\" font-size=\"9\" fill=\"#d62728\" transform=\"rotate(90 {x0:.1} 40)\">{}</text>", f.kind);
    }
    let plot = |svg: &mut String, top: f64, title: &str, series: &[(&str, &[u64])]| {
        let max = series.iter().flat_map(|(_, v)| v.iter()).copied().max().unwrap_or(1).max(1) as f64;
        let _ = writeln!(svg, "<text x=\"60\" y=\"{:.0}\">{title} (max {max:.0})</text>", top - 4.0);
        let _ = writeln!(
            svg,
            "<rect x=\"60\" y=\"{top:.0}\" width=\"{:.0}\" height=\"{PLOT_H}\" fill=\"none\" stroke=\"#999\"/>",
            W - 80.0
        );
        for (i, (label, values)) in series.iter().enumerate() {
            let color = ["#1f77b4", "#ff7f0e"][i % 2];
            let points: Vec<String> = values
                .iter()
                .enumerate()
                .map(|(s, v)| {
                    format!("{:.1},{:.1}", x(s as f64 * 1000.0 + 500.0), top + PLOT_H - *v as f64 / max * PLOT_H)
                })
                .collect();
            let _ = writeln!(
                svg,
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"{}\"/>",
                points.join(" ")
            );
            let _ = writeln!(
                svg,
                "<text x=\"{:.0}\" y=\"{:.0}\" fill=\"{color}\">{label}</text>",
                W - 200.0 + i as f64 * 90.0,
                top - 4.0
            );
        }
    };
    plot(&mut svg, 60.0, "operations per second", &[("ok", &ok), ("failed/unknown", &failed)]);
    plot(&mut svg, 60.0 + PLOT_H + 40.0, "p50 latency of ok operations (ms)", &[("p50", &p50)]);
    // The leader over time: a band coloured by leader, labelled with terms.
    let band = 60.0 + 2.0 * (PLOT_H + 40.0);
    let _ = writeln!(svg, "<text x=\"10\" y=\"{:.0}\">leader</text>", band + 12.0);
    let mut leading: Vec<(u64, u64, u64)> =
        h.leaders.iter().filter(|s| s.leading).map(|s| (s.at_ms, s.node, s.term)).collect();
    leading.sort();
    // One rectangle per term: from its first sample to the next term's.
    let mut terms: Vec<(u64, u64, u64)> = Vec::new();
    for s in leading {
        if terms.last().is_none_or(|t| (t.1, t.2) != (s.1, s.2)) {
            terms.push(s);
        }
    }
    for (i, (at, node, term)) in terms.iter().enumerate() {
        let until = terms.get(i + 1).map(|t| t.0).unwrap_or(end_ms);
        let color = PALETTE[(*node as usize) % PALETTE.len()];
        let _ = writeln!(
            svg,
            "<rect x=\"{:.1}\" y=\"{band:.0}\" width=\"{:.1}\" height=\"16\" fill=\"{color}\"><title>node {node} term {term}</title></rect>",
            x(*at as f64),
            (x(until as f64) - x(*at as f64)).max(0.5),
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"60\" y=\"{:.0}\">seconds 0 - {:.0}; shaded: faults; band colour: leader node</text>",
        band + 34.0,
        end_ms as f64 / 1e3
    );
    svg.push_str("</svg>\n");
    svg
}
