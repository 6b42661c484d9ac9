//go:build tools

// Package tools pins actionlint, the GitHub Actions workflow linter that `make test` runs.
package tools

import (
	_ "github.com/rhysd/actionlint/cmd/actionlint"
)
