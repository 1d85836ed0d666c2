#!/usr/bin/env bash
# Sourced by the image scripts (istioctl-proxy/build-image.sh,
# fake-istiod/build-image.sh): `static_binary PACKAGE` builds the package's
# binary of the same name as a statically linked release binary (glibc,
# +crt-static, so a FROM scratch image can run it) and prints its path.
# `static_binary PACKAGE BIN FEATURES` builds another binary of the package
# with those cargo features (e.g. the test-only defective proxy).
static_binary() {
  local package="$1" name="${2:-$1}" features="${3:-}"
  local root target_dir triple bin
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  target_dir="${CARGO_TARGET_DIR:-$root/target}"
  triple=x86_64-unknown-linux-gnu
  RUSTFLAGS="-C target-feature=+crt-static" cargo build --release \
    --manifest-path "$root/Cargo.toml" -p "$package" --bin "$name" --target "$triple" \
    ${features:+--features "$features"} >&2
  bin="$target_dir/$triple/release/$name"
  if ldd "$bin" 2>&1 | grep -q "=>"; then
    echo "error: $bin is dynamically linked" >&2
    return 1
  fi
  echo "$bin"
}
