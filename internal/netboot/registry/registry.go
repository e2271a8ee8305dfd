// Package registry tracks every machine dodai netboot has seen: its MAC,
// architecture, address and boot stage (DHCP → iPXE → kernel → initramfs →
// config fetched → installed). It decides which address may fetch a
// machine's config and when a machine has been installed ("boot once"), and
// persists itself in state/machines.json so `dodai bootstrap` finds the
// machines.
package registry

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/dodai-dev/dodai/internal/macaddr"
	"github.com/dodai-dev/dodai/internal/state"
)

// Stage is how far a machine got in its (latest) boot.
type Stage string

// Stages in boot order.
const (
	StageDHCP      Stage = "dhcp"
	StageIPXE      Stage = "ipxe"
	StageKernel    Stage = "kernel"
	StageInitramfs Stage = "initramfs"
	StageConfig    Stage = "config"
	StageInstalled Stage = "installed"
)

// Stages lists all stages in order.
var Stages = []Stage{StageDHCP, StageIPXE, StageKernel, StageInitramfs, StageConfig, StageInstalled}

func (s Stage) rank() int {
	for i, x := range Stages {
		if x == s {
			return i
		}
	}
	return -1
}

// Source says where an observation came from; only DHCP observations bind
// an address to a MAC (they come from the machine's own DHCP exchange).
type Source int

// Sources.
const (
	FromDHCP Source = iota
	FromHTTP
)

// MaxUnknown bounds how many machines not listed in the cluster file are
// remembered; beyond it the least recently seen one is forgotten, so a flood
// of made-up MACs cannot exhaust memory. Known machines are always kept.
const MaxUnknown = 10000

// Registry is the file-backed machine registry, safe for concurrent use.
type Registry struct {
	path       string
	maxUnknown int
	unknown    int                    // machines without a node name
	known      map[macaddr.MAC]string // MAC → node name
	applied    func(node string) (time.Time, bool)
	now        func() time.Time

	mu       sync.Mutex
	machines map[macaddr.MAC]*machine
	dirty    bool
	// OnChange is called (outside the lock) after a machine changed.
	onChange func(state.Machine)
}

// machine is a registry entry: the persisted record plus what is only
// kept in memory.
type machine struct {
	state.Machine
	// bootIP is the address the machine's own DHCP exchange bound (dhcp-mode
	// lease or proxy-seen requested/client address). Only it may fetch the
	// machine's config. Never loaded from the file: a new DHCP exchange
	// must bind it again.
	bootIP netip.Addr
	// held: a change made by Hold that OnChange has not been told of yet.
	held bool
}

// Options configure New.
type Options struct {
	// Path of machines.json; empty: memory only.
	Path string
	// Known maps MACs to node names (from cluster.yaml).
	Known map[macaddr.MAC]string
	// ConfigApplied reports when `dodai bootstrap` applied a node's config
	// over the Talos API (nil: never). A known machine whose config was
	// applied after its latest netboot began has installed Talos, so its next
	// netboot boots from disk, as after a config fetch over HTTP.
	ConfigApplied func(node string) (time.Time, bool)
	// OnChange is called after a machine's record changed.
	OnChange func(state.Machine)
	// Now overrides the clock.
	Now func() time.Time
	// MaxUnknown overrides MaxUnknown (tests).
	MaxUnknown int
	// Seed records are loaded as if read from Path (an in-cluster boot
	// server starts from the registry the other replicas wrote).
	Seed []state.Machine
}

// New loads the registry file (if present).
func New(o Options) (*Registry, error) {
	r := &Registry{path: o.Path, known: o.Known, applied: o.ConfigApplied, now: o.Now, onChange: o.OnChange, maxUnknown: o.MaxUnknown,
		machines: map[macaddr.MAC]*machine{}}
	if r.maxUnknown <= 0 {
		r.maxUnknown = MaxUnknown
	}
	if r.known == nil {
		r.known = map[macaddr.MAC]string{}
	}
	if r.now == nil {
		r.now = time.Now
	}
	var f state.Machines
	if o.Path != "" {
		if err := state.ReadJSON(o.Path, &f); err != nil {
			return nil, fmt.Errorf("loading machine registry: %w", err)
		}
	}
	for _, m := range append(f.Machines, o.Seed...) {
		mac, err := macaddr.Parse(m.MAC)
		if err != nil {
			continue // not written by us; the next save drops it
		}
		r.loadLocked(mac, m)
	}
	return r, nil
}

