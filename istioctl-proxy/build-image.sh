#!/usr/bin/env bash
# Builds the istioctl-proxy image (FROM scratch, statically linked binary) with
# the local Docker engine. Usage: istioctl-proxy/build-image.sh [tag]
set -euo pipefail
tag="${1:-istioctl-proxy:dev}"
root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=../ci/static-binary.sh
source "$root/ci/static-binary.sh"
bin="$(static_binary istioctl-proxy)"
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
cp "$bin" "$ctx/istioctl-proxy"
docker build -t "$tag" -f "$root/istioctl-proxy/Dockerfile" "$ctx"
echo "built $tag"
