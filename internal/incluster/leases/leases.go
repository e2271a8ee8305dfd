// Package leases is the dhcp-mode address allocator of `dodai netboot
// --in-cluster`: the same decisions as the file-backed allocator (range,
// static reservations, offers held for a minute, RELEASE, DECLINE), with
// the apiserver as the one store shared by every boot server replica.
//
// Every address is one DHCPLease object named after the address. A bind
// creates it, or updates it with the resourceVersion this replica last saw,
// so when two replicas race for one address the apiserver accepts exactly
// one write; the loser re-reads the object, sees another client's binding
// and NAKs. A watch keeps every replica's view of the others' bindings
// current, so offers rarely collide, and scanning for a free address starts
// at a point derived from the MAC, so replicas offer a client the same
// address and different clients different ones. One apiserver write per
// handshake (the bind), which the DHCP server does not wait for before
// reading the next request (Bind returns a pending dhcp.Durable); offers
// are local.
package leases

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/netip"
	"sort"
	"strconv"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dodai-dev/dodai/api/v1alpha1"
	"github.com/dodai-dev/dodai/internal/macaddr"
	"github.com/dodai-dev/dodai/internal/netboot/dhcp"
)

// writeTries bounds the create/update attempts of one change; each retry
// follows a conflict and re-reads the object first.
const writeTries = 3

// Options configure New.
type Options struct {
	// Client writes and reads DHCPLeases; Cache watches them (both in
	// Namespace). Start must be called (it runs the cache) unless the cache
	// is started by its owner.
	Client    client.Client
	Cache     cache.Cache
	Namespace string
	// Start and End bound the dynamic range (inclusive).
	Start, End netip.Addr
	// Reservations map canonical MACs to fixed addresses.
	Reservations map[macaddr.MAC]netip.Addr
	// Server names this replica in the objects it writes.
	Server string
	// Now overrides the clock (tests).
	Now func() time.Time
	Log *slog.Logger
}

type entry struct {
	mac      macaddr.MAC // zero: declined
	expires  time.Time
	declined bool
	rv       string
}

// Leases is the allocator; safe for concurrent use.
type Leases struct {
	o          Options
	reservedIP map[netip.Addr]macaddr.MAC
	size       uint64

	mu    sync.Mutex
	byIP  map[netip.Addr]*entry
	byMAC map[macaddr.MAC]netip.Addr // the MAC's current binding (latest expiry)
	// Offered, not yet bound (as in the file allocator); guarded by mu.
	offers dhcp.Offers

	writes int64 // apiserver writes sent (metrics, benchmarks)
}

