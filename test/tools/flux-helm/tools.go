//go:build tools

// Package tools pins Flux helm-controller, built by hack/deps/kube.sh.
package tools

import _ "github.com/fluxcd/helm-controller"