// loadLocked adds a record read from the file or the shared store: the
// node name comes from the cluster file, never from the record, and the
// boot address is left unset (only a DHCP exchange with this server binds
// it).
func (r *Registry) loadLocked(mac macaddr.MAC, m state.Machine) *machine {
	if old := r.machines[mac]; old != nil {
		delete(r.machines, mac)
		if old.Node == "" {
			r.unknown--
		}
	}
	m.MAC = mac.String()
	m.Node = r.known[mac]
	if m.Node == "" {
		r.evictUnknownLocked()
		r.unknown++
	}
	e := &machine{Machine: m}
	r.machines[mac] = e
	return e
}

// Node returns the node name of a known MAC.
func (r *Registry) Node(mac macaddr.MAC) (string, bool) {
	n, ok := r.known[mac]
	return n, ok
}

// Known reports whether mac is listed in the cluster file.
func (r *Registry) Known(mac macaddr.MAC) bool { _, ok := r.known[mac]; return ok }

// Observe records that mac reached stage (from src, with address ip and
// arch when known). Stages only move forward within a boot. A new netboot
// (DHCP/iPXE stage seen over DHCP) of a machine that has installed Talos —
// it fetched its config, or dodai bootstrap applied it after this machine's
// latest netboot began — marks it installed.
func (r *Registry) Observe(mac macaddr.MAC, src Source, ip netip.Addr, arch string, stage Stage) state.Machine {
	out, changed := r.observe(mac, src, ip, arch, stage, false)
	if changed && r.onChange != nil {
		r.onChange(out)
	}
	return out
}

// Hold is Observe for an observation that does not commit the machine to
// this server (an in-cluster replica's DHCP offer, which the client may
// decline for another replica's): the record changes the same way, but
// OnChange is not called; it reports whether the record changed. The
// held change reaches OnChange with the machine's next Observe (changed
// or not) or SetInstalled.
func (r *Registry) Hold(mac macaddr.MAC, src Source, ip netip.Addr, arch string, stage Stage) (state.Machine, bool) {
	return r.observe(mac, src, ip, arch, stage, true)
}

func (r *Registry) observe(mac macaddr.MAC, src Source, ip netip.Addr, arch string, stage Stage, hold bool) (state.Machine, bool) {
	r.mu.Lock()
	m := r.machines[mac]
	if m == nil {
		m = r.addLocked(mac)
	}
	before := m.Machine
	if arch != "" {
		m.Arch = arch
	}
	if ip.IsValid() && !ip.IsUnspecified() {
		ip = ip.Unmap()
		if src == FromDHCP {
			m.bootIP = ip
			m.IP = ip.String()
		} else if m.IP == "" {
			m.IP = ip.String()
		}
	}
	now := r.now().UTC()
	cur := Stage(m.Stage)
	newBoot := (stage == StageDHCP || stage == StageIPXE) && src == FromDHCP
	switch {
	case stage == "":
	case cur == StageInstalled:
		// stays installed until Reinstall
	case newBoot && (cur == StageConfig || (cur.rank() >= StageKernel.rank() && r.appliedSinceLocked(m))):
		m.Stage = string(StageInstalled)
	case newBoot:
		// a new boot starts over (e.g. a reboot before the config fetch),
		// but within one boot the DHCP→iPXE order holds.
		if cur.rank() < StageKernel.rank() && cur.rank() > stage.rank() {
			break
		}
		if cur == "" || cur.rank() >= StageKernel.rank() {
			m.BootStarted = now
		}
		m.Stage = string(stage)
	case stage.rank() > cur.rank():
		m.Stage = string(stage)
	}
	m.LastSeen = now
	changed := before.Stage != m.Stage || before.IP != m.IP || before.Arch != m.Arch
	r.dirty = r.dirty || changed || before.LastSeen.IsZero()
	out := m.Machine
	switch {
	case hold:
		m.held = m.held || changed
	case m.held:
		m.held, changed = false, true
	}
	r.mu.Unlock()
	return out, changed
}

// appliedSinceLocked reports whether dodai bootstrap applied m's node config
// after m's latest netboot began.
func (r *Registry) appliedSinceLocked(m *machine) bool {
	if m.Node == "" || r.applied == nil {
		return false
	}
	at, ok := r.applied(m.Node)
	return ok && at.After(m.BootStarted)
}

