#!/usr/bin/env bash
# Builds the fake-istiod image (FROM scratch, statically linked binary, the
# shipped scenarios under /scenarios) with the local Docker engine, as
# istioctl-proxy/build-image.sh does. Usage: fake-istiod/build-image.sh [tag]
set -euo pipefail
tag="${1:-fake-istiod:dev}"
root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=../ci/static-binary.sh
source "$root/ci/static-binary.sh"
bin="$(static_binary fake-istiod)"
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
cp "$bin" "$ctx/fake-istiod"
mkdir "$ctx/scenarios"
cp "$root"/scenarios/*.yaml "$ctx/scenarios/"
docker build -t "$tag" -f "$root/fake-istiod/Dockerfile" "$ctx"
echo "built $tag"
