//go:build tools

// Package tools pins the etcd main package built by hack/build-binaries.sh.
package tools

import _ "go.etcd.io/etcd/server/v3"
