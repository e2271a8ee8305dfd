package testutil

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// recorder is a testing.TB that records how a helper ended the test.
type recorder struct {
	testing.TB
	how string // "fatal: …", "skip: …", or "" (went on)
}

type stopped struct{}

func (r *recorder) Helper() {}
func (r *recorder) Fatal(args ...any) {
	r.how = "fatal: " + fmt.Sprint(args...)
	panic(stopped{})
}
func (r *recorder) Fatalf(f string, args ...any) { r.Fatal(fmt.Sprintf(f, args...)) }
func (r *recorder) Errorf(f string, args ...any) { r.how = "error: " + fmt.Sprintf(f, args...) }
func (r *recorder) Skip(args ...any) {
	r.how = "skip: " + fmt.Sprint(args...)
	panic(stopped{})
}
func (r *recorder) Skipf(f string, args ...any) { r.Skip(fmt.Sprintf(f, args...)) }

func (r *recorder) run(f func(testing.TB)) string {
	func() {
		defer func() {
			if p := recover(); p != nil {
				if _, ok := p.(stopped); !ok {
					panic(p)
				}
			}
		}()
		f(r)
	}()
	return r.how
}

func TestGolden(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "golden.txt")
	if how := (&recorder{TB: t}).run(func(tb testing.TB) { Golden(tb, path, []byte("a")) }); !strings.Contains(how, "run the test with -update") {
		t.Fatalf("missing golden file: %q", how)
	}
	*Update = true
	how := (&recorder{TB: t}).run(func(tb testing.TB) { Golden(tb, path, []byte("a")) })
	*Update = false
	if b, err := os.ReadFile(path); how != "" || err != nil || string(b) != "a" {
		t.Fatalf("-update: %q %v %q", how, err, b)
	}
	if how := (&recorder{TB: t}).run(func(tb testing.TB) { Golden(tb, path, []byte("a")) }); how != "" {
		t.Fatalf("same content: %q", how)
	}
	if how := (&recorder{TB: t}).run(func(tb testing.TB) { Golden(tb, path, []byte("b")) }); !strings.Contains(how, "is stale") {
		t.Fatalf("changed content: %q", how)
	}
}

func TestNeedTools(t *testing.T) {
	if how := (&recorder{TB: t}).run(func(tb testing.TB) { NeedTools(tb, "x.apt", "go", os.Args[0]) }); how != "" {
		t.Fatalf("present tools: %q", how)
	}
	how := (&recorder{TB: t}).run(func(tb testing.TB) { NeedTools(tb, "hack/deps/x.apt", "go", "no-such-tool-dodai") })
	want := "fatal: no-such-tool-dodai not found: run ./hack/test.sh, which installs hack/deps/x.apt"
	if testing.Short() {
		want = "skip: no-such-tool-dodai not found (installed by hack/deps/x.apt)"
	}
	if how != want {
		t.Fatalf("missing tool: %q, want %q", how, want)
	}
	how = (&recorder{TB: t}).run(func(tb testing.TB) { Slow(tb, "needs QEMU") })
	if testing.Short() != (how == "skip: slow tier (not with -short): needs QEMU") {
		t.Fatalf("Slow with short=%v: %q", testing.Short(), how)
	}
}

func TestFreePortAndContext(t *testing.T) {
	p := FreePort(t)
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
	if err != nil {
		t.Fatalf("port %d not free: %v", p, err)
	}
	l.Close()
	ctx := Context(t, 20*time.Millisecond)
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("context did not end")
	}
}
