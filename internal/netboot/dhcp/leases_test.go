package dhcp

import (
	"errors"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/dodai-dev/dodai/internal/macaddr"
)

// TestLeaseReuseKeepsTheNewOwner: A's lease on X expires, B binds X, then A
// binds another address. B must keep X, in memory and after a restart that
// replays the journal, and X must not be offered to a third client.
func TestLeaseReuseKeepsTheNewOwner(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	path := filepath.Join(t.TempDir(), "leases.json")
	opts := LeaseOptions{Path: path, Start: netip.MustParseAddr("10.0.0.10"), End: netip.MustParseAddr("10.0.0.12"), Now: clock}
	l, err := NewLeases(opts)
	if err != nil {
		t.Fatal(err)
	}
	x, y := netip.MustParseAddr("10.0.0.10"), netip.MustParseAddr("10.0.0.11")
	a, b, c := macaddr.MAC{2, 0, 0, 0, 0, 0x0a}, macaddr.MAC{2, 0, 0, 0, 0, 0x0b}, macaddr.MAC{2, 0, 0, 0, 0, 0x0c}
	if _, err := l.Bind(a, x, time.Minute); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Minute) // A's lease expired
	if _, err := l.Bind(b, x, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Bind(a, y, time.Hour); err != nil {
		t.Fatal(err)
	}
	check := func(l *Leases, when string) {
		t.Helper()
		if le, ok := l.Lookup(b); !ok || le.IP != x {
			t.Fatalf("%s: B lost its lease on %s: %+v %v", when, x, le, ok)
		}
		if le, ok := l.Lookup(a); !ok || le.IP != y {
			t.Fatalf("%s: A's lease: %+v %v", when, le, ok)
		}
		if ip, ok := l.Offer(c, x); !ok || ip == x || ip == y {
			t.Fatalf("%s: a third client was offered %s (ok=%v)", when, ip, ok)
		}
	}
	check(l, "live")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2, err := NewLeases(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	check(l2, "after restart")
}

// TestDeclineOnlyByOwner: a DECLINE for an address that is not the sender's
// lease or offer changes nothing.
func TestDeclineOnlyByOwner(t *testing.T) {
	l, err := NewLeases(LeaseOptions{Start: netip.MustParseAddr("10.0.0.10"), End: netip.MustParseAddr("10.0.0.12")})
	if err != nil {
		t.Fatal(err)
	}
	x := netip.MustParseAddr("10.0.0.10")
	a, evil := macaddr.MAC{2, 0, 0, 0, 0, 0x0a}, macaddr.MAC{2, 0, 0, 0, 0, 0xee}
	if _, err := l.Bind(a, x, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := l.Decline(evil, x); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("spoofed DECLINE: %v", err)
	}
	if le, ok := l.Lookup(a); !ok || le.IP != x {
		t.Fatalf("A lost its lease to a spoofed DECLINE: %+v %v", le, ok)
	}
	if err := l.Decline(a, x); err != nil {
		t.Fatalf("owner's DECLINE: %v", err)
	}
	if _, ok := l.Lookup(a); ok {
		t.Fatal("declined lease still bound")
	}
	if ip, ok := l.Offer(evil, x); ok && ip == x {
		t.Fatal("a declined address was offered again at once")
	}
}
