package dhcp

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/dodai-dev/dodai/internal/macaddr"
)

// Lease is one address binding of the dhcp-mode server.
type Lease struct {
	MAC    macaddr.MAC `json:"mac"`
	IP     netip.Addr  `json:"ip"`
	Expiry time.Time   `json:"expiry"`
	// Declined marks an address a client reported in use (DHCPDECLINE);
	// MAC is then zero and the address is not offered until Expiry.
	Declined bool `json:"declined,omitempty"`
}

// OfferHold is how long an offered (not yet requested) address stays
// reserved for the client it was offered to.
const OfferHold = 60 * time.Second

// DeclineHold is how long a declined address is kept out of the pool.
const DeclineHold = 10 * time.Minute

// Offers are the addresses offered (DHCPOFFER) and not yet requested, each
// held for its client for OfferHold; every allocator (this file-backed one
// and the in-cluster one) keeps them the same way. The zero value is
// empty; the allocator's lock guards it.
type Offers struct {
	byMAC map[macaddr.MAC]Lease
	byIP  map[netip.Addr]macaddr.MAC
}

// Hold offers ip to mac until now+OfferHold. It replaces mac's earlier
// offer and forgets another client's (expired) offer of ip, so the offers
// never outnumber the pool (spoofed MACs can't bloat them).
func (o *Offers) Hold(mac macaddr.MAC, ip netip.Addr, now time.Time) {
	if o.byMAC == nil {
		o.byMAC, o.byIP = map[macaddr.MAC]Lease{}, map[netip.Addr]macaddr.MAC{}
	}
	if old, had := o.byMAC[mac]; had && old.IP != ip {
		delete(o.byIP, old.IP)
	}
	if prev, had := o.byIP[ip]; had && prev != mac {
		delete(o.byMAC, prev)
	}
	o.byMAC[mac] = Lease{MAC: mac, IP: ip, Expiry: now.Add(OfferHold)}
	o.byIP[ip] = mac
}

// Of returns the address offered to mac (the offer may have expired).
func (o *Offers) Of(mac macaddr.MAC) (netip.Addr, bool) {
	le, ok := o.byMAC[mac]
	return le.IP, ok
}

// HeldForOther reports whether ip is offered to a client other than mac
// and that offer has not expired.
func (o *Offers) HeldForOther(ip netip.Addr, mac macaddr.MAC, now time.Time) bool {
	owner, ok := o.byIP[ip]
	return ok && owner != mac && now.Before(o.byMAC[owner].Expiry)
}

// Drop forgets mac's offer (it bound an address).
func (o *Offers) Drop(mac macaddr.MAC) {
	if le, ok := o.byMAC[mac]; ok {
		delete(o.byIP, le.IP)
		delete(o.byMAC, mac)
	}
}

// Take forgets mac's offer if it is of ip and reports whether it was.
func (o *Offers) Take(mac macaddr.MAC, ip netip.Addr) bool {
	if le, ok := o.byMAC[mac]; !ok || le.IP != ip {
		return false
	}
	o.Drop(mac)
	return true
}

// LeaseStore is what the dhcp-mode decisions need from an address store:
// *Leases keeps leases in files of the cluster directory; another store
// (e.g. one in the Kubernetes API) can take its place.
type LeaseStore interface {
	// Offer picks and briefly holds an address for mac (DISCOVER); false
	// when the pool is exhausted.
	Offer(mac macaddr.MAC, requested netip.Addr) (netip.Addr, bool)
	// Bind commits ip to mac for d (REQUEST). The ACK may leave only once
	// the returned Durable is done without error: a restarted server must
	// know every lease it acknowledged. An error means the lease is not
	// yours (NAK); ErrPersist (wrapped) means it could not be recorded.
	// The Durable fails with ErrAddressTaken (wrapped) when the address
	// went to another client while the lease was being recorded (another
	// replica of a shared store bound it first): the client is NAKed.
	Bind(mac macaddr.MAC, ip netip.Addr, d time.Duration) (*Durable, error)
	// Release ends mac's lease on ip (RELEASE).
	Release(mac macaddr.MAC, ip netip.Addr) error
	// Decline quarantines ip reported in use by its holder (DECLINE);
	// ErrNotOwner when ip is not mac's lease or offer.
	Decline(mac macaddr.MAC, ip netip.Addr) error
	// Lookup returns mac's bound, unexpired lease.
	Lookup(mac macaddr.MAC) (Lease, bool)
}

