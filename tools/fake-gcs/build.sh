#!/usr/bin/env bash
# Build the pinned fake-gcs-server once and print its path (for re-running tools/fake-gcs/trial.py).
#
# The version is pinned in one place, go.mod next to this script. The binary is built with `go build` from the
# Go module proxy into $XDG_CACHE_HOME/translation-tuning/fake-gcs-server-<version>/ (never committed) and reused
# afterwards, like the Pulumi engine (tools/pulumi/build.sh). Licence: BSD-2-Clause (github.com/fsouza/fake-gcs-server).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
version="$(grep -Eo 'github.com/fsouza/fake-gcs-server v[0-9.]+' "$here/go.mod" | head -n1 | cut -d" " -f2)"
dir="${XDG_CACHE_HOME:-$HOME/.cache}/translation-tuning/fake-gcs-server-$version"
binary="$dir/fake-gcs-server"

if [ ! -x "$binary" ]; then
  if ! command -v go >/dev/null 2>&1; then
    echo "error: building fake-gcs-server $version needs the Go toolchain (go >= 1.26); see https://go.dev/dl/" >&2
    exit 1
  fi
  mkdir -p "$dir"
  log="$dir/build.log"
  echo "building fake-gcs-server $version with $(go version | awk '{print $3}') (first time only); log: $log" >&2
  if ! (cd "$here" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" \
        -o "$binary.partial" github.com/fsouza/fake-gcs-server) >"$log" 2>&1; then
    echo "error: building fake-gcs-server $version failed; see $log" >&2
    tail -n 20 "$log" >&2
    exit 1
  fi
  mv "$binary.partial" "$binary"
fi
echo "$binary"
