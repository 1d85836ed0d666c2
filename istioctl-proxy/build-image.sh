#!/usr/bin/env bash
# Builds the istioctl-proxy image (FROM scratch, statically linked binary) with
# the local Docker engine. Usage: istioctl-proxy/build-image.sh [tag]
set -euo pipefail
tag="${1:-istioctl-proxy:dev}"
root="$(cd "$(dirname "$0")/.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
triple=x86_64-unknown-linux-gnu
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release \
  --manifest-path "$root/Cargo.toml" -p istioctl-proxy --bin istioctl-proxy --target "$triple"
bin="$target_dir/$triple/release/istioctl-proxy"
if ldd "$bin" 2>&1 | grep -q "=>"; then
  echo "error: $bin is dynamically linked" >&2
  exit 1
fi
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
cp "$bin" "$ctx/istioctl-proxy"
docker build -t "$tag" -f "$root/istioctl-proxy/Dockerfile" "$ctx"
echo "built $tag"
