package leases

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dodai-dev/dodai/api/v1alpha1"
	"github.com/dodai-dev/dodai/internal/incluster/incltest"
	"github.com/dodai-dev/dodai/internal/incluster/kube"
	"github.com/dodai-dev/dodai/internal/macaddr"
	"github.com/dodai-dev/dodai/internal/netboot/dhcp"
)

func apiserver(t *testing.T) (*rest.Config, string) {
	t.Helper()
	c := incltest.Start(t)
	return c.REST, incltest.Namespace
}

// replica is one boot server's allocator with its own client and watch.
func replica(t *testing.T, cfg *rest.Config, ns, name string, o Options) *Leases {
	t.Helper()
	c, err := kube.Client(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := cache.New(cfg, cache.Options{Scheme: kube.Scheme(), DefaultNamespaces: map[string]cache.Config{ns: {}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	o.Client, o.Cache, o.Namespace, o.Server = c, ca, ns, name
	if !o.Start.IsValid() {
		o.Start, o.End = netip.MustParseAddr("10.99.0.100"), netip.MustParseAddr("10.99.0.199")
	}
	l, err := New(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = ca.Start(ctx) }()
	sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
	defer scancel()
	if err := l.WaitSynced(sctx); err != nil {
		t.Fatal(err)
	}
	return l
}

func mac(i int) macaddr.MAC { return macaddr.MAC{0x52, 0x54, 0, 0xaa, byte(i >> 8), byte(i)} }

// Two replicas (own clients, own watches) bind the same address for
// different MACs at the same instant, 40 times over: every time exactly one
// wins, the other is told the address is in use, and the object holds the
// winner's MAC.
func TestTwoWritersOneAddress(t *testing.T) {
	cfg, ns := apiserver(t)
	a := replica(t, cfg, ns, "a", Options{})
	b := replica(t, cfg, ns, "b", Options{})
	c, _ := kube.Client(cfg)
	for i := range 40 {
		ip := netip.MustParseAddr(fmt.Sprintf("10.99.0.%d", 100+i))
		macA, macB := mac(2*i), mac(2*i+1)
		var wg sync.WaitGroup
		start := make(chan struct{})
		var errA, errB error
		wg.Add(2)
		go func() { defer wg.Done(); <-start; errA = bind(a, macA, ip, time.Hour) }()
		go func() { defer wg.Done(); <-start; errB = bind(b, macB, ip, time.Hour) }()
		close(start)
		wg.Wait()
		if (errA == nil) == (errB == nil) {
			t.Fatalf("%s: both or neither won: a=%v b=%v", ip, errA, errB)
		}
		winner, loserErr := macA, errB
		if errA != nil {
			winner, loserErr = macB, errA
		}
		// The DHCP server NAKs on exactly this error (dhcp.Config.Unrecorded).
		if !errors.Is(loserErr, ErrInUse) || !errors.Is(loserErr, dhcp.ErrAddressTaken) {
			t.Errorf("%s: loser's error %v, want ErrInUse (dhcp.ErrAddressTaken)", ip, loserErr)
		}
		got := &v1alpha1.DHCPLease{}
		if err := c.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: ip.String()}, got); err != nil {
			t.Fatal(err)
		}
		if got.Spec.MAC != winner.String() || got.Spec.Address != ip.String() {
			t.Errorf("%s: object holds %q, winner was %s", ip, got.Spec.MAC, winner)
		}
	}
	if w := a.Writes() + b.Writes(); w < 40 {
		t.Errorf("only %d writes for 40 races", w)
	}
}

// Many clients handshake through two replicas at once (each client through
// one of them, as a client takes the first offer): no address is bound to
// two MACs, every client gets one, and each replica sees the other's
// bindings through the watch.
func TestReplicasHandOutDistinctAddresses(t *testing.T) {
	cfg, ns := apiserver(t)
	o := Options{Start: netip.MustParseAddr("10.99.1.0"), End: netip.MustParseAddr("10.99.1.255")}
	reps := []*Leases{replica(t, cfg, ns, "a", o), replica(t, cfg, ns, "b", o)}
	const clients = 200
	var wg sync.WaitGroup
	var failed atomic.Int64
	got := make([]netip.Addr, clients)
	sem := make(chan struct{}, 16)
	for i := range clients {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			r := reps[i%2]
			for try := 0; try < 5; try++ { // DISCOVER again after a NAK
				ip, ok := r.Offer(mac(i), netip.Addr{})
				if !ok {
					continue
				}
				if err := bind(r, mac(i), ip, time.Hour); err == nil {
					got[i] = ip
					return
				} else if !errors.Is(err, ErrInUse) {
					t.Error(err)
					return
				}
			}
			failed.Add(1)
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d clients got no address", failed.Load())
	}
	seen := map[netip.Addr]int{}
	for i, ip := range got {
		if j, dup := seen[ip]; dup {
			t.Fatalf("%s handed to client %d and %d", ip, j, i)
		}
		seen[ip] = i
	}
	// The apiserver agrees, and both watches converge on it.
	c, _ := kube.Client(cfg)
	list := &v1alpha1.DHCPLeaseList{}
	if err := c.List(t.Context(), list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != clients {
		t.Errorf("%d DHCPLeases, want %d", len(list.Items), clients)
	}
	for _, le := range list.Items {
		i, ok := seen[netip.MustParseAddr(le.Spec.Address)]
		if !ok || mac(i).String() != le.Spec.MAC {
			t.Errorf("DHCPLease %s holds %s, not the client that got it", le.Name, le.Spec.MAC)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, r := range reps {
		for len(r.All()) != clients && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if n := len(r.All()); n != clients {
			t.Errorf("replica %s sees %d leases, want %d", r.o.Server, n, clients)
		}
	}
	// A client known to the other replica gets its own address back there.
	ip, ok := reps[1].Offer(mac(0), netip.Addr{})
	if !ok || ip != got[0] {
		t.Errorf("client 0 offered %s by the other replica, holds %s", ip, got[0])
	}
}

// The decisions of the file allocator: reservations, requested addresses,
// the other client's binding, RELEASE (the address stays with its MAC),
// DECLINE only by the owner, and a restarted replica remembers everything.
func TestDecisions(t *testing.T) {
	cfg, ns := apiserver(t)
	res := netip.MustParseAddr("10.99.0.11")
	now := time.Now()
	clock := func() time.Time { return now }
	resMAC := macaddr.MustParse("52:54:00:00:00:11")
	o := Options{Reservations: map[macaddr.MAC]netip.Addr{resMAC: res}, Now: clock}
	a := replica(t, cfg, ns, "a", o)

	if ip, _ := a.Offer(resMAC, netip.Addr{}); ip != res {
		t.Errorf("reserved MAC offered %s", ip)
	}
	if err := bind(a, resMAC, res, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := bind(a, mac(99), res, time.Hour); err == nil {
		t.Error("another MAC bound a reservation")
	}
	if err := bind(a, resMAC, netip.MustParseAddr("10.99.0.150"), time.Hour); err == nil {
		t.Error("a reserved MAC bound another address")
	}
	if err := bind(a, mac(1), netip.MustParseAddr("10.99.1.1"), time.Hour); err == nil {
		t.Error("bound an address outside the range")
	}
	want := netip.MustParseAddr("10.99.0.150")
	if ip, _ := a.Offer(mac(1), want); ip != want {
		t.Errorf("requested %s, offered %s", want, ip)
	}
	if ip, _ := a.Offer(mac(2), want); ip == want {
		t.Error("an address offered to one client was offered to another")
	}
	if err := bind(a, mac(1), want, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := bind(a, mac(2), want, time.Hour); !errors.Is(err, ErrInUse) {
		t.Errorf("bind of another client's address: %v", err)
	}
	if err := a.Decline(mac(2), want); !errors.Is(err, dhcp.ErrNotOwner) {
		t.Errorf("DECLINE by another client: %v", err)
	}
	if err := a.Release(mac(1), want); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.Lookup(mac(1)); ok {
		t.Error("released lease still bound")
	}
	if ip, _ := a.Offer(mac(1), netip.Addr{}); ip != want {
		t.Errorf("after RELEASE the client got %s, want its old %s", ip, want)
	}
	// Moving to another address frees the first one for others.
	other := netip.MustParseAddr("10.99.0.160")
	if err := bind(a, mac(1), other, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := bind(a, mac(3), want, time.Hour); err != nil {
		t.Errorf("address left by its client is still blocked: %v", err)
	}
	if err := a.Decline(mac(3), want); err != nil {
		t.Fatal(err)
	}
	if ip, _ := a.Offer(mac(4), want); ip == want {
		t.Error("declined address offered")
	}

	b := replica(t, cfg, ns, "restarted", o)
	if le, ok := b.Lookup(mac(1)); !ok || le.IP != other {
		t.Errorf("restarted replica: lease of mac 1 %v %v", le, ok)
	}
	if err := bind(b, mac(5), other, time.Hour); !errors.Is(err, ErrInUse) {
		t.Errorf("restarted replica bound a held address: %v", err)
	}
	all := b.All()
	if len(all) != 3 { // reservation, 10.99.0.150 (declined), 10.99.0.160
		t.Errorf("All: %v", all)
	}
	// Importing an older copy of a binding keeps the newer one.
	c, _ := kube.Client(cfg)
	if n, err := Import(t.Context(), c, ns, "pivot", []dhcp.Lease{{MAC: mac(7), IP: other, Expiry: now.Add(time.Minute)}}); err != nil || n != 0 {
		t.Fatalf("import: %d written, %v", n, err)
	}
	if le, ok := b.Lookup(mac(1)); !ok || le.IP != other {
		t.Errorf("import replaced a newer lease: %v %v", le, ok)
	}
}

// bind is Bind followed by waiting for its apiserver write, as the DHCP
// server does before it sends the ACK.
func bind(l *Leases, mac macaddr.MAC, ip netip.Addr, d time.Duration) error {
	durable, err := l.Bind(mac, ip, d)
	if err != nil {
		return err
	}
	return durable.Wait()
}
