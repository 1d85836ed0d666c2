#!/usr/bin/env bash
# The README's test command: installs what the tests need, then runs every test
# of the workspace. CI (.ci/run) calls exactly this.
#
# Needs only Rust: the tests run fake istiod replicas, the reference proxy and
# the harness on loopback (127.0.0.2, .3, ... are all routed to lo on Linux, no
# setup), and build their certificates and tokens themselves.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> toolchain: $(cargo --version)"

# The --proxy-cmd tests start the istioctl-proxy binary as a process.
echo "==> cargo build --workspace --bins"
cargo build --workspace --bins --locked

echo "==> cargo test --workspace"
cargo test --workspace --locked "$@"

# Tier 3: the proxy image under the suite with a real Docker engine.
bash ci/docker-conformance.sh
