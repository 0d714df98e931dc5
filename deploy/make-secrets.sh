#!/usr/bin/env bash
# Makes what the compose files mount from DIR (default deploy/secrets):
#   admin-key        the bootstrap admin key (server.admin_key_file)
#   cluster-secret   the gossip key (cluster.secret_file)
#   ca/ca.crt, ca/ca.key           the cluster CA (keep ca.key off the nodes)
#   ca.crt, node-N.crt, node-N.key node certificates for mutual TLS, N = 1..NODES
# Never overwrites: files that exist are in use. The caxton binary comes from
# CAXTON_BIN, else PATH, else the image (CAXTON_IMAGE, default caxton:VERSION,
# VERSION from Cargo.toml).
#
#   deploy/make-secrets.sh [DIR] [NODES]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$(dirname "$0")/secrets}
nodes=${2:-3}
mkdir -p "$dir"
chmod 700 "$dir"
dir=$(cd "$dir" && pwd)

caxton() {
    if [ -n "${CAXTON_BIN:-}" ]; then "$CAXTON_BIN" "$@"
    elif command -v caxton >/dev/null; then command caxton "$@"
    else
        local version
        version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n 1)
        docker run --rm --user "$(id -u):$(id -g)" -v "$dir:$dir" "${CAXTON_IMAGE:-caxton:$version}" "$@"
    fi
}
random() { head -c 32 /dev/urandom | base64 | tr -d '\n=+/'; }

umask 077
for f in admin-key cluster-secret; do
    [ -e "$dir/$f" ] || random > "$dir/$f"
done
[ -e "$dir/ca/ca.crt" ] || caxton cluster ca init "$dir/ca" >/dev/null
for n in $(seq 1 "$nodes"); do
    [ -e "$dir/node-$n.crt" ] || caxton cluster cert issue --node-id "$n" --hostname "caxton-$n" \
        --ca-dir "$dir/ca" --out "$dir" >/dev/null
done
# The containers run as uid 65532: they read the mounted files, which the
# directory (mode 700) keeps from other users of this host.
if [ "$(id -u)" = 0 ]; then
    chown 65532:65532 "$dir"/admin-key "$dir"/cluster-secret "$dir"/node-*.key "$dir"/node-*.crt "$dir"/ca.crt
else
    chmod 644 "$dir"/admin-key "$dir"/cluster-secret "$dir"/node-*.key
fi
echo "secrets in $dir: admin-key is the bootstrap admin key; ca/ca.key signs node certificates (keep it off the nodes)"
