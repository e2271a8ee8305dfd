// Package netbootstore is the state of `dodai netboot --in-cluster`: the
// dhcp-mode leases as DHCPLeases (package leases) and the machine registry
// as Machines (package machines), in one namespace of the cluster, shared by
// every boot server replica. It watches both kinds, so a replica seeds its
// registry from what the others saw, learns their changes as they happen
// (boot once holds whichever replica a machine reaches next), and knows when
// the controller applied a node's config; it watches the replicas'
// heartbeats (package replicas) too, to tell which replica writes a change
// they all saw. Registry changes are written behind the DHCP exchange,
// latest state per MAC, so a handshake waits only for its lease write. A
// Store is the netboot.Shared of `dodai netboot --in-cluster`.
package netbootstore

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dodai-dev/dodai/api/v1alpha1"
	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/incluster/kube"
	"github.com/dodai-dev/dodai/internal/incluster/leases"
	"github.com/dodai-dev/dodai/internal/incluster/machines"
	"github.com/dodai-dev/dodai/internal/incluster/pivot"
	"github.com/dodai-dev/dodai/internal/incluster/replicas"
	"github.com/dodai-dev/dodai/internal/macaddr"
	"github.com/dodai-dev/dodai/internal/netboot/dhcp"
	"github.com/dodai-dev/dodai/internal/state"
)

// Options of Open.
type Options struct {
	REST      *rest.Config
	Namespace string
	// Server names this replica (status.bootServer, DHCPLease server).
	Server  string
	Cluster *cluster.Cluster
	Log     *slog.Logger
	// OfferGrace is how long a record seen only in this replica's offer
	// waits for another replica to record the machine before this one
	// writes it (default DefaultOfferGrace).
	OfferGrace time.Duration
	// HeartbeatInterval overrides replicas.Interval (tests).
	HeartbeatInterval time.Duration
}

// DefaultOfferGrace is Options.OfferGrace's default: far longer than a
// DHCP handshake plus the ACKing replica's write behind it, short enough
// that a machine that took no offer still shows in the cluster soon.
const DefaultOfferGrace = 30 * time.Second

// Store is one replica's view and writer of the shared state.
type Store struct {
	o        Options
	client   client.Client
	cache    cache.Cache
	machines *machines.Store
	leases   *leases.Leases

	mu      sync.Mutex
	pending map[string]state.Machine // MAC → latest unwritten record
	// offered: records seen only in this replica's offers, by MAC, and
	// since when; written after OfferGrace unless another replica
	// recorded the machine (or this one did: then they are in pending).
	offered  map[string]offeredRecord
	kick     chan struct{}
	onRemote func(state.Machine)

	machineWrites atomic.Int64
	// self is this replica's heartbeat (Announce); nil: none.
	self *replicas.Replica
}

type offeredRecord struct {
	m     state.Machine
	since time.Time
}

// Open connects, starts the watches (until ctx ends) and waits until they
// have synced.
func Open(ctx context.Context, o Options) (*Store, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.OfferGrace <= 0 {
		o.OfferGrace = DefaultOfferGrace
	}
	c, err := kube.Client(o.REST)
	if err != nil {
		return nil, err
	}
	// The replicas' heartbeats only, of all the namespace's Leases.
	heartbeats := labels.SelectorFromSet(labels.Set{replicas.LabelComponent: replicas.Component})
	ca, err := cache.New(o.REST, cache.Options{Scheme: kube.Scheme(), DefaultNamespaces: map[string]cache.Config{o.Namespace: {}},
		ByObject: map[client.Object]cache.ByObject{&coordinationv1.Lease{}: {Label: heartbeats}}})
	if err != nil {
		return nil, fmt.Errorf("watching %s: %w", o.Namespace, err)
	}
	s := &Store{o: o, client: c, cache: ca, pending: map[string]state.Machine{}, offered: map[string]offeredRecord{}, kick: make(chan struct{}, 1),
		machines: &machines.Store{Client: c, Reader: ca, Namespace: o.Namespace, Server: o.Server, NodeMACs: pivot.NodeMACs(o.Cluster)}}
	inf, err := ca.GetInformer(ctx, &v1alpha1.Machine{})
	if err != nil {
		return nil, fmt.Errorf("watching Machines: %w", err)
	}
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    s.remote,
		UpdateFunc: func(_, obj any) { s.remote(obj) },
	}); err != nil {
		return nil, err
	}
	if _, err := ca.GetInformer(ctx, &v1alpha1.DHCPLease{}); err != nil {
		return nil, fmt.Errorf("watching DHCPLeases: %w", err)
	}
	// Which replicas run (Owns): their heartbeats.
	if _, err := ca.GetInformer(ctx, &coordinationv1.Lease{}); err != nil {
		return nil, fmt.Errorf("watching the boot servers' heartbeats (Leases): %w", err)
	}
	go func() {
		if err := ca.Start(ctx); err != nil {
			o.Log.Error("watching the cluster", "err", err)
		}
	}()
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if !ca.WaitForCacheSync(sctx) {
		return nil, fmt.Errorf("Machines, DHCPLeases and Leases in namespace %s: the watch did not sync within a minute (are the CRDs installed? run dodai pivot; may this service account list and watch them?)", o.Namespace)
	}
	return s, nil
}

