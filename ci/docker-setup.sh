#!/usr/bin/env bash
# Sourced by ci/test.sh: `docker_setup` installs Debian's docker.io when
# needed, starts dockerd, and builds the three images the docker tier uses
# (FROM scratch, static binaries, never pulled):
#   fake-istiod:ci                the replicas
#   istioctl-proxy:ci             the reference proxy
#   istioctl-proxy-defective:ci   the test-only variants (ISTIOCTL_PROXY_DEFECTS)
# On success it exports PROXY_CONFORMANCE_DOCKER_TESTS=1 and the image names
# for harness/tests/docker_topology.rs. A machine where no Docker daemon can
# run gets a loud SKIPPED line and return 1; once the daemon runs, a failed
# image build fails the run.
docker_setup() {
  local root
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  if ! command -v dockerd >/dev/null 2>&1; then
    echo "==> installing docker.io"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null; }; then
      echo "==> SKIPPED docker tier: docker.io could not be installed"
      return 1
    fi
  fi
  if ! docker info >/dev/null 2>&1; then
    echo "==> starting dockerd"
    (dockerd >/tmp/proxy-conformance-dockerd.log 2>&1 &)
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
    if ! docker info >/dev/null 2>&1; then
      echo "==> SKIPPED docker tier: dockerd did not start ($(tail -n 1 /tmp/proxy-conformance-dockerd.log))"
      return 1
    fi
  fi
  echo "==> building the images (fake-istiod:ci, istioctl-proxy:ci, istioctl-proxy-defective:ci)"
  # (Inside `if docker_setup`, errexit is off: a failed build exits here.)
  bash "$root/fake-istiod/build-image.sh" fake-istiod:ci || exit 1
  bash "$root/istioctl-proxy/build-image.sh" istioctl-proxy:ci || exit 1
  bash "$root/istioctl-proxy/build-image.sh" --defective istioctl-proxy-defective:ci || exit 1
  export PROXY_CONFORMANCE_DOCKER_TESTS=1
  export PROXY_CONFORMANCE_REPLICA_IMAGE=fake-istiod:ci
  export PROXY_CONFORMANCE_PROXY_IMAGE=istioctl-proxy:ci
  export PROXY_CONFORMANCE_DEFECTIVE_IMAGE=istioctl-proxy-defective:ci
}
