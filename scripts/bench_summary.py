#!/usr/bin/env python3
"""The table `make bench` ends with: every performance figure beside its
target and its side-by-side reference, from the figures the benches
recorded (testing/src/figures.rs: one `key<TAB>value` line each, the last
value of a key wins). Prints the table and writes it into
docs/benchmarks.md between the summary markers, with the machine and date.

Usage: bench_summary.py [--into BENCHMARKS_MD] FIGURES_FILE...
(a missing figures file counts as empty: its figures show "not measured")
"""

import datetime
import os
import platform
import re
import sys

BEGIN, END = "<!-- bench-summary:begin -->", "<!-- bench-summary:end -->"


def read_figures(path):
    figures = {}
    if os.path.exists(path):
        for n, line in enumerate(open(path, encoding="utf-8"), 1):
            key, sep, value = line.rstrip("\n").partition("\t")
            if not sep:
                sys.exit(f"{path}:{n}: expected `key<TAB>value`, got {line!r}")
            figures[key] = float(value)
    return figures


def fmt(value, unit):
    if value is None:
        return "not measured"
    if unit == "/s":
        return f"{value:,.0f}/s"
    if unit == "ms":
        return f"{value:,.2f} ms" if value < 10 else f"{value:,.0f} ms"
    if unit == "µs":
        return f"{value:,.0f} µs"
    if unit == "MB":
        return f"{value:,.0f} MB"
    if unit == "s":
        return f"{value:,.1f} s"
    if unit == "min":
        return f"{value:,.1f} min"
    if unit == "tok/s":
        return f"{value:,.1f} tok/s"
    return f"{value:,.2f}{unit}"


def rows(f):
    """(what, value, unit, target text, met or None, reference text, ratio)"""
    g = f.get
    health = g("http.health.rate")

    def ratio(a, b):
        return a / b if a is not None and b else None

    def at_least(v, t):
        return None if v is None else v >= t

    def below(v, t):
        return None if v is None else v < t

    def both(*checks):
        return None if any(c is None for c in checks) else all(checks)

    msg, tool = g("http.message_64.rate"), g("http.tool_64.rate")
    warm, bare = g("tools.warm.rate"), g("tools.bare_wasmtime.rate")
    candle, llama = g("llm.candle.decode_tps"), g("llm.llamacpp.decode_tps")
    deploys, fsyncs = g("cluster.deploys_32.rate"), g("disk.fsync.rate")
    p50_1 = g("http.message_1.p50_us")
    return [
        ("`GET /health`, 64 connections (the HTTP ceiling)", health, "/s", "—", None, "—", None),
        ("sync message to an echo agent, 64 connections", msg, "/s", "≥ 10,000/s and ≥ 0.5× /health",
         both(at_least(msg, 10_000), at_least(ratio(msg, health), 0.5)), "/health", ratio(msg, health)),
        ("sync message, 1 connection, p50", p50_1 / 1e3 if p50_1 is not None else None, "ms", "< 1 ms",
         below(p50_1, 1000), "—", None),
        ("`POST /v1/tools/json_query/call`, 64 connections", tool, "/s", "≥ 0.5× /health",
         at_least(ratio(tool, health), 0.5), "/health", ratio(tool, health)),
        ("tool calls in process, warm stateless server, 64 callers", warm, "/s", "≥ 100,000/s",
         at_least(warm, 100_000), "raw wasmtime call " + fmt(bare, "/s"), ratio(warm, bare)),
        ("tool call p99 in process", g("tools.warm.p99_us"), "µs", "< 1,000 µs",
         below(g("tools.warm.p99_us"), 1000), "—", None),
        ("local model decode (SmolLM2-135M Q4_1)", candle, "tok/s", "≥ 0.8× llama.cpp",
         at_least(ratio(candle, llama), 0.8), "llama.cpp " + fmt(llama, "tok/s"), ratio(candle, llama)),
        ("local model time to first token", g("llm.candle.ttft_ms"), "ms", "reported",
         None, "llama.cpp " + fmt(g("llm.llamacpp.ttft_ms"), "ms"), ratio(g("llm.candle.ttft_ms"), g("llm.llamacpp.ttft_ms"))),
        ("failover: leader kill -9 → first accepted write, median of 5", g("cluster.failover.median_ms"), "ms",
         "< 2,000 ms", below(g("cluster.failover.median_ms"), 2000), "—", None),
        ("3-node committed deploys/s, 32 writers", deploys, "/s", "≥ 5,000/s", at_least(deploys, 5000),
         "disk " + fmt(fsyncs, "/s") + " fsyncs (writes per fsync)", ratio(deploys, fsyncs)),
        ("100,000 agents on one node: resident memory", g("scale.rss_mb"), "MB", "< 1,024 MB",
         below(g("scale.rss_mb"), 1024), "—", None),
        ("100,000 agents: deploys/s", g("scale.deploy.rate"), "/s", "—", None, "—", None),
        ("100,000 agents: every page listed (500 a page)", g("scale.list_all_s"), "s", "O(page)", None, "—", None),
        ("100,000 agents: restart to ready", g("scale.restart_ready_s"), "s", "seconds (< 10 s)",
         below(g("scale.restart_ready_s"), 10), "—", None),
        ("100,000 agents: message to a random agent, p50", g("scale.message.p50_ms"), "ms", "no errors",
         None if g("scale.message.errors") is None else g("scale.message.errors") == 0, "—", None),
        ("cold `make test` from a fresh clone (`.ci/run`, empty build directory)", g("suite.cold_minutes"), "min",
         "< 20 min", below(g("suite.cold_minutes"), 20), "—", None),
        ("warm `make test` from a fresh clone (`.ci/run`, build directory kept)", g("suite.warm_minutes"), "min",
         "—", None, "—", None),
    ]


def machine():
    model = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem = next(l for l in open("/proc/meminfo", encoding="utf-8") if l.startswith("MemTotal"))
        gib = int(mem.split()[1]) / 2**20
    except (OSError, StopIteration):
        gib = 0
    return f"{os.cpu_count()} cores ({model}), {gib:.0f} GiB RAM, {platform.system()} {platform.release()}"


def table(figures):
    out = [
        f"Measured {datetime.date.today().isoformat()} on {machine()}; release builds; `make bench`.",
        "",
        "| what | measured | target | reference | ratio | met |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for what, value, unit, target, met, ref, r in rows(figures):
        verdict = "—" if met is None else ("yes" if met else "**no**")
        out.append(f"| {what} | {fmt(value, unit)} | {target} | {ref} | {'—' if r is None else f'{r:.3g}×'} | {verdict} |")
    return "\n".join(out)


def main():
    args = sys.argv[1:]
    into = None
    if args[:1] == ["--into"] and len(args) >= 2:
        into, args = args[1], args[2:]
    if not args or any(a.startswith("-") for a in args):
        sys.exit(__doc__)
    figures = {}
    for path in args:
        figures.update(read_figures(path))
    text = table(figures)
    print(text)
    if into:
        md = open(into, encoding="utf-8").read()
        if BEGIN not in md or END not in md:
            sys.exit(f"{into}: no `{BEGIN}` … `{END}` block to write the summary into")
        block = f"{BEGIN}\n{text}\n{END}"
        md = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, md, flags=re.S)
        open(into, "w", encoding="utf-8").write(md)


if __name__ == "__main__":
    main()
