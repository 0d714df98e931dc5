#!/usr/bin/env bash
# Builds a Caxton container image from local files only (no registry is
# reachable, so the image starts FROM scratch): the binary, the shared
# libraries it links, LICENSE and NOTICE, and
#   production (default)  nothing else: caxton:VERSION
#   demo (DEMO=1)         the sample agents (examples/agents) and example tool
#                         servers (examples/mcp/*/, built by `make wasm`),
#                         served by default: caxton-demo:VERSION
# VERSION is the workspace version in Cargo.toml. The model weights
# `make models` fetched go in with INCLUDE_MODELS=1, the demo's default
# (INCLUDE_MODELS=0 leaves them out; mount them at /models instead).
#
#   deploy/build-image.sh [BINARY] [TAG]
#   DEMO=1 deploy/build-image.sh [BINARY] [TAG]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n 1)
license=$(sed -n 's/^license = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n 1)
[ -n "$version" ] || { echo "no version in $root/Cargo.toml" >&2; exit 2; }
demo=${DEMO:-0}
case "$demo" in
    1) target=demo; default_tag=caxton-demo:$version; include_models=${INCLUDE_MODELS:-1} ;;
    0) target=production; default_tag=caxton:$version; include_models=${INCLUDE_MODELS:-0} ;;
    *) echo "DEMO is 0 or 1, not $demo" >&2; exit 2 ;;
esac
bin=${1:-${CARGO_TARGET_DIR:-$HOME/.cache/caxton-target}/release/caxton}
tag=${2:-$default_tag}
[ -x "$bin" ] || { echo "no caxton binary at $bin (run: make release)" >&2; exit 2; }

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
fs=$ctx/rootfs
mkdir -p "$fs/bin" "$fs/tmp" "$fs/data" "$fs/tool-data" "$fs/models" "$fs/etc"
strip --strip-debug -o "$fs/bin/caxton" "$bin"
# The dynamic loader and every library the binary links, at their paths.
ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u | while read -r lib; do
    cp --parents -L "$lib" "$fs"
done
cp "$root/LICENSE" "$root/NOTICE" "$fs/"
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

# The demo's layer (empty for the production image, which never reads it).
extra=$ctx/demo
mkdir -p "$extra"
if [ "$target" = demo ]; then
    mkdir -p "$extra/opt/caxton/agents" "$extra/opt/caxton/tools"
    cp "$root"/examples/agents/*.toml "$extra/opt/caxton/agents/"
    for dir in "$root"/examples/mcp/*/; do
        name=$(basename "$dir")
        [ -f "$dir/$name.wasm" ] || continue
        mkdir -p "$extra/opt/caxton/tools/$name"
        cp "$dir/manifest.toml" "$dir/$name.wasm" "$extra/opt/caxton/tools/$name/"
    done
fi
tar --numeric-owner --owner=0 --group=0 -C "$extra" -cf "$ctx/demo.tar" .
rm -rf "$extra"

cp "$root/deploy/Dockerfile" "$ctx/Dockerfile"
docker build --quiet --target "$target" --build-arg "VERSION=$version" --build-arg "LICENSE=${license:-unknown}" \
    -t "$tag" "$ctx"
