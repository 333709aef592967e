//go:build tools

// Package tools pins the kwok main package built by hack/build-binaries.sh.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
