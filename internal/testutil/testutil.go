// Package testutil holds what dodai's tests share: the -update flag and
// golden-file comparison, free ports, contexts bounded by a deadline, the
// dodai binary built for tests that run it as a process, and the checks
// that sort a test into a tier (Slow, NeedRoot, NeedTools).
//
// The tiers: `go test -short ./...` is the fast one (pure logic and
// loopback only: no network namespaces, no QEMU, no kube tools, no built
// binaries); `./hack/test.sh` runs everything. A test that needs more than
// the fast tier calls Slow, NeedRoot or NeedTools first. Missing root or
// tools fail a full run (hack/test.sh installs them; CI must not skip
// silently) and skip a -short one.
//
// It imports no dodai package, so every package's tests may use it.
package testutil

import (
	"bytes"
	"context"
	"flag"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Update is -update: tests that compare output with golden files rewrite
// the files instead (review the diff). Run it per package, e.g.
// `go test ./internal/cluster ./internal/image -update`.
var Update = flag.Bool("update", false, "rewrite golden files with the current output instead of comparing")

// Golden compares got with the golden file at path, or writes got to it
// under -update (creating its directory).
func Golden(t testing.TB, path string, got []byte) {
	t.Helper()
	if *Update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run the test with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is stale: run the test with -update and review the diff\n--- got:\n%s", path, got)
	}
}

// FreePort returns a TCP port of 127.0.0.1 that is free now.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Context returns a context that ends after d, or when the test ends.
func Context(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// WaitUntil polls cond every 20 ms until it holds, and fails the test
// (naming what it waited for) when 30 s pass first.
func WaitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timeout waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Slow skips the test in the fast tier (go test -short); why says what it
// needs (the kube tools, QEMU, a built binary…).
func Slow(t testing.TB, why string) {
	t.Helper()
	if testing.Short() {
		t.Skip("slow tier (not with -short): " + why)
	}
}

// NeedRoot is for tests that create network namespaces, links or run QEMU:
// skipped with -short, failed without root.
func NeedRoot(t testing.TB) {
	t.Helper()
	Slow(t, "needs root (network namespaces)")
	if os.Geteuid() != 0 {
		t.Fatal("needs root (network namespaces, links); run ./hack/test.sh as root")
	}
}

// NeedTools checks that every tool is on PATH, or is an existing absolute
// path (a firmware image, a binary). A missing one skips the test with
// -short and fails it otherwise, naming where it comes from (from: e.g.
// "hack/deps/netboot.apt").
func NeedTools(t testing.TB, from string, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		var err error
		if strings.HasPrefix(tool, "/") {
			_, err = os.Stat(tool)
		} else {
			_, err = exec.LookPath(tool)
		}
		if err == nil {
			continue
		}
		if testing.Short() {
			t.Skipf("%s not found (installed by %s)", tool, from)
		}
		t.Fatalf("%s not found: run ./hack/test.sh, which installs %s", tool, from)
	}
}

// DodaiBinary builds cmd/dodai into a directory of the test and returns
// its path, for tests that run dodai as a process (kill it, drive it in a
// terminal). Slow: skipped with -short.
func DodaiBinary(t testing.TB) string {
	t.Helper()
	Slow(t, "builds the dodai binary")
	bin := filepath.Join(t.TempDir(), "dodai")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/dodai-dev/dodai/cmd/dodai").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}
