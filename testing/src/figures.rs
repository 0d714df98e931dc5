//! The figures `make bench` sums up: each bench records the numbers the
//! performance targets are stated in (`docs/benchmarks.md`, "Summary"),
//! one `key<TAB>value` line per figure appended to the file that
//! `CAXTON_BENCH_FIGURES` names. Without it nothing is written, so a bench
//! run by hand prints its own report and leaves no file behind.
//! `scripts/bench_summary.py` reads the file (the last value of a key wins)
//! and writes the table.

use std::io::Write;
use std::path::Path;

/// Records one figure under `key` (for example `http.health.rate`).
pub fn record(key: &str, value: f64) {
    if let Some(path) = std::env::var_os("CAXTON_BENCH_FIGURES") {
        record_to(Path::new(&path), key, value);
    }
}

/// Appends one figure to the figures file at `path`.
pub fn record_to(path: &Path, key: &str, value: f64) {
    assert!(!key.is_empty() && !key.contains(char::is_whitespace), "figure keys have no whitespace: {key:?}");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    writeln!(file, "{key}\t{value}").unwrap_or_else(|e| panic!("append to {}: {e}", path.display()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn summary(args: &[&std::ffi::OsStr]) -> std::process::Output {
        Command::new("python3").arg(crate::repo_path("scripts/bench_summary.py")).args(args).output().unwrap()
    }

    #[test]
    fn the_summary_sets_each_recorded_figure_beside_its_target_and_reference() {
        let dir = tempfile::tempdir().unwrap();
        let figures = dir.path().join("figures.tsv");
        record_to(&figures, "http.health.rate", 40_000.0);
        record_to(&figures, "http.tool_64.rate", 10_000.0);
        record_to(&figures, "http.tool_64.rate", 24_000.0); // the last value wins
        record_to(&figures, "cluster.failover.median_ms", 1_500.0);
        record_to(&figures, "llm.candle.decode_tps", 70.0);
        record_to(&figures, "llm.llamacpp.decode_tps", 100.0);
        let md = dir.path().join("benchmarks.md");
        std::fs::write(
            &md,
            "# Benchmarks\n\n<!-- bench-summary:begin -->\nold\n<!-- bench-summary:end -->\n\n## Kept\n",
        )
        .unwrap();

        let out = summary(&["--into".as_ref(), md.as_os_str(), figures.as_os_str(), "/no/such/file".as_ref()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let table = String::from_utf8(out.stdout).unwrap();
        let row = |what: &str| table.lines().find(|l| l.contains(what)).unwrap_or_else(|| panic!("{what} in {table}"));
        let tool = row("`POST /v1/tools/json_query/call`");
        assert!(tool.contains("24,000/s") && tool.contains("0.6×") && tool.ends_with("| yes |"), "{tool}");
        let model = row("local model decode");
        assert!(model.contains("llama.cpp 100.0 tok/s") && model.contains("0.7×") && model.ends_with("| **no** |"));
        assert!(row("failover").ends_with("| yes |"));
        assert!(row("3-node committed deploys").contains("not measured"), "a figure no bench recorded says so");

        let written = std::fs::read_to_string(&md).unwrap();
        assert!(written.contains(tool) && !written.contains("\nold\n"), "{written}");
        assert!(written.starts_with("# Benchmarks\n") && written.ends_with("## Kept\n"), "the rest is kept: {written}");
    }

    #[test]
    fn a_malformed_figures_line_is_named_by_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let figures = dir.path().join("figures.tsv");
        record_to(&figures, "http.health.rate", 1.0);
        std::fs::OpenOptions::new().append(true).open(&figures).unwrap().write_all(b"no tab here\n").unwrap();
        let out = summary(&[figures.as_os_str()]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("{}:2:", figures.display())) && err.contains("key<TAB>value"), "{err}");
    }
}
