//go:build tools

// Package tools pins fake-gcs-server, the Cloud Storage emulator that the project's emulator runs behind its port.
package tools

import (
	_ "github.com/fsouza/fake-gcs-server"
)
