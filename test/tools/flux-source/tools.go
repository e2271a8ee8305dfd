//go:build tools

// Package tools pins Flux source-controller, built by hack/deps/kube.sh.
package tools

import _ "github.com/fluxcd/source-controller"
