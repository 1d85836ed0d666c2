#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo-fuzz, libFuzzer) of the proxy's wire scanner
# and merge (prost as the oracle), its gRPC framing, and the scenario parser.
# Each target runs for FUZZ_SECONDS (default 60) from the checked-in seeds
# (fuzz/corpus/<target>, read only; what the run finds goes to
# fuzz/work/<target>). Fails on a crash, a panic or an oracle violation; the
# input that did it is in fuzz/artifacts/<target>/.
#
#   ci/fuzz.sh                  # every target, 60 s each
#   FUZZ_SECONDS=300 ci/fuzz.sh syncz_merge
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${FUZZ_SECONDS:-60}"
toolchain="${FUZZ_TOOLCHAIN:-nightly}"
# Safe Rust throughout: panics and the oracles' assertions are the findings,
# so no sanitizer by default (several times the executions per second);
# FUZZ_SANITIZER=address for unsafe code.
sanitizer="${FUZZ_SANITIZER:-none}"

if ! cargo "+$toolchain" fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz from crates.io"
  cargo install cargo-fuzz --locked
fi

targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  mapfile -t targets < <(cargo "+$toolchain" fuzz list)
fi

status=0
for t in "${targets[@]}"; do
  mkdir -p "work/$t" "artifacts/$t"
  echo "fuzz: $t for ${seconds}s"
  log="work/$t.log"
  # -rss_limit_mb: a leak or an unbounded buffer is a failure too.
  set +e
  cargo "+$toolchain" fuzz run --sanitizer "$sanitizer" "$t" "work/$t" "corpus/$t" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
    -print_final_stats=1 >"$log" 2>&1
  rc=$?
  set -e
  grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)|ERROR|panicked at|SUMMARY' "$log" || true
  if [ "$rc" -ne 0 ] || grep -qE '^==[0-9]+==ERROR|panicked at|SUMMARY: libFuzzer' "$log"; then
    echo "fuzz: $t FAILED (exit $rc; input in fuzz/artifacts/$t/, log fuzz/$log)"
    status=1
  else
    echo "fuzz: $t ok: $(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1)"
  fi
done
exit "$status"
