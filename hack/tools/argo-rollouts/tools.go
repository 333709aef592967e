//go:build tools

// Package tools pins the Argo Rollouts main packages built by hack/build-peers.sh.
package tools

import (
	_ "github.com/argoproj/argo-rollouts/cmd/kubectl-argo-rollouts"
	_ "github.com/argoproj/argo-rollouts/cmd/rollouts-controller"
)
