#!/usr/bin/env bash
# The real-cluster run: `proxy-conformance cluster walkthrough` (the blog end to
# end on kind), then `proxy-conformance run --topology cluster` (the conformance
# catalog against the real istiod pods) for one Istio version. Run by .github/workflows/cluster.yml on
# ubuntu-latest; works on any Linux machine with docker.
#   ci/cluster-run.sh ISTIO_VERSION       (e.g. 1.12.9)
# Installs the kind release the plan pairs with that Istio line, raises the
# inotify limits kind needs, and keeps everything under target/cluster
# (plan.txt, walkthrough.log, conformance.log and its reports, timing.txt,
# logs/ on failure).
set -euo pipefail
cd "$(dirname "$0")/.."
istio="${1:?usage: ci/cluster-run.sh ISTIO_VERSION}"
target_dir="${CARGO_TARGET_DIR:-target}"
work=target/cluster
mkdir -p "$work"

cargo build --release --locked -p harness --bin proxy-conformance
bin="$target_dir/release/proxy-conformance"

"$bin" cluster plan --provider kind --istio-version "$istio" > "$work/plan.txt"
kind_version="$(sed -n 's/^#   Kubernetes [0-9.]*: kind \(v[0-9.]*\) with .*/\1/p' "$work/plan.txt")"
[ -n "$kind_version" ] || { echo "error: no kind version in $work/plan.txt" >&2; exit 1; }
if ! command -v kind >/dev/null 2>&1 || [ "$(kind version | awk '{print $2}')" != "$kind_version" ]; then
  echo "==> installing kind $kind_version"
  mkdir -p "$HOME/.local/bin"
  curl -fsSLo "$HOME/.local/bin/kind" "https://kind.sigs.k8s.io/dl/$kind_version/kind-linux-amd64"
  chmod +x "$HOME/.local/bin/kind"
  export PATH="$HOME/.local/bin:$PATH"
fi
kind version

# kind's known issues: many clusters need more inotify watches/instances.
if [ "$(id -u)" = 0 ]; then sysctl_cmd=(sysctl); else sysctl_cmd=(sudo sysctl); fi
"${sysctl_cmd[@]}" -w fs.inotify.max_user_watches=524288 fs.inotify.max_user_instances=512

start=$(date +%s)
status=0
"$bin" cluster walkthrough --keep --provider kind --istio-version "$istio" --work-dir "$work" 2>&1 | tee "$work/walkthrough.log" || status=$?
echo "walkthrough (Istio $istio, kind $kind_version): exit $status after $(( $(date +%s) - start )) s" | tee "$work/timing.txt"

# The conformance catalog on the same clusters: the real istiod pods as the
# ground truth, the deployed reference proxy under test (issue #10).
if [ "$status" = 0 ]; then
  run_start=$(date +%s)
  "$bin" run --topology cluster --external-context kind-external --remote-context kind-remote \
    --report "$work/conformance-report.yaml" --junit "$work/conformance-junit.xml" 2>&1 \
    | tee "$work/conformance.log" || status=$?
  echo "run --topology cluster: exit $status after $(( $(date +%s) - run_start )) s" | tee -a "$work/timing.txt"
fi

"$bin" cluster down --provider kind --istio-version "$istio" --work-dir "$work" 2>&1 | tee -a "$work/walkthrough.log" || true
exit "$status"
