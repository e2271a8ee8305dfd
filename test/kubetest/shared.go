package kubetest

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/dodai-dev/dodai/internal/testutil"
)

// Shared is one Env for a whole test package: the first test that asks for
// it starts it, and the package's TestMain stops it after every test ran.
// Tests that share it must leave it usable for the others (their own
// namespaces and Node names).
//
//	var kube = kubetest.Shared{Options: kubetest.Options{ControllerManager: true}}
//
//	func TestMain(m *testing.M) { os.Exit(kube.Run(m)) }
//
//	func TestSomething(t *testing.T) {
//		env := kube.Env(t)
//		...
//	}
//
// A Shared must not be copied after first use.
type Shared struct {
	// Options are the Env's options; set them before the first Env call.
	Options Options

	once sync.Once
	env  *Env
	err  error
}

// Env returns the package's Env, starting it on the first call (bounded by
// 3 minutes). It skips t in the fast tier (testutil.Slow) and fails t when
// the start failed, also for the later callers.
func (s *Shared) Env(t testing.TB) *Env {
	t.Helper()
	testutil.Slow(t, "needs the kube tools (a real kube-apiserver)")
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		s.env, s.err = Start(ctx, s.Options)
	})
	if s.err != nil {
		t.Fatalf("starting test Kubernetes (built by hack/deps/kube.sh, run hack/test.sh): %v", s.err)
	}
	return s.env
}

// Run runs the package's tests and then stops the Env if one was started; it
// returns m.Run's exit code (a failed stop is printed, not counted).
func (s *Shared) Run(m *testing.M) int {
	code := m.Run()
	if s.env != nil {
		if err := s.env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping test Kubernetes:", err)
		}
	}
	return code
}
