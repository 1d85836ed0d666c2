#!/usr/bin/env bash
# Real-component tier: the reference proxy as a container (FROM scratch image,
# statically linked) under the conformance suite, through --proxy-cmd.
# Installs Debian's docker.io and starts dockerd when needed. A machine where no
# Docker daemon can run skips this tier loudly; once the daemon runs, any failure
# fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

skip() { echo "==> SKIPPED docker tier: $*"; exit 0; }

if ! command -v dockerd >/dev/null 2>&1; then
  echo "==> installing docker.io"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null; }; then
    skip "docker.io could not be installed"
  fi
fi
if ! docker info >/dev/null 2>&1; then
  echo "==> starting dockerd"
  (dockerd >/tmp/proxy-conformance-dockerd.log 2>&1 &)
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || skip "dockerd did not start ($(tail -n 1 /tmp/proxy-conformance-dockerd.log))"
fi

echo "==> building the istioctl-proxy image"
bash istioctl-proxy/build-image.sh istioctl-proxy:ci

echo "==> conformance suite against the container"
before=$(docker ps -aq | wc -l)
cargo run --release --locked -q -p harness -- run \
  --report target/docker-conformance-report.yaml --proxy-ready-timeout 30s \
  --implementation-project "istioctl-proxy (container image)" \
  --proxy-cmd 'docker run --rm --network host --user 0 -v /tmp:/tmp istioctl-proxy:ci --listen {listen} --health-listen off --istiod {istiod} --cert {cert} --key {key} --istiod-ca {ca} --istiod-server-name istiod.{namespace}.svc --identity passthrough --token-public-key {token_issuer_key} --replica-timeout 2s --request-timeout 4s'
after=$(docker ps -aq | wc -l)
if [ "$after" -ne "$before" ]; then
  echo "error: $((after - before)) containers left behind by the run" >&2
  docker ps -a >&2
  exit 1
fi
echo "==> docker tier passed"
