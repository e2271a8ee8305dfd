package tui_test

import (
	"testing"

	"github.com/dodai-dev/dodai/test/kubetest"
)

// kubeconfig is the admin kubeconfig of a real kube-apiserver, handed out
// by the fake control planes, so bootstrap's /readyz wait is real.
func kubeconfig(t *testing.T) []byte {
	t.Helper()
	return kubetest.StartT(t, kubetest.Options{}).KubeconfigBytes()
}