// addLocked adds a new machine, counting (and bounding) unknown ones.
func (r *Registry) addLocked(mac macaddr.MAC) *machine {
	m := &machine{Machine: state.Machine{MAC: mac.String(), Node: r.known[mac]}}
	if m.Node == "" {
		r.evictUnknownLocked()
		r.unknown++
	}
	r.machines[mac] = m
	return m
}

// evictUnknownLocked makes room for one more unknown machine.
func (r *Registry) evictUnknownLocked() {
	for r.unknown >= r.maxUnknown {
		var oldest *machine
		var oldestMAC macaddr.MAC
		for mac, m := range r.machines {
			if m.Node == "" && (oldest == nil || m.LastSeen.Before(oldest.LastSeen)) {
				oldest, oldestMAC = m, mac
			}
		}
		if oldest == nil {
			r.unknown = 0
			return
		}
		delete(r.machines, oldestMAC)
		r.unknown--
		r.dirty = true
	}
}

// ConfigAllowed reports whether a request from ip may fetch mac's config:
// mac must be a known machine and ip an address that the DHCP exchange of
// one of that node's own NICs bound (the NIC that netbooted and the one
// Talos fetches the config from may differ).
func (r *Registry) ConfigAllowed(mac macaddr.MAC, ip netip.Addr) bool {
	node, ok := r.known[mac]
	if !ok || !ip.IsValid() {
		return false
	}
	ip = ip.Unmap()
	r.mu.Lock()
	defer r.mu.Unlock()
	for m, n := range r.known {
		if n != node {
			continue
		}
		if e := r.machines[m]; e != nil && e.bootIP == ip {
			return true
		}
	}
	return false
}

// Installed reports whether mac should boot from its disk.
func (r *Registry) Installed(mac macaddr.MAC) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.machines[mac]
	return m != nil && m.Stage == string(StageInstalled)
}

// SetInstalled marks mac installed (true) or back to be reinstalled
// (false: its next netboot boots Talos again).
func (r *Registry) SetInstalled(mac macaddr.MAC, installed bool) state.Machine {
	r.mu.Lock()
	m := r.machines[mac]
	now := r.now().UTC()
	if m == nil {
		m = r.addLocked(mac)
		m.LastSeen = now
	}
	m.held = false
	if installed {
		m.Stage = string(StageInstalled)
	} else {
		m.Stage = string(StageDHCP)
		// A config applied before now belongs to the previous install.
		m.BootStarted, m.Reinstall = now, now
	}
	r.dirty = true
	out := m.Machine
	r.mu.Unlock()
	if r.onChange != nil {
		r.onChange(out)
	}
	return out
}

// Get returns one machine.
func (r *Registry) Get(mac macaddr.MAC) (state.Machine, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.machines[mac]
	if m == nil {
		return state.Machine{}, false
	}
	return m.Machine, true
}

// List returns all machines sorted by node name (known machines first)
// then MAC.
func (r *Registry) List() []state.Machine {
	r.mu.Lock()
	out := make([]state.Machine, 0, len(r.machines))
	for _, m := range r.machines {
		out = append(out, m.Machine)
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b state.Machine) int {
		if a.Node != b.Node {
			if a.Node == "" || b.Node == "" {
				return cmp.Compare(b.Node, a.Node) // named ones first
			}
			return cmp.Compare(a.Node, b.Node)
		}
		return cmp.Compare(a.MAC, b.MAC)
	})
	return out
}

// Len returns the number of machines in the registry.
func (r *Registry) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.machines)
}

// CountByStage returns the number of machines per stage.
func (r *Registry) CountByStage() map[Stage]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := map[Stage]int{}
	for _, m := range r.machines {
		c[Stage(m.Stage)]++
	}
	return c
}

// Save writes machines.json if anything changed since the last save.
func (r *Registry) Save() error {
	if r.path == "" {
		return nil
	}
	r.mu.Lock()
	if !r.dirty {
		r.mu.Unlock()
		return nil
	}
	r.dirty = false
	r.mu.Unlock()
	if err := state.WriteJSON(r.path, state.Machines{Machines: r.List()}); err != nil {
		r.mu.Lock()
		r.dirty = true
		r.mu.Unlock()
		return fmt.Errorf("saving machine registry: %w", err)
	}
	return nil
}

// Forget drops a machine (a node removed from the cluster); it reports
// whether the machine was known. Save writes the change.
func (r *Registry) Forget(mac macaddr.MAC) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.machines[mac]
	if m == nil {
		return false
	}
	if m.Node == "" {
		r.unknown--
	}
	delete(r.machines, mac)
	r.dirty = true
	return true
}
