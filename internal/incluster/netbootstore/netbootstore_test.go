package netbootstore_test

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dodai-dev/dodai/api/v1alpha1"
	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/incluster/incltest"
	"github.com/dodai-dev/dodai/internal/incluster/netbootstore"
	"github.com/dodai-dev/dodai/internal/macaddr"
	"github.com/dodai-dev/dodai/internal/state"
	"github.com/dodai-dev/dodai/internal/testutil"
)

// seen collects the records a replica's OnRemote receives.
type seen struct {
	mu   sync.Mutex
	recs []state.Machine
}

func (s *seen) add(m state.Machine) { s.mu.Lock(); s.recs = append(s.recs, m); s.mu.Unlock() }

func (s *seen) find(f func(state.Machine) bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.recs {
		if f(m) {
			return true
		}
	}
	return false
}

// Two boot server replicas over one real apiserver: a's registry changes
// are written behind (latest per MAC, node MACs from the cluster file), b
// learns them through its watch and seeds from them, neither hears its own
// writes, the controller's apply is visible, and a replica stopping
// flushes what it still had queued.
func TestReplicasShareTheRegistry(t *testing.T) {
	kc := incltest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl := &cluster.Cluster{Spec: cluster.Spec{Nodes: []cluster.Node{{Name: "cp1", MACs: []string{"52:54:00:00:00:01", "52:54:00:00:00:02"}}}}}
	open := func(ctx context.Context, name string, got *seen) *netbootstore.Store {
		s, err := netbootstore.Open(ctx, netbootstore.Options{REST: kc.REST, Namespace: incltest.Namespace, Server: name, Cluster: cl})
		if err != nil {
			t.Fatal(err)
		}
		s.OnRemote(got.add)
		return s
	}
	var fromA, fromB seen
	actx, stopA := context.WithCancel(ctx)
	a := open(actx, "a", &fromA)
	aDone := make(chan struct{})
	go func() { a.Run(actx); close(aDone) }()
	b := open(ctx, "b", &fromB)
	go b.Run(ctx)

	// Three changes of one machine in a row: the latest is what is stored.
	t0 := time.Now().UTC().Truncate(time.Second)
	for i, stage := range []string{"dhcp", "ipxe", "kernel"} {
		a.MachineChanged(state.Machine{MAC: "52:54:00:00:00:01", IP: "10.99.0.100", Arch: "amd64", Stage: stage, Node: "cp1",
			LastSeen: t0.Add(time.Duration(i) * time.Second), BootStarted: t0})
	}
	name := v1alpha1.MachineName("52:54:00:00:00:01")
	var m v1alpha1.Machine
	testutil.WaitUntil(t, "a's Machine with the latest stage", func() bool {
		return kc.Client.Get(ctx, client.ObjectKey{Namespace: incltest.Namespace, Name: name}, &m) == nil && m.Status.Stage == "kernel"
	})
	if m.Status.BootServer != "a" || m.Spec.Node != "cp1" || len(m.Spec.MACs) != 2 || m.Spec.MACs[1] != "52:54:00:00:00:02" {
		t.Errorf("Machine %+v %+v: want boot server a, node cp1 with both of its MACs", m.Spec, m.Status)
	}
	if m.Status.BootStarted == nil || !m.Status.BootStarted.Time.Equal(t0) {
		t.Errorf("bootStarted %v, want %v", m.Status.BootStarted, t0)
	}
	// The count is added when the write returns, just after the
	// apiserver has the object: wait for it rather than race it.
	testutil.WaitUntil(t, "a to count at least the create and the status write", func() bool { return a.Writes() >= 2 })

	// b hears a's record; a never hears its own.
	testutil.WaitUntil(t, "b to hear a's record", func() bool {
		return fromB.find(func(r state.Machine) bool {
			return r.MAC == "52:54:00:00:00:01" && r.Stage == "kernel" && r.Node == "cp1"
		})
	})
	if recs, err := b.Machines(ctx); err != nil || len(recs) != 1 || recs[0].Stage != "kernel" || recs[0].IP != "10.99.0.100" {
		t.Errorf("b's seed: %+v, %v", recs, err)
	}
	if fromA.find(func(state.Machine) bool { return true }) {
		t.Errorf("a heard its own writes: %+v", fromA.recs)
	}

	// The controller's apply shows in ConfigApplied.
	if _, ok := b.ConfigApplied("cp1"); ok {
		t.Error("config applied before the controller applied it")
	}
	applied := metav1.NewTime(time.Now().UTC().Truncate(time.Second))
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := kc.Client.Get(ctx, client.ObjectKey{Namespace: incltest.Namespace, Name: name}, &m); err != nil {
			return err
		}
		m.Status.Join = &v1alpha1.JoinStatus{Applied: &applied}
		return kc.Client.Status().Update(ctx, &m)
	}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitUntil(t, "b to see the apply", func() bool {
		at, ok := b.ConfigApplied("cp1")
		return ok && at.Equal(applied.Time)
	})

	// A record queued just before a stops is still written.
	a.MachineChanged(state.Machine{MAC: "52:54:00:00:00:09", Stage: "dhcp", LastSeen: time.Now().UTC()})
	stopA()
	<-aDone
	var last v1alpha1.Machine
	if err := kc.Client.Get(ctx, client.ObjectKey{Namespace: incltest.Namespace, Name: v1alpha1.MachineName("52:54:00:00:00:09")}, &last); err != nil || last.Status.Stage != "dhcp" {
		t.Errorf("record queued at stop: %+v, %v", last.Status, err)
	}

	// b's leases are DHCPLeases of the same namespace, counted in its writes.
	l, err := b.Leases(ctx, netip.MustParseAddr("10.99.0.100"), netip.MustParseAddr("10.99.0.110"), nil)
	if err != nil {
		t.Fatalf("leases: %v", err)
	}
	mac := macaddr.MAC{0x52, 0x54, 0, 0, 0, 1}
	ip, ok := l.Offer(mac, netip.Addr{})
	if !ok {
		t.Fatal("no address offered")
	}
	before := b.Writes()
	d, err := l.Bind(mac, ip, time.Hour)
	if err == nil {
		err = d.Wait() // the apiserver write
	}
	if err != nil {
		t.Fatal(err)
	}
	var le v1alpha1.DHCPLease
	if err := kc.Client.Get(ctx, client.ObjectKey{Namespace: incltest.Namespace, Name: v1alpha1.DHCPLeaseName(ip)}, &le); err != nil {
		t.Errorf("DHCPLease of %s: %v", ip, err)
	}
	if b.Writes() <= before {
		t.Errorf("b's writes %d did not count the lease (before %d)", b.Writes(), before)
	}
}