var _ LeaseStore = (*Leases)(nil)

// ErrPersist wraps failures to record a lease change (disk full, I/O
// error): nothing may be acknowledged then.
var ErrPersist = errors.New("recording the lease failed")

// ErrAddressTaken is how a store's pending Durable says that the address
// went to another client before this client's lease was recorded: the
// REQUEST is then NAKed instead of ACKed.
var ErrAddressTaken = errors.New("in use by another client")

// Durable tells when a lease change is persisted. A nil *Durable is
// persisted already.
type Durable struct {
	done chan struct{}
	err  error
}

func newDurable() *Durable { return &Durable{done: make(chan struct{})} }

// NewDurable returns a pending Durable and the function that completes it
// (nil: recorded; an error: lost, no ACK is sent, and for
// ErrAddressTaken a NAK), for a LeaseStore outside this package whose
// writes finish after Bind returned (the in-cluster allocator's apiserver
// write), so the DHCP reader goes on meanwhile.
func NewDurable() (*Durable, func(error)) {
	d := newDurable()
	return d, d.finish
}

// finish marks the change persisted (err nil) or lost.
func (d *Durable) finish(err error) {
	d.err = err
	close(d.done)
}

// Ready reports whether the change is persisted (or failed) already.
func (d *Durable) Ready() bool {
	if d == nil {
		return true
	}
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// Wait blocks until the change is persisted and returns why it was not.
func (d *Durable) Wait() error {
	if d == nil {
		return nil
	}
	<-d.done
	return d.err
}

// Leases is the dhcp-mode address allocator: the dynamic range, static
// reservations (MAC → address) and the bound leases, persisted (see
// journal) so a restarted server honours them.
type Leases struct {
	start, end netip.Addr
	reserved   map[macaddr.MAC]netip.Addr // MAC → reserved address
	reservedIP map[netip.Addr]macaddr.MAC // reserved address → MAC
	now        func() time.Time

	mu     sync.Mutex
	byMAC  map[macaddr.MAC]*Lease // bound leases
	byIP   map[netip.Addr]*Lease
	offers Offers
	next   netip.Addr // allocation cursor
	j      *journal   // nil: memory only
}

// LeaseOptions configure NewLeases.
type LeaseOptions struct {
	// Path of the lease snapshot; empty keeps leases in memory only.
	Path string
	// Durability of a bound lease before its ACK (default DurableWrite).
	Durability Durability
	// Start and End bound the dynamic range (inclusive).
	Start, End netip.Addr
	// Reservations map MACs to fixed addresses.
	Reservations map[macaddr.MAC]netip.Addr
	// Now overrides the clock (tests).
	Now func() time.Time
}

// NewLeases loads the persisted leases (if any) and returns the allocator.
func NewLeases(o LeaseOptions) (*Leases, error) {
	if !o.Start.Is4() || !o.End.Is4() || o.Start.Compare(o.End) > 0 {
		return nil, fmt.Errorf("lease range %s-%s is not a valid IPv4 range", o.Start, o.End)
	}
	l := &Leases{
		start: o.Start, end: o.End, now: o.Now,
		reserved: map[macaddr.MAC]netip.Addr{}, reservedIP: map[netip.Addr]macaddr.MAC{},
		byMAC: map[macaddr.MAC]*Lease{}, byIP: map[netip.Addr]*Lease{},
		next: o.Start,
	}
	if l.now == nil {
		l.now = time.Now
	}
	for mac, ip := range o.Reservations {
		if other, dup := l.reservedIP[ip]; dup {
			return nil, fmt.Errorf("address %s is reserved for both %s and %s", ip, other, mac)
		}
		l.reserved[mac] = ip
		l.reservedIP[ip] = mac
	}
	if o.Path == "" {
		return l, nil
	}
	j, err := openJournal(o.Path, o.Durability, &l.mu, l.apply, l.snapshotLocked)
	if err != nil {
		return nil, err
	}
	l.j = j
	return l, nil
}

// apply merges one persisted record (snapshot entry or journal line), the
// same state change Bind, Release and Decline make.
func (l *Leases) apply(le Lease) {
	if !le.IP.Is4() {
		return
	}
	if old := l.byIP[le.IP]; old != nil && !old.MAC.IsZero() && old.MAC != le.MAC && l.byMAC[old.MAC] == old {
		delete(l.byMAC, old.MAC)
	}
	if le.Declined || le.MAC.IsZero() {
		le.MAC, le.Declined = macaddr.MAC{}, true
		l.byIP[le.IP] = &le
		return
	}
	// Drop mac's previous address only if it is still mac's: after its lease
	// expired another client may hold it now.
	if old := l.byMAC[le.MAC]; old != nil && l.byIP[old.IP] == old {
		delete(l.byIP, old.IP)
	}
	l.byMAC[le.MAC] = &le
	l.byIP[le.IP] = &le
}

// Compact folds the journal into the snapshot (if it has records). It
// holds the allocator only to copy the leases.
func (l *Leases) Compact() error {
	if l.j == nil {
		return nil
	}
	return l.j.compact(l.snapshotLocked)
}

// Sync flushes the journal to disk (the periodic fdatasync of
// DurableWrite; DurableSync syncs before every ACK anyway).
func (l *Leases) Sync() error {
	if l.j == nil {
		return nil
	}
	return l.j.sync()
}

// Syncs is the number of journal fdatasyncs so far (with DurableSync, one
// per group of ACKs).
func (l *Leases) Syncs() int64 {
	if l.j == nil {
		return 0
	}
	return l.j.syncs.Load()
}

// Close compacts and closes the journal.
func (l *Leases) Close() error {
	if l.j == nil {
		return nil
	}
	err := l.Compact()
	if cerr := l.j.close(); err == nil {
		err = cerr
	}
	return err
}

// usable reports whether ip may be given to mac right now. Caller holds mu.
func (l *Leases) usable(ip netip.Addr, mac macaddr.MAC, now time.Time) bool {
	if owner, ok := l.reservedIP[ip]; ok && owner != mac {
		return false
	}
	if le := l.byIP[ip]; le != nil && le.MAC != mac && now.Before(le.Expiry) {
		return false
	}
	return !l.offers.HeldForOther(ip, mac, now)
}

// Offer picks the address for mac (its reservation, its current or past
// lease, the requested address if free, else the next free one in the range)
// and holds it for the client for a short while. It returns false when the
// pool is exhausted.
func (l *Leases) Offer(mac macaddr.MAC, requested netip.Addr) (netip.Addr, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	ip, ok := l.pick(mac, requested, now)
	if !ok {
		return netip.Addr{}, false
	}
	l.offers.Hold(mac, ip, now)
	return ip, true
}

func (l *Leases) inRange(ip netip.Addr) bool {
	return ip.Is4() && l.start.Compare(ip) <= 0 && ip.Compare(l.end) <= 0
}

func (l *Leases) pick(mac macaddr.MAC, requested netip.Addr, now time.Time) (netip.Addr, bool) {
	if ip, ok := l.reserved[mac]; ok {
		return ip, true
	}
	if le := l.byMAC[mac]; le != nil && l.usable(le.IP, mac, now) {
		return le.IP, true
	}
	if ip, ok := l.offers.Of(mac); ok && l.usable(ip, mac, now) {
		return ip, true
	}
	if l.inRange(requested) && l.usable(requested, mac, now) {
		return requested, true
	}
	// Scan the range from the cursor; first pass skips expired leases of
	// other clients (keeping addresses stable), second pass takes them.
	for pass := 0; pass < 2; pass++ {
		ip := l.next
		for {
			free := l.usable(ip, mac, now)
			if free && pass == 0 {
				if le := l.byIP[ip]; le != nil && le.MAC != mac {
					free = false
				}
			}
			if free {
				l.next = ip.Next()
				if !l.inRange(l.next) {
					l.next = l.start
				}
				return ip, true
			}
			ip = ip.Next()
			if !l.inRange(ip) {
				ip = l.start
			}
			if ip == l.next {
				break
			}
		}
	}
	return netip.Addr{}, false
}

// Bind commits ip to mac for d (DHCPREQUEST). It fails when ip belongs to
// someone else, is outside the pool and not mac's reservation. The lease
// is applied at once; the ACK waits for the returned Durable.
func (l *Leases) Bind(mac macaddr.MAC, ip netip.Addr, d time.Duration) (*Durable, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	res, reserved := l.reserved[mac]
	switch {
	case reserved && res != ip:
		return nil, fmt.Errorf("%s is reserved %s, not %s", mac, res, ip)
	case !reserved && !l.inRange(ip):
		return nil, fmt.Errorf("%s is outside the range %s-%s", ip, l.start, l.end)
	case !l.usable(ip, mac, now):
		return nil, fmt.Errorf("%s is in use by another client", ip)
	}
	l.offers.Drop(mac)
	// The same state change as replaying the journal does.
	le := Lease{MAC: mac, IP: ip, Expiry: now.Add(d)}
	l.apply(le)
	return l.j.append(le)
}

// Release ends mac's lease on ip (DHCPRELEASE). The address stays
// associated with mac (offered again to it first) but is free for others.
func (l *Leases) Release(mac macaddr.MAC, ip netip.Addr) error {
	l.mu.Lock()
	le := l.byMAC[mac]
	if le == nil || le.IP != ip {
		l.mu.Unlock()
		return nil
	}
	le.Expiry = l.now()
	_, err := l.j.append(*le)
	l.mu.Unlock()
	return err
}

// ErrNotOwner is returned by Decline for an address that is not the
// declining client's lease or offer.
var ErrNotOwner = errors.New("DECLINE of an address that is not this client's: ignored")

// Decline takes ip out of the pool for a while (DHCPDECLINE: the client
// found it in use) and drops mac's lease on it. Only the client that holds
// or was offered ip may decline it; anyone else's DECLINE (a spoofed one
// would take a live lease away) returns ErrNotOwner and changes nothing.
func (l *Leases) Decline(mac macaddr.MAC, ip netip.Addr) error {
	l.mu.Lock()
	if !l.inRange(ip) {
		l.mu.Unlock()
		return nil
	}
	le := l.byMAC[mac]
	leased := le != nil && le.IP == ip && l.byIP[ip] == le
	offered := l.offers.Take(mac, ip)
	if !leased && !offered {
		l.mu.Unlock()
		return ErrNotOwner
	}
	if leased {
		delete(l.byMAC, mac)
	}
	d := &Lease{IP: ip, Declined: true, Expiry: l.now().Add(DeclineHold)}
	l.byIP[ip] = d
	_, err := l.j.append(*d)
	l.mu.Unlock()
	return err
}

// Lookup returns mac's bound, unexpired lease.
func (l *Leases) Lookup(mac macaddr.MAC) (Lease, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	le := l.byMAC[mac]
	if le == nil || !l.now().Before(le.Expiry) {
		return Lease{}, false
	}
	return *le, true
}

// All returns a copy of the bound and declined leases, sorted by address.
func (l *Leases) All() []Lease {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.snapshotLocked()
}

func (l *Leases) snapshotLocked() []Lease {
	out := make([]Lease, 0, len(l.byIP))
	for _, le := range l.byIP {
		out = append(out, *le)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].IP.Less(out[j].IP) })
	return out
}
