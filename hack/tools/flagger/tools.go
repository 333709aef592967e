//go:build tools

// Package tools pins the Flagger main package built by hack/build-peers.sh.
package tools

import _ "github.com/fluxcd/flagger/cmd/flagger"
