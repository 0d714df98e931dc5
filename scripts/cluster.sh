#!/usr/bin/env bash
# Starts a three-node Caxton cluster on loopback for exploring; Ctrl-C stops it.
#   node 1: API 127.0.0.1:8080, RPC :8081, gossip :7946, metrics :9090 (bootstraps, deploys examples/agents)
#   node 2: API 127.0.0.1:8180, RPC :8181, gossip :7947, metrics :9190
#   node 3: API 127.0.0.1:8280, RPC :8281, gossip :7948, metrics :9290
set -euo pipefail
BIN=${BIN:?set BIN to the caxton binary}
DATA=${DATA:-./caxton-cluster}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SEEDS=127.0.0.1:7946,127.0.0.1:7947,127.0.0.1:7948
export CAXTON_CLUSTER_SECRET=${CAXTON_CLUSTER_SECRET:-local-dev-secret}
pids=()
stop() {
  echo "stopping cluster..."
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait
}
trap stop INT TERM
API=(8080 8180 8280); RPC=(8081 8181 8281); GOSSIP=(7946 7947 7948); METRICS=(9090 9190 9290)
for i in 1 2 3; do
  n=$((i - 1))
  mkdir -p "$DATA/node$i"
  args=(server start --node-id "$i" --data-dir "$DATA/node$i"
        --listen "127.0.0.1:${API[$n]}" --rpc-listen "127.0.0.1:${RPC[$n]}"
        --gossip-listen "127.0.0.1:${GOSSIP[$n]}" --seeds "$SEEDS")
  if [ "$i" = 1 ]; then args+=(--bootstrap --tools-dir "$ROOT/examples/mcp" --agents-dir "$ROOT/examples/agents"); fi
  CAXTON_SERVER_METRICS_LISTEN="127.0.0.1:${METRICS[$n]}" "$BIN" "${args[@]}" > "$DATA/node$i.log" 2>&1 &
  pids+=($!)
done
echo "cluster starting; logs in $DATA/node*.log"
sleep 3
"$BIN" --server http://127.0.0.1:8080 cluster members || true
echo "try: $BIN --server http://127.0.0.1:8180 cluster status   (Ctrl-C stops the cluster)"
wait
