#!/usr/bin/env bash
# The README's test command: installs what the tests need, then runs every test
# of the workspace. CI (.ci/run) calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> toolchain: $(cargo --version)"
# Tests bind 127.0.0.x loopback addresses (one per fake istiod replica): on Linux
# the whole 127.0.0.0/8 is routed to lo, nothing to set up.

echo "==> cargo test --workspace"
cargo test --workspace --locked "$@"
