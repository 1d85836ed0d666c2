#!/usr/bin/env bash
# Builds the istioctl-proxy image (FROM scratch, statically linked binary) with
# the local Docker engine. Usage: istioctl-proxy/build-image.sh [--defective] [tag]
# --defective: the test-only istioctl-proxy-defective binary instead (defects
# from ISTIOCTL_PROXY_DEFECTS), for the conformance suite's teeth; never ship it.
set -euo pipefail
defective=""
if [ "${1:-}" = "--defective" ]; then defective=1; shift; fi
tag="${1:-istioctl-proxy:dev}"
root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=../ci/static-binary.sh
source "$root/ci/static-binary.sh"
if [ -n "$defective" ]; then
  bin="$(static_binary istioctl-proxy istioctl-proxy-defective test-defects)"
else
  bin="$(static_binary istioctl-proxy)"
fi
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
cp "$bin" "$ctx/istioctl-proxy"
docker build -t "$tag" -f "$root/istioctl-proxy/Dockerfile" "$ctx"
echo "built $tag"
