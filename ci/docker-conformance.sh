#!/usr/bin/env bash
# Real-component tier: the whole catalog on the docker topology, the replicas
# and the reference proxy as containers (images from ci/docker-setup.sh).
# Fails if any check fails or if any container or network is left behind.
set -euo pipefail
cd "$(dirname "$0")/.."

census() { echo "$(docker ps -aq | wc -l) containers, $(docker network ls -q | wc -l) networks"; }

before=$(census)
echo "==> conformance suite on the docker topology (before: $before)"
start=$(date +%s)
cargo run --release --locked -q -p harness -- run --topology docker \
  --replica-image fake-istiod:ci --proxy-image istioctl-proxy:ci \
  --report target/docker-conformance-report.yaml --proxy-ready-timeout 30s \
  --implementation-project "istioctl-proxy (container image)"
after=$(census)
echo "==> docker tier: $(( $(date +%s) - start )) s; before: $before; after: $after"
if [ "$after" != "$before" ]; then
  echo "error: the run left containers or networks behind" >&2
  docker ps -a >&2
  docker network ls >&2
  exit 1
fi
echo "==> docker tier passed"