// New builds the allocator and registers its watch on the cache; call
// WaitSynced (after the cache started) before serving.
func New(ctx context.Context, o Options) (*Leases, error) {
	if !o.Start.Is4() || !o.End.Is4() || o.Start.Compare(o.End) > 0 {
		return nil, fmt.Errorf("lease range %s-%s is not a valid IPv4 range", o.Start, o.End)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	l := &Leases{o: o, reservedIP: map[netip.Addr]macaddr.MAC{},
		size: uint64(ipv4(o.End)-ipv4(o.Start)) + 1,
		byIP: map[netip.Addr]*entry{}, byMAC: map[macaddr.MAC]netip.Addr{}}
	for mac, ip := range o.Reservations {
		if other, dup := l.reservedIP[ip]; dup {
			return nil, fmt.Errorf("address %s is reserved for both %s and %s", ip, other, mac)
		}
		l.reservedIP[ip] = mac
	}
	inf, err := o.Cache.GetInformer(ctx, &v1alpha1.DHCPLease{})
	if err != nil {
		return nil, fmt.Errorf("watching DHCPLeases: %w", err)
	}
	_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { l.observe(obj) },
		UpdateFunc: func(_, obj any) { l.observe(obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if le, ok := obj.(*v1alpha1.DHCPLease); ok {
				l.forget(le)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("watching DHCPLeases: %w", err)
	}
	return l, nil
}

// WaitSynced waits until the watch has delivered every existing DHCPLease.
func (l *Leases) WaitSynced(ctx context.Context) error {
	if !l.o.Cache.WaitForCacheSync(ctx) {
		return fmt.Errorf("DHCPLeases in namespace %s: the watch did not sync (%w)", l.o.Namespace, context.Cause(ctx))
	}
	return nil
}

// Writes is the number of apiserver writes sent so far.
func (l *Leases) Writes() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.writes
}

func ipv4(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func fromIPv4(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// newer reports whether resourceVersion a is at least b. Resource versions
// are etcd revisions; the apiserver documents them as opaque, so anything
// unparsable counts as newer (the watch then simply wins).
func newer(a, b string) bool {
	x, err1 := strconv.ParseUint(a, 10, 64)
	y, err2 := strconv.ParseUint(b, 10, 64)
	if err1 != nil || err2 != nil {
		return true
	}
	return x >= y
}

// observe merges an object from the watch or from this replica's own
// write (whichever comes first; an older version never replaces a newer).
func (l *Leases) observe(obj any) {
	le, ok := obj.(*v1alpha1.DHCPLease)
	if !ok {
		return
	}
	ip, err := netip.ParseAddr(le.Spec.Address)
	if err != nil || !ip.Is4() {
		return
	}
	var mac macaddr.MAC
	if le.Spec.MAC != "" {
		if mac, err = macaddr.Parse(le.Spec.MAC); err != nil {
			return // the CRD's pattern keeps this from happening
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.setLocked(ip, &entry{mac: mac, expires: le.Spec.Expires.Time, declined: le.Spec.Declined, rv: le.ResourceVersion})
}

func (l *Leases) setLocked(ip netip.Addr, e *entry) {
	old := l.byIP[ip]
	if old != nil && !newer(e.rv, old.rv) {
		return
	}
	if old != nil && !old.mac.IsZero() && old.mac != e.mac && l.byMAC[old.mac] == ip {
		delete(l.byMAC, old.mac)
	}
	if e.declined {
		e.mac = macaddr.MAC{}
	}
	l.byIP[ip] = e
	if e.mac.IsZero() {
		return
	}
	if cur, ok := l.byMAC[e.mac]; ok && cur != ip {
		if c := l.byIP[cur]; c != nil && c.mac == e.mac && c.expires.After(e.expires) {
			return // the MAC's binding elsewhere is the newer one
		}
	}
	l.byMAC[e.mac] = ip
}

func (l *Leases) forget(le *v1alpha1.DHCPLease) {
	ip, err := netip.ParseAddr(le.Spec.Address)
	if err != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if e := l.byIP[ip]; e != nil {
		if !e.mac.IsZero() && l.byMAC[e.mac] == ip {
			delete(l.byMAC, e.mac)
		}
		delete(l.byIP, ip)
	}
}

func (l *Leases) inRange(ip netip.Addr) bool {
	return ip.Is4() && l.o.Start.Compare(ip) <= 0 && ip.Compare(l.o.End) <= 0
}

// taken reports whether ip is bound to a client other than mac right now:
// an unexpired declined address, or another MAC's current binding (a
// binding its MAC has since replaced with one elsewhere is free).
func (l *Leases) takenLocked(ip netip.Addr, mac macaddr.MAC, now time.Time) bool {
	e := l.byIP[ip]
	if e == nil || e.mac == mac || !now.Before(e.expires) {
		return false
	}
	return e.declined || l.byMAC[e.mac] == ip
}

// usableLocked reports whether ip may be given to mac right now.
func (l *Leases) usableLocked(ip netip.Addr, mac macaddr.MAC, now time.Time) bool {
	if owner, ok := l.reservedIP[ip]; ok && owner != mac {
		return false
	}
	if l.takenLocked(ip, mac, now) {
		return false
	}
	return !l.offers.HeldForOther(ip, mac, now)
}

// Offer picks the address for mac (its reservation, its current binding,
// its pending offer, the requested address if free, else a free one found
// by scanning from a MAC-derived point) and holds it for the client for a
// minute. It returns false when the pool is exhausted. Offers are not
// written to the apiserver.
func (l *Leases) Offer(mac macaddr.MAC, requested netip.Addr) (netip.Addr, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.o.Now()
	ip, ok := l.pickLocked(mac, requested, now)
	if !ok {
		return netip.Addr{}, false
	}
	l.offers.Hold(mac, ip, now)
	return ip, true
}

func (l *Leases) pickLocked(mac macaddr.MAC, requested netip.Addr, now time.Time) (netip.Addr, bool) {
	if ip, ok := l.o.Reservations[mac]; ok {
		return ip, true
	}
	if ip, ok := l.byMAC[mac]; ok && l.usableLocked(ip, mac, now) {
		return ip, true
	}
	if ip, ok := l.offers.Of(mac); ok && l.usableLocked(ip, mac, now) {
		return ip, true
	}
	if l.inRange(requested) && l.usableLocked(requested, mac, now) {
		return requested, true
	}
	h := fnv.New64a()
	h.Write(mac[:])
	first := h.Sum64() % l.size
	base := ipv4(l.o.Start)
	// First pass skips addresses another client held before (keeping
	// addresses stable across expiry); the second takes them.
	for pass := 0; pass < 2; pass++ {
		for i := uint64(0); i < l.size; i++ {
			ip := fromIPv4(base + uint32((first+i)%l.size))
			if !l.usableLocked(ip, mac, now) {
				continue
			}
			if e := l.byIP[ip]; pass == 0 && e != nil && e.mac != mac {
				continue
			}
			return ip, true
		}
	}
	return netip.Addr{}, false
}

// ErrInUse is returned by Bind when the address belongs to another client
// (possibly bound a moment ago by another replica); it is
// dhcp.ErrAddressTaken, so a Durable failing with it gets the client a NAK.
var ErrInUse = dhcp.ErrAddressTaken

// Bind commits ip to mac for d (DHCPREQUEST) in the apiserver. It fails at
// once when ip is reserved for someone else, outside the pool (and not
// mac's reservation), or bound to another client as far as this replica
// knows; otherwise the write goes out in the background and the returned
// Durable finishes when the apiserver took it, or with an error wrapping
// ErrInUse when another replica bound it first (then the client is NAKed
// instead of ACKed). The DHCP server's reader does not wait for the
// apiserver meanwhile.
func (l *Leases) Bind(mac macaddr.MAC, ip netip.Addr, d time.Duration) (*dhcp.Durable, error) {
	l.mu.Lock()
	now := l.o.Now()
	if res, ok := l.o.Reservations[mac]; ok && res != ip {
		l.mu.Unlock()
		return nil, fmt.Errorf("%s is reserved %s, not %s", mac, res, ip)
	}
	if _, ok := l.o.Reservations[mac]; !ok && !l.inRange(ip) {
		l.mu.Unlock()
		return nil, fmt.Errorf("%s is outside the range %s-%s", ip, l.o.Start, l.o.End)
	}
	if !l.usableLocked(ip, mac, now) {
		l.mu.Unlock()
		return nil, fmt.Errorf("%s is %w", ip, ErrInUse)
	}
	// Hold the address for mac until the write is done: no other client
	// is offered or bound it here meanwhile.
	l.offers.Hold(mac, ip, now)
	l.mu.Unlock()
	durable, done := dhcp.NewDurable()
	go func() { done(l.bindWrite(mac, ip, now, d)) }()
	return durable, nil
}

// bindWrite is Bind's apiserver write. Its error wraps ErrInUse when
// another replica bound the address first (the client is NAKed and starts
// over), else dhcp.ErrPersist (no reply: the client retries).
func (l *Leases) bindWrite(mac macaddr.MAC, ip netip.Addr, now time.Time, d time.Duration) error {
	err := l.write(ip, func(cur *v1alpha1.DHCPLeaseSpec, exists bool) error {
		if exists && cur.MAC != mac.String() && now.Before(cur.Expires.Time) {
			return fmt.Errorf("%s is %w", ip, ErrInUse)
		}
		*cur = v1alpha1.DHCPLeaseSpec{Address: ip.String(), MAC: mac.String(), Expires: metav1.NewMicroTime(now.Add(d)), Server: l.o.Server}
		return nil
	})
	if errors.Is(err, ErrInUse) {
		l.mu.Lock()
		l.offers.Drop(mac)
		l.mu.Unlock()
		return err
	}
	if err != nil {
		// The apiserver did not take it: not the client's fault.
		return fmt.Errorf("%w: %v", dhcp.ErrPersist, err)
	}
	l.mu.Lock()
	l.offers.Drop(mac)
	l.mu.Unlock()
	// The apiserver has it (etcd committed it).
	return nil
}

// errUnchanged makes write skip the apiserver.
var errUnchanged = errors.New("unchanged")

// write changes the DHCPLease of ip with change (given the current spec and
// whether the object exists), creating it or updating it with the
// resourceVersion read, and retrying from a fresh read after a conflict.
// change returning an error aborts.
func (l *Leases) write(ip netip.Addr, change func(cur *v1alpha1.DHCPLeaseSpec, exists bool) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	name := v1alpha1.DHCPLeaseName(ip)
	// Start from what the watch (or our last write) says.
	l.mu.Lock()
	var obj *v1alpha1.DHCPLease
	if e := l.byIP[ip]; e != nil {
		obj = &v1alpha1.DHCPLease{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: l.o.Namespace, ResourceVersion: e.rv},
			Spec: v1alpha1.DHCPLeaseSpec{Address: ip.String(), Expires: metav1.NewMicroTime(e.expires), Declined: e.declined}}
		if !e.mac.IsZero() {
			obj.Spec.MAC = e.mac.String()
		}
	}
	l.mu.Unlock()
	var last error
	for try := 0; try < writeTries; try++ {
		exists := obj != nil
		if obj == nil {
			obj = &v1alpha1.DHCPLease{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: l.o.Namespace}}
		}
		if err := change(&obj.Spec, exists); err != nil {
			if errors.Is(err, errUnchanged) {
				return nil
			}
			return err
		}
		l.mu.Lock()
		l.writes++
		l.mu.Unlock()
		var err error
		if exists {
			err = l.o.Client.Update(ctx, obj)
		} else {
			err = l.o.Client.Create(ctx, obj)
		}
		if err == nil {
			l.observe(obj)
			return nil
		}
		last = err
		if !apierrors.IsConflict(err) && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("writing DHCPLease %s/%s: %w", l.o.Namespace, name, err)
		}
		// Someone else wrote it: read the current object and decide again.
		fresh := &v1alpha1.DHCPLease{}
		if err := l.o.Client.Get(ctx, client.ObjectKey{Namespace: l.o.Namespace, Name: name}, fresh); err != nil {
			if apierrors.IsNotFound(err) {
				obj = nil
				continue
			}
			return fmt.Errorf("reading DHCPLease %s/%s: %w", l.o.Namespace, name, err)
		}
		l.observe(fresh)
		obj = fresh
	}
	return fmt.Errorf("writing DHCPLease %s/%s: %w (gave up after %d tries)", l.o.Namespace, name, last, writeTries)
}

// Release ends mac's lease on ip (DHCPRELEASE): it expires now, and the
// address stays associated with mac (offered again to it first).
func (l *Leases) Release(mac macaddr.MAC, ip netip.Addr) error {
	l.mu.Lock()
	cur, ok := l.byMAC[mac]
	l.mu.Unlock()
	if !ok || cur != ip {
		return nil
	}
	now := l.o.Now()
	return l.write(ip, func(s *v1alpha1.DHCPLeaseSpec, exists bool) error {
		if !exists || s.MAC != mac.String() || !now.Before(s.Expires.Time) {
			return errUnchanged
		}
		s.Expires, s.Server = metav1.NewMicroTime(now), l.o.Server
		return nil
	})
}

// Decline takes ip out of the pool for ten minutes (DHCPDECLINE). Only the
// client that holds or was offered ip may decline it; anyone else gets
// dhcp.ErrNotOwner and nothing changes.
func (l *Leases) Decline(mac macaddr.MAC, ip netip.Addr) error {
	if !l.inRange(ip) {
		return nil
	}
	l.mu.Lock()
	cur, leased := l.byMAC[mac]
	leased = leased && cur == ip
	offered := l.offers.Take(mac, ip)
	l.mu.Unlock()
	if !leased && !offered {
		return dhcp.ErrNotOwner
	}
	now := l.o.Now()
	return l.write(ip, func(s *v1alpha1.DHCPLeaseSpec, exists bool) error {
		if exists && s.MAC != mac.String() && s.MAC != "" && now.Before(s.Expires.Time) {
			return dhcp.ErrNotOwner // another client bound it meanwhile
		}
		*s = v1alpha1.DHCPLeaseSpec{Address: ip.String(), Declined: true, Expires: metav1.NewMicroTime(now.Add(dhcp.DeclineHold)), Server: l.o.Server}
		return nil
	})
}

// Lookup returns mac's bound, unexpired lease.
func (l *Leases) Lookup(mac macaddr.MAC) (dhcp.Lease, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ip, ok := l.byMAC[mac]
	if !ok {
		return dhcp.Lease{}, false
	}
	e := l.byIP[ip]
	if e == nil || !l.o.Now().Before(e.expires) {
		return dhcp.Lease{}, false
	}
	return dhcp.Lease{MAC: mac, IP: ip, Expiry: e.expires}, true
}

// All returns the current and declined bindings, sorted by address
// (bindings a MAC replaced with one elsewhere are left out).
func (l *Leases) All() []dhcp.Lease {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]dhcp.Lease, 0, len(l.byIP))
	for ip, e := range l.byIP {
		if !e.mac.IsZero() && l.byMAC[e.mac] != ip {
			continue
		}
		out = append(out, dhcp.Lease{MAC: e.mac, IP: ip, Expiry: e.expires, Declined: e.declined})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].IP.Less(out[j].IP) })
	return out
}

