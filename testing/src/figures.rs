//! The figures `make bench` sums up: each bench records the numbers the
//! performance targets are stated in (`docs/benchmarks.md`, "Summary"),
//! one `key<TAB>value` line per figure appended to the file that
//! `CAXTON_BENCH_FIGURES` names. Without it nothing is written, so a bench
//! run by hand prints its own report and leaves no file behind.
//! `scripts/bench_summary.py` reads the file (the last value of a key wins)
//! and writes the table.

use std::io::Write;

/// Records one figure under `key` (for example `http.health.rate`).
pub fn record(key: &str, value: f64) {
    let Some(path) = std::env::var_os("CAXTON_BENCH_FIGURES") else { return };
    assert!(!key.contains(char::is_whitespace), "figure keys have no whitespace: {key:?}");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("open {}: {e}", std::path::Path::new(&path).display()));
    writeln!(file, "{key}\t{value}").unwrap_or_else(|e| panic!("append to {}: {e}", path.to_string_lossy()));
}
