//go:build tools

// Package tools pins the Pulumi CLI and Python language host that the project builds offline.
package tools

import (
	_ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
)
