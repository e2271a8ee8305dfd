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

// TestOffers: the offer book both allocators share.
func TestOffers(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	a, b := macaddr.MAC{2, 0, 0, 0, 0, 0xa}, macaddr.MAC{2, 0, 0, 0, 0, 0xb}
	ip1, ip2 := netip.MustParseAddr("10.99.0.1"), netip.MustParseAddr("10.99.0.2")
	var o Offers
	if _, ok := o.Of(a); ok || o.HeldForOther(ip1, b, t0) || o.Take(a, ip1) {
		t.Fatal("the zero Offers is not empty")
	}
	o.Drop(a) // no offer: nothing happens
	o.Hold(a, ip1, t0)
	if ip, ok := o.Of(a); !ok || ip != ip1 {
		t.Fatalf("Of(a) = %s %v", ip, ok)
	}
	if !o.HeldForOther(ip1, b, t0.Add(OfferHold-time.Second)) || o.HeldForOther(ip1, a, t0) {
		t.Fatal("a's offer of ip1 must hold against b only")
	}
	if o.HeldForOther(ip1, b, t0.Add(OfferHold)) {
		t.Fatal("an expired offer still holds")
	}
	// a's new offer frees ip1; b taking over ip2 after a's offer expired
	// forgets a's.
	o.Hold(a, ip2, t0)
	if o.HeldForOther(ip1, b, t0) {
		t.Fatal("a's old offer of ip1 still holds")
	}
	o.Hold(b, ip2, t0.Add(OfferHold))
	if _, ok := o.Of(a); ok {
		t.Fatal("a's offer of ip2 survived b's")
	}
	if o.Take(b, ip1) {
		t.Fatal("Take of another address")
	}
	if !o.Take(b, ip2) || o.HeldForOther(ip2, a, t0) {
		t.Fatal("Take(b, ip2) did not free ip2")
	}
	if len(o.byMAC) != 0 || len(o.byIP) != 0 {
		t.Fatalf("left over: %v %v", o.byMAC, o.byIP)
	}
}
