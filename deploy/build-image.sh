#!/usr/bin/env bash
# Builds the Caxton container image from local files only (no registry is
# reachable, so the image starts FROM scratch): the binary, the shared
# libraries it links, the example tools and agents, and the model weights
# when `make models` has fetched them (INCLUDE_MODELS=0 leaves them out; mount
# them at /models instead).
#
#   deploy/build-image.sh [BINARY] [TAG]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-${CARGO_TARGET_DIR:-$HOME/.cache/caxton-target}/release/caxton}
tag=${2:-caxton:latest}
include_models=${INCLUDE_MODELS:-1}
[ -x "$bin" ] || { echo "no caxton binary at $bin (run: make release)" >&2; exit 2; }

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
fs=$ctx/rootfs
mkdir -p "$fs/bin" "$fs/tmp" "$fs/data" "$fs/tool-data" "$fs/models" "$fs/opt/caxton/agents" "$fs/opt/caxton/tools" "$fs/etc"
strip --strip-debug -o "$fs/bin/caxton" "$bin"
# The dynamic loader and every library the binary links, at their paths.
ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u | while read -r lib; do
    cp --parents -L "$lib" "$fs"
done
cp "$root"/examples/agents/*.toml "$fs/opt/caxton/agents/"
for dir in "$root"/examples/mcp/*/; do
    name=$(basename "$dir")
    [ -f "$dir/$name.wasm" ] || continue
    mkdir -p "$fs/opt/caxton/tools/$name"
    cp "$dir/manifest.toml" "$dir/$name.wasm" "$fs/opt/caxton/tools/$name/"
done
if [ "$include_models" = 1 ] && [ -d "$root/models/all-minilm-l6-v2" ]; then
    cp -r "$root/models/all-minilm-l6-v2" "$root/models/smollm2" "$fs/models/"
fi
echo "caxton:x:65532:65532:caxton:/data:/bin/caxton" > "$fs/etc/passwd"
echo "caxton:x:65532:" > "$fs/etc/group"
chown -R 65532:65532 "$fs/data" "$fs/tool-data"
chmod 1777 "$fs/tmp"
# A tarball keeps owners and modes (COPY would make everything root's).
tar --numeric-owner -C "$fs" -cf "$ctx/rootfs.tar" .
rm -rf "$fs"
cp "$root/deploy/Dockerfile" "$ctx/Dockerfile"
docker build --quiet -t "$tag" "$ctx"