// remote passes another replica's (or the controller's) change on.
func (s *Store) remote(obj any) {
	m, ok := obj.(*v1alpha1.Machine)
	// A Machine without lastSeen is a create whose status is not written
	// yet (this replica's own included): nothing was seen to pass on.
	if !ok || m.Status.BootServer == s.o.Server || m.Status.LastSeen == nil {
		return
	}
	rec := machines.FromObject(m)
	s.mu.Lock()
	f := s.onRemote
	// Another replica recorded the machine: what this one only offered
	// need not be written.
	delete(s.offered, rec.MAC)
	s.mu.Unlock()
	if f != nil {
		f(rec)
	}
}

// OnRemote sets the function receiving machine records that other boot
// servers wrote (call it before Run).
func (s *Store) OnRemote(f func(state.Machine)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onRemote = f
}

// Machines returns every Machine, to seed the registry.
func (s *Store) Machines(ctx context.Context) ([]state.Machine, error) {
	var list v1alpha1.MachineList
	if err := s.cache.List(ctx, &list, client.InNamespace(s.o.Namespace)); err != nil {
		return nil, err
	}
	out := make([]state.Machine, 0, len(list.Items))
	for i := range list.Items {
		out = append(out, machines.FromObject(&list.Items[i]))
	}
	return out, nil
}

// ConfigApplied reports when the controller applied node's config (the
// latest Join.Applied of its Machines).
func (s *Store) ConfigApplied(node string) (time.Time, bool) {
	var list v1alpha1.MachineList
	if err := s.cache.List(context.Background(), &list, client.InNamespace(s.o.Namespace)); err != nil {
		return time.Time{}, false
	}
	var at time.Time
	for _, m := range list.Items {
		if m.Spec.Node == node && m.Status.Join != nil && m.Status.Join.Applied != nil && m.Status.Join.Applied.After(at) {
			at = m.Status.Join.Applied.Time
		}
	}
	return at, !at.IsZero()
}

// Leases returns the dhcp-mode allocator over the shared DHCPLeases.
func (s *Store) Leases(ctx context.Context, start, end netip.Addr, reservations map[macaddr.MAC]netip.Addr) (dhcp.LeaseStore, error) {
	l, err := leases.New(ctx, leases.Options{Client: s.client, Cache: s.cache, Namespace: s.o.Namespace,
		Start: start, End: end, Reservations: reservations, Server: s.o.Server, Log: s.o.Log})
	if err != nil {
		return nil, err
	}
	if err := l.WaitSynced(ctx); err != nil {
		return nil, err
	}
	s.leases = l
	return l, nil
}

// MachineChanged queues a registry record for writing (the registry's
// change hook); only the latest record per MAC is written.
func (s *Store) MachineChanged(m state.Machine) {
	s.mu.Lock()
	s.pending[m.MAC] = m
	delete(s.offered, m.MAC)
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// MachineOffered queues a record seen only in this replica's DHCP offer.
// Every replica offers, but the client asks one of them for the address,
// and that one records the machine (MachineChanged): this record is
// written only if no replica recorded the machine within OfferGrace (a
// client that took no offer still shows in the cluster), or at once when
// this replica has a write of the machine queued anyway.
func (s *Store) MachineOffered(m state.Machine) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, queued := s.pending[m.MAC]; queued {
		s.pending[m.MAC] = m
		return
	}
	since := time.Now()
	if prev, ok := s.offered[m.MAC]; ok {
		since = prev.since
	}
	s.offered[m.MAC] = offeredRecord{m: m, since: since}
}

