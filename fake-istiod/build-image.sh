#!/usr/bin/env bash
# Builds the fake-istiod image (FROM scratch, statically linked binary, the
# shipped scenarios under /scenarios) with the local Docker engine, as
# istioctl-proxy/build-image.sh does. Usage: fake-istiod/build-image.sh [tag]
set -euo pipefail
tag="${1:-fake-istiod:dev}"
root="$(cd "$(dirname "$0")/.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
triple=x86_64-unknown-linux-gnu
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release \
  --manifest-path "$root/Cargo.toml" -p fake-istiod --bin fake-istiod --target "$triple"
bin="$target_dir/$triple/release/fake-istiod"
if ldd "$bin" 2>&1 | grep -q "=>"; then
  echo "error: $bin is dynamically linked" >&2
  exit 1
fi
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
cp "$bin" "$ctx/fake-istiod"
mkdir "$ctx/scenarios"
cp "$root"/scenarios/*.yaml "$ctx/scenarios/"
docker build -t "$tag" -f "$root/fake-istiod/Dockerfile" "$ctx"
echo "built $tag"
