//go:build tools

// Package tools pins the etcd CLI built by hack/deps/kube.sh.
package tools

import _ "go.etcd.io/etcd/server/v3"