// Owns reports whether this replica writes a change of mac that every
// replica saw alike (in proxy mode a known machine's own broadcast
// REQUEST, e.g. Talos' DHCP, whose address dodai controller joins the node
// at); the others hold the change like an offer's (MachineOffered) and
// drop it once the owner's write arrives. The owner is the replica the
// Machine names as its boot server (its last writer) while that one runs
// (its heartbeat is renewed); for a Machine not written yet, by no boot
// server, or by one that stopped or died, it is the running replica that
// replicas.Owner names, so such a join waits neither for the grace period
// nor for two writes. Until this replica sees its own heartbeat among the
// running (the first renewal not yet in its cache, or no Announce) it
// cannot tell who else runs: then it owns every Machine not written by
// another boot server, as before there were heartbeats to go by.
func (s *Store) Owns(mac string) bool {
	ctx := context.Background()
	var obj v1alpha1.Machine
	named := ""
	if err := s.cache.Get(ctx, client.ObjectKey{Namespace: s.o.Namespace, Name: v1alpha1.MachineName(mac)}, &obj); err == nil {
		named = obj.Status.BootServer
	}
	if named == s.o.Server {
		return true
	}
	reps, err := s.Replicas(ctx)
	running := make([]string, 0, len(reps))
	for _, r := range reps {
		if r.Running {
			running = append(running, r.Name)
		}
	}
	if err != nil || !slices.Contains(running, s.o.Server) {
		return named == ""
	}
	if named != "" && slices.Contains(running, named) {
		return false
	}
	return replicas.Owner(mac, running) == s.o.Server
}

// Replicas returns the boot server replicas as this replica's watch of
// their heartbeats sees them now (replicas.List over its cache).
func (s *Store) Replicas(ctx context.Context) ([]replicas.Replica, error) {
	return replicas.List(ctx, s.cache, s.o.Namespace, time.Now())
}

// promoteOffered moves offered records older than the grace period to the
// write queue; it reports whether it moved any.
func (s *Store) promoteOffered(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	moved := false
	for mac, o := range s.offered {
		if now.Sub(o.since) >= s.o.OfferGrace {
			s.pending[mac] = o.m
			delete(s.offered, mac)
			moved = true
		}
	}
	return moved
}

// Writes is the number of apiserver writes this replica sent (leases and
// Machines).
func (s *Store) Writes() int64 {
	n := s.machineWrites.Load()
	if s.leases != nil {
		n += s.leases.Writes()
	}
	return n
}

// Announce sets what this replica's heartbeat says about it (its address
// on the boot network, HTTP URL, mode); Run then keeps the heartbeat
// (package replicas) until it returns. Call it before Run.
func (s *Store) Announce(address, url, mode string) {
	s.self = &replicas.Replica{Name: s.o.Server, Address: address, URL: url, Mode: mode}
}

// Run writes queued registry records until ctx ends, then flushes what is
// left (bounded to 10 s). Records only offered that are still waiting for
// their grace period then are dropped. With Announce, it keeps this
// replica's heartbeat meanwhile and deletes it at the end.
func (s *Store) Run(ctx context.Context) {
	if s.self != nil {
		hbDone := make(chan struct{})
		defer func() { <-hbDone }()
		go func() {
			defer close(hbDone)
			replicas.Heartbeat(ctx, s.client, s.o.Namespace, *s.self, s.o.HeartbeatInterval, s.o.Log)
		}()
	}
	tick := time.NewTicker(min(time.Second, s.o.OfferGrace/4))
	defer tick.Stop()
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
			continue
		case <-s.kick:
		case now := <-tick.C:
			if !s.promoteOffered(now) {
				continue
			}
		}
		s.flush(ctx)
		// Batch: changes arriving meanwhile go out together next round.
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.flush(fctx)
}

const flushWorkers = 8

func (s *Store) flush(ctx context.Context) {
	s.mu.Lock()
	batch := s.pending
	s.pending = map[string]state.Machine{}
	s.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	work := make(chan state.Machine)
	var wg sync.WaitGroup
	for range min(flushWorkers, len(batch)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for m := range work {
				n, err := s.machines.Put(ctx, m, false)
				s.machineWrites.Add(int64(n))
				if err != nil {
					// Also when ctx ended mid-write: Run's last flush
					// (with its own bound) writes it then.
					if ctx.Err() == nil {
						s.o.Log.Warn("saving machine", "mac", m.MAC, "err", err)
					}
					s.requeue(m)
				}
			}
		}()
	}
	for _, m := range batch {
		work <- m
	}
	close(work)
	wg.Wait()
}

// requeue puts a record back unless a newer one is already queued.
func (s *Store) requeue(m state.Machine) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, newer := s.pending[m.MAC]; !newer {
		s.pending[m.MAC] = m
	}
	select {
	case s.kick <- struct{}{}:
	default:
	}
}
