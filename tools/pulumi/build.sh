#!/usr/bin/env bash
# Provide the pinned Pulumi CLI offline: reuse a cached build, else build it from the Go module proxy.
#
# Prints the folder holding `pulumi` and our launcher `pulumi-resource-pulumi-python`.
# Order of preference:
#   1. PULUMI_BIN_DIR, if set and it holds a pulumi binary.
#   2. The cache ($XDG_CACHE_HOME/translation-tuning/pulumi-<version>/bin), built earlier.
#   3. A `pulumi` on PATH whose version is at least the pinned one (a user's normal install).
#   4. A fresh `go build` of github.com/pulumi/pulumi/pkg/v3/cmd/pulumi at the pinned tag.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
version="$(grep -Eo 'github.com/pulumi/pulumi/pkg/v3 v[0-9.]+' "$here/go.mod" | head -n1 | cut -d" " -f2)"
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/translation-tuning"
bin_dir="$cache_root/pulumi-$version/bin"
log="$cache_root/pulumi-$version/build.log"

# version_at_least A B: true when semver A >= B (both "vX.Y.Z" or "X.Y.Z").
version_at_least() {
  [ "$(printf '%s\n%s\n' "${2#v}" "${1#v}" | sort -V | head -n1)" = "${2#v}" ]
}

write_launchers() {
  # The engine starts Python dynamic providers through this executable name (pulumi-notes.md).
  cat > "$1/pulumi-resource-pulumi-python" <<'LAUNCHER'
#!/usr/bin/env bash
# Serves Python dynamic providers to the Pulumi engine.
export PYTHONUNBUFFERED=1
exec "${PULUMI_PYTHON_CMD:-python3}" -u -m pulumi.dynamic "$@"
LAUNCHER
  chmod +x "$1/pulumi-resource-pulumi-python"
}

if [ -n "${PULUMI_BIN_DIR:-}" ] && [ -x "$PULUMI_BIN_DIR/pulumi" ]; then
  echo "$PULUMI_BIN_DIR"; exit 0
fi
if [ -x "$bin_dir/pulumi" ] && [ -x "$bin_dir/pulumi-resource-pulumi-python" ]; then
  echo "$bin_dir"; exit 0
fi
if command -v pulumi >/dev/null 2>&1; then
  installed="$(pulumi version 2>/dev/null || true)"
  if [ -n "$installed" ] && version_at_least "$installed" "$version"; then
    installed_dir="$(dirname "$(command -v pulumi)")"
    mkdir -p "$bin_dir"
    write_launchers "$bin_dir"
    ln -sf "$installed_dir/pulumi" "$bin_dir/pulumi"
    echo "$bin_dir"; exit 0
  fi
  echo "note: pulumi $installed on PATH is older than $version; building $version instead" >&2
fi
if ! command -v go >/dev/null 2>&1; then
  cat >&2 <<MSG
error: neither a Pulumi CLI (>= $version) nor the Go toolchain was found.
  Install Pulumi (https://www.pulumi.com/docs/install/) and put 'pulumi' on PATH,
  or install Go >= 1.26.6 so this project can build the pinned CLI itself.
MSG
  exit 1
fi

mkdir -p "$bin_dir"
echo "building pulumi $version with $(go version | awk '{print $3}') (first time only, ~10-20 min); log: $log" >&2
start=$(date +%s)
if ! (cd "$here" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath \
      -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$version" \
      -o "$bin_dir/pulumi.partial" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi) >"$log" 2>&1; then
  echo "error: building pulumi $version failed; see $log" >&2
  tail -n 20 "$log" >&2
  exit 1
fi
mv "$bin_dir/pulumi.partial" "$bin_dir/pulumi"
write_launchers "$bin_dir"
echo "built pulumi $("$bin_dir/pulumi" version) in $(( $(date +%s) - start ))s" >&2
echo "$bin_dir"
