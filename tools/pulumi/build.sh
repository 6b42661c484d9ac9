#!/usr/bin/env bash
# Provide the pinned Pulumi CLI and a Python language host offline; print the folder that holds them.
#
# Usage: build.sh [--locate]   (--locate: never build the CLI; exit 3 when there is none)
#
# Order of preference:
#   1. PULUMI_BIN_DIR, if set and it holds a pulumi binary (used as it is).
#   2. The cache ($XDG_CACHE_HOME/translation-tuning/pulumi-<version>/bin), built earlier.
#   3. A `pulumi` on PATH whose version is at least the pinned one: a user's normal install, used
#      unchanged with its own (Go) language host.
#   4. A fresh `go build` of github.com/pulumi/pulumi/pkg/v3/cmd/pulumi at the pinned tag.
# For 2 and 4, the folder also gets what the Go module proxy cannot serve as a binary: our Python
# language host (tools/pulumi/language_host, run by its own virtualenv) and the official
# `pulumi-language-python-exec` and `pulumi-resource-pulumi-python` from the pinned sdk/v3 module.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
version="$(grep -Eo 'github.com/pulumi/pulumi/pkg/v3 v[0-9.]+' "$here/go.mod" | head -n1 | cut -d" " -f2)"
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/translation-tuning"
engine_dir="$cache_root/pulumi-$version"
bin_dir="$engine_dir/bin"
log="$engine_dir/build.log"
locate_only=false
[ "${1:-}" = "--locate" ] && locate_only=true

# version_at_least A B: true when semver A >= B (both "vX.Y.Z" or "X.Y.Z").
version_at_least() {
  [ "$(printf '%s\n%s\n' "${2#v}" "${1#v}" | sort -V | head -n1)" = "${2#v}" ]
}

# The fingerprint of the host's sources: a changed file reinstalls the host, nothing else does.
host_fingerprint() {
  (cd "$here/language_host" && find . -name '*.py' -o -name requirements.txt | LC_ALL=C sort | xargs sha256sum) \
    | sha256sum | cut -d" " -f1
}

host_is_current() {
  [ -f "$bin_dir/language_host/.fingerprint" ] && [ "$(cat "$bin_dir/language_host/.fingerprint")" = "$(host_fingerprint)" ] \
    && [ -x "$bin_dir/pulumi-language-python" ] && [ -x "$bin_dir/pulumi-language-python-exec" ] \
    && [ -x "$bin_dir/pulumi-resource-pulumi-python" ]
}

install_host() {
  local sdk_dir venv="$engine_dir/host-venv"
  sdk_dir="$(cd "$here" && GOFLAGS=-mod=mod go list -m -f '{{.Dir}}' github.com/pulumi/pulumi/sdk/v3)"
  # The official runner and dynamic-provider launcher, as the pinned SDK ships them.
  install -m 0755 "$sdk_dir/python/cmd/pulumi-language-python-exec" "$bin_dir/pulumi-language-python-exec"
  install -m 0755 "$sdk_dir/python/dist/pulumi-resource-pulumi-python" "$bin_dir/pulumi-resource-pulumi-python"
  if ! cmp -s "$here/language_host/requirements.txt" "$venv/requirements.txt" 2>/dev/null; then
    echo "installing the Python language host's virtualenv ($venv)" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/language_host/requirements.txt" >&2
    cp "$here/language_host/requirements.txt" "$venv/requirements.txt"
  fi
  rm -rf "$bin_dir/language_host.new"
  mkdir -p "$bin_dir/language_host.new"
  cp "$here"/language_host/*.py "$bin_dir/language_host.new/"
  echo "$version" > "$bin_dir/language_host.new/VERSION"
  host_fingerprint > "$bin_dir/language_host.new/.fingerprint"
  rm -rf "$bin_dir/language_host" && mv "$bin_dir/language_host.new" "$bin_dir/language_host"
  cat > "$bin_dir/pulumi-language-python" <<'LAUNCHER'
#!/bin/sh
# The Python language host for this pinned Pulumi CLI (source: tools/pulumi/language_host).
# -E -s: the host ignores PYTHON* variables and user site-packages; its children still get them.
bin_dir="$(cd "$(dirname "$0")" && pwd -P)"
exec "$bin_dir/../host-venv/bin/python" -E -s "$bin_dir/language_host" "$@"
LAUNCHER
  chmod 0755 "$bin_dir/pulumi-language-python"
}

if [ -n "${PULUMI_BIN_DIR:-}" ] && [ -x "$PULUMI_BIN_DIR/pulumi" ]; then
  echo "$PULUMI_BIN_DIR"; exit 0
fi
if [ -x "$bin_dir/pulumi" ]; then
  host_is_current || install_host  # quick: a copy, and the host's venv only when its requirements changed
  echo "$bin_dir"; exit 0
fi
if command -v pulumi >/dev/null 2>&1; then
  installed="$(pulumi version 2>/dev/null || true)"
  if [ -n "$installed" ] && version_at_least "$installed" "$version"; then
    dirname "$(command -v pulumi)"; exit 0
  fi
  $locate_only || echo "note: pulumi $installed on PATH is older than $version; building $version instead" >&2
fi
$locate_only && exit 3
if ! command -v go >/dev/null 2>&1; then
  cat >&2 <<MSG
error: neither a Pulumi CLI (>= $version) nor the Go toolchain was found.
  Install Pulumi (https://www.pulumi.com/docs/install/) and put 'pulumi' on PATH,
  or install Go >= 1.26.6 so this project can build the pinned CLI itself.
MSG
  exit 1
fi

mkdir -p "$bin_dir"
echo "building pulumi $version with $(go version | awk '{print $3}') (first time only, ~5-20 min); log: $log" >&2
start=$(date +%s)
if ! (cd "$here" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath \
      -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$version" \
      -o "$bin_dir/pulumi.partial" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi) >"$log" 2>&1; then
  echo "error: building pulumi $version failed; see $log" >&2
  tail -n 20 "$log" >&2
  exit 1
fi
mv "$bin_dir/pulumi.partial" "$bin_dir/pulumi"
install_host
echo "built pulumi $("$bin_dir/pulumi" version) in $(( $(date +%s) - start ))s" >&2
echo "$bin_dir"
