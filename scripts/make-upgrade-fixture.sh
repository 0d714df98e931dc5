#!/usr/bin/env bash
# Writes a data directory with a Raft log and a snapshot made by the binary
# given, for the upgrade test (a log written by one version is applied by
# the next). Run with the *previous* version's binary; the result is
# committed under tests/data/upgrade-<tag>/ and never rewritten.
#
#   scripts/make-upgrade-fixture.sh BIN OUT_DIR
#
# Round `a` of writes is followed by a snapshot (the log behind it purged),
# round `b` stays in the log: the fixture holds a snapshot and a log tail in
# which every command kind appears. state.db is replaced by the snapshot, so
# whoever opens the fixture must apply the tail itself.
set -euo pipefail
BIN=$(realpath "$1"); OUT=$2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d); trap 'kill $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
RPC=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$WORK/caxton.toml" <<TOML
[server]
listen = "127.0.0.1:$PORT"
data_dir = "$WORK/data"
[cluster]
rpc_listen = "127.0.0.1:$RPC"
logs_to_keep = 0
[models]
dir = "${CAXTON_MODELS_DIR:-$ROOT/models}"
TOML
"$BIN" server start --config "$WORK/caxton.toml" >"$WORK/log" 2>&1 & PID=$!
API=http://127.0.0.1:$PORT
for _ in $(seq 100); do curl -sf "$API/ready" >/dev/null && break; sleep 0.2; done
post() { printf "%s" "$3" > "$WORK/body"; curl -sf -X POST "$API$1" -H "content-type: $2" --data-binary @"$WORK/body" >/dev/null; }
agent() { printf 'name = "%s"\nversion = "%s"\nprovider = "echo"\ncapabilities = ["%s"]\nsystem_prompt = "Echo."\n' "$@"; }
entity() { printf '{"name":"%s","entity_type":"city","scope":"workspace","workspace":"team","observations":["%s"]}' "$@"; }
MODULE=$(base64 -w0 "$ROOT/examples/mcp/json_query/json_query.wasm")
MANIFEST=$(python3 -c 'import json,sys; print(json.dumps(open(sys.argv[1]).read()))' "$ROOT/examples/mcp/json_query/manifest.toml")
CSV_MODULE=$(base64 -w0 "$ROOT/examples/mcp/csv_parser/csv_parser.wasm")
CSV_MANIFEST=$(python3 -c 'import json,sys; print(json.dumps(open(sys.argv[1]).read()))' "$ROOT/examples/mcp/csv_parser/manifest.toml")
round() { # $1: a tag making names unique per round
  post /v1/agents application/toml "$(agent "echo-$1" 1.0.0 "bid")"
  post /v1/agents application/toml "$(agent "echo-$1" 1.1.0 "bid")"
  post /v1/agents application/toml "$(agent "gone-$1" 1.0.0 "other")"
  curl -sf -X DELETE "$API/v1/agents/gone-$1" >/dev/null
  post /v1/messages application/json "{\"to\":\"echo-$1\",\"content\":\"hello $1\",\"id\":\"msg-$1\"}"
  post /v1/messages application/json "{\"to\":\"echo-$1\",\"content\":\"note $1\",\"kind\":\"notification\",\"mode\":\"async\"}" \
    || post /v1/messages application/json "{\"to\":\"echo-$1\",\"content\":\"note $1\",\"kind\":\"Notification\",\"mode\":\"async\"}"
  post /v1/contract-net application/json "{\"capability\":\"bid\",\"task\":\"task $1\",\"deadline_ms\":1500}" || true
  post /v1/memory/entities application/json "$(entity "Lisbon-$1" "sunny $1")"
  post /v1/memory/entities application/json "$(entity "Portugal-$1" "a country $1")"
  post /v1/memory/relations application/json "{\"from\":\"Lisbon-$1\",\"to\":\"Portugal-$1\",\"relation_type\":\"capital_of\",\"scope\":\"workspace\",\"workspace\":\"team\"}"
  post /v1/memory/entities application/json "$(entity "Gone-$1" "temporary")"
  curl -sf -X DELETE "$API/v1/memory/entities/Gone-$1?scope=workspace&workspace=team" >/dev/null
  post /v1/mcp-servers application/json "{\"manifest\":$MANIFEST,\"module\":\"$MODULE\"}"
  post /v1/mcp-servers application/json "{\"manifest\":$CSV_MANIFEST,\"module\":\"$CSV_MODULE\"}"
  curl -sf -X DELETE "$API/v1/mcp-servers/csv_parser" >/dev/null
}
round a
curl -sf -X POST "$API/v1/cluster/snapshot" >/dev/null
round b
kill -TERM $PID; wait $PID || true
rm -rf "$OUT"; mkdir -p "$OUT/snapshots"
cp "$WORK/data/raft.db" "$OUT/raft.db"
cp "$WORK/data/snapshots/current.db" "$OUT/snapshots/current.db"
cp "$WORK/data/snapshots/current.meta" "$OUT/snapshots/current.meta"
cp "$WORK/data/snapshots/current.db" "$OUT/state.db"
# What the snapshot and the log hold, for the reader of a failing test.
python3 - "$OUT" > "$OUT/README" <<'PY'
import sqlite3, sys
out = sys.argv[1]
for table, in sqlite3.connect(f"{out}/raft.db").execute("SELECT name FROM sqlite_master WHERE type='table'"):
    n, = sqlite3.connect(f"{out}/raft.db").execute(f"SELECT count(*) FROM {table}").fetchone()
    print(f"raft.db {table}: {n} rows")
PY
echo "made by: $("$BIN" --version 2>/dev/null || echo caxton) at $(git -C "$ROOT" rev-parse --short HEAD)" >> "$OUT/README"
ls -la "$OUT"