// Both replicas offer every client, one ACKs it: only the one that ACKed
// writes the client's Machine. A record a replica only offered is written
// after the grace period when no replica recorded the machine, and goes
// out at once with the replica's own next record of the machine.
func TestOnlyTheACKingReplicaWrites(t *testing.T) {
	kc := incltest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const grace = 2 * time.Second
	open := func(name string) *netbootstore.Store {
		s, err := netbootstore.Open(ctx, netbootstore.Options{REST: kc.REST, Namespace: incltest.Namespace, Server: name,
			Cluster: &cluster.Cluster{}, OfferGrace: grace})
		if err != nil {
			t.Fatal(err)
		}
		s.OnRemote(func(state.Machine) {})
		go s.Run(ctx)
		return s
	}
	a, b := open("a"), open("b")
	get := func(mac string) (*v1alpha1.Machine, bool) {
		var m v1alpha1.Machine
		err := kc.Client.Get(ctx, client.ObjectKey{Namespace: incltest.Namespace, Name: v1alpha1.MachineName(mac)}, &m)
		return &m, err == nil && m.Status.LastSeen != nil
	}
	now := time.Now().UTC().Truncate(time.Second)

	// x: both offer, b ACKs.
	x := "52:54:00:00:01:01"
	a.MachineOffered(state.Machine{MAC: x, Arch: "amd64", Stage: "dhcp", LastSeen: now})
	b.MachineOffered(state.Machine{MAC: x, Arch: "amd64", Stage: "dhcp", LastSeen: now})
	b.MachineChanged(state.Machine{MAC: x, Arch: "amd64", Stage: "dhcp", IP: "10.99.0.100", LastSeen: now})
	testutil.WaitUntil(t, "b's Machine of x", func() bool { _, ok := get(x); return ok })
	time.Sleep(2 * grace)
	if m, _ := get(x); m.Status.BootServer != "b" || m.Status.IP != "10.99.0.100" {
		t.Errorf("x: %+v, want b's record", m.Status)
	}
	if w := a.Writes(); w != 0 {
		t.Errorf("a wrote %d times for a client it only offered", w)
	}
	if w := b.Writes(); w != 2 {
		t.Errorf("b wrote %d times for one new client, want 2 (create, status)", w)
	}

	// y: only a offered, nobody ACKed: a writes it after the grace period.
	y := "52:54:00:00:01:02"
	offered := time.Now()
	a.MachineOffered(state.Machine{MAC: y, Arch: "amd64", Stage: "dhcp", LastSeen: now})
	testutil.WaitUntil(t, "a's Machine of y", func() bool { _, ok := get(y); return ok })
	if d := time.Since(offered); d < grace {
		t.Errorf("y was written %v after its offer, before the grace period (%v)", d, grace)
	}
	if m, _ := get(y); m.Status.BootServer != "a" {
		t.Errorf("y: %+v, want a's record", m.Status)
	}

	// z: a offered, then ACKed: one record, written at once.
	z := "52:54:00:00:01:03"
	before := a.Writes()
	a.MachineOffered(state.Machine{MAC: z, Arch: "amd64", Stage: "dhcp", LastSeen: now})
	a.MachineChanged(state.Machine{MAC: z, Arch: "amd64", Stage: "dhcp", IP: "10.99.0.101", LastSeen: now})
	start := time.Now()
	testutil.WaitUntil(t, "a's Machine of z", func() bool { _, ok := get(z); return ok })
	if d := time.Since(start); d >= grace {
		t.Errorf("z took %v, the ACKed record waited for the offer's grace period", d)
	}
	time.Sleep(2 * grace)
	if w := a.Writes() - before; w != 2 {
		t.Errorf("a wrote %d times for z, want 2 (create, status)", w)
	}

	// Without heartbeats (no Announce) a replica cannot tell who runs:
	// it owns the machines no other replica wrote (x is b's).
	if !a.Owns("52:54:00:00:01:09") || !b.Owns("52:54:00:00:01:09") {
		t.Error("a machine no replica wrote is not owned by every replica")
	}
	if a.Owns(x) || !b.Owns(x) {
		t.Errorf("x, written by b: owned by a %v, by b %v; want b only", a.Owns(x), b.Owns(x))
	}
}
