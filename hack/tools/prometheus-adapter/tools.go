//go:build tools

// Package tools pins the prometheus-adapter main package built by
// hack/build-binaries.sh when the sandbox is asked for a metrics pipeline.
package tools

import _ "sigs.k8s.io/prometheus-adapter/cmd/adapter"
