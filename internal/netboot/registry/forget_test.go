package registry

import (
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/dodai-dev/dodai/internal/macaddr"
	"github.com/dodai-dev/dodai/internal/state"
)

func TestForget(t *testing.T) {
	path := filepath.Join(t.TempDir(), "machines.json")
	other := macaddr.MustParse("52:54:00:00:00:02")
	r, err := New(Options{Path: path, Known: known(mac, "w1")})
	if err != nil {
		t.Fatal(err)
	}
	r.Observe(mac, FromDHCP, netip.MustParseAddr("10.0.0.5"), "x86_64", StageDHCP)
	r.Observe(other, FromDHCP, netip.MustParseAddr("10.0.0.6"), "x86_64", StageDHCP)
	if err := r.Save(); err != nil {
		t.Fatal(err)
	}
	if !r.Forget(mac) || r.Forget(mac) || !r.Forget(other) {
		t.Fatal("Forget reports")
	}
	if err := r.Save(); err != nil {
		t.Fatal(err)
	}
	var f state.Machines
	if err := state.ReadJSON(path, &f); err != nil || len(f.Machines) != 0 {
		t.Fatalf("after forgetting: %+v %v", f, err)
	}
	if r.unknown != 0 {
		t.Fatalf("unknown count %d", r.unknown)
	}
}