// Import writes leases (those of a cluster directory being pivoted) as
// DHCPLeases in namespace ns, keeping any binding in the apiserver that
// expires later. It returns how many it wrote.
func Import(ctx context.Context, c client.Client, ns, server string, leases []dhcp.Lease) (int, error) {
	n := 0
	for _, le := range leases {
		if !le.IP.Is4() {
			continue
		}
		spec := v1alpha1.DHCPLeaseSpec{Address: le.IP.String(), Declined: le.Declined, Expires: metav1.NewMicroTime(le.Expiry), Server: server}
		if !le.Declined && !le.MAC.IsZero() {
			spec.MAC = le.MAC.String()
		}
		key := client.ObjectKey{Namespace: ns, Name: v1alpha1.DHCPLeaseName(le.IP)}
		for try := 0; ; try++ {
			cur := &v1alpha1.DHCPLease{}
			err := c.Get(ctx, key, cur)
			switch {
			case apierrors.IsNotFound(err):
				err = c.Create(ctx, &v1alpha1.DHCPLease{ObjectMeta: metav1.ObjectMeta{Name: key.Name, Namespace: ns}, Spec: spec})
			case err != nil:
				return n, fmt.Errorf("reading DHCPLease %s: %w", key.Name, err)
			case !cur.Spec.Expires.Time.Before(le.Expiry):
				err = errUnchanged
			default:
				cur.Spec = spec
				err = c.Update(ctx, cur)
			}
			if err == nil {
				n++
			}
			if err == nil || errors.Is(err, errUnchanged) {
				break
			}
			if try == writeTries-1 || !(apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err)) {
				return n, fmt.Errorf("writing DHCPLease %s: %w", key.Name, err)
			}
		}
	}
	return n, nil
}

// Sync, Compact and Close exist for the lease store interface of the
// file-backed allocator: every change is already in the apiserver when the
// call that made it returns.
func (l *Leases) Sync() error { return nil }

// Compact does nothing (see Sync).
func (l *Leases) Compact() error { return nil }

// Close does nothing (see Compact); the cache stops with its context.
func (l *Leases) Close() error { return nil }

var _ dhcp.LeaseStore = (*Leases)(nil)
