// Package registry tracks every machine dodai netboot has seen: its MAC,
// architecture, address and boot stage (DHCP → iPXE → kernel → initramfs →
// config fetched → installed). It decides which address may fetch a
// machine's config and when a machine has been installed ("boot once"), and
// persists itself in state/machines.json so `dodai bootstrap` finds the
// machines.
package registry

import (
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"time"

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

// Registry is safe for concurrent use.
type Registry struct {
	path       string
	maxUnknown int
	unknown    int               // machines without a node name
	known      map[string]string // MAC → node name
	now        func() time.Time

	mu       sync.Mutex
	machines map[string]*state.Machine
	// bootIP is the address a machine's own DHCP exchange bound (dhcp-mode
	// lease or proxy-seen requested/client address). Only it may fetch the
	// machine's config.
	bootIP map[string]netip.Addr
	dirty  bool
	// OnChange is called (outside the lock) after a machine changed.
	onChange func(state.Machine)
}

// Options configure New.
type Options struct {
	// Path of machines.json; empty: memory only.
	Path string
	// Known maps canonical MACs to node names (from cluster.yaml).
	Known map[string]string
	// OnChange is called after a machine's record changed.
	OnChange func(state.Machine)
	// Now overrides the clock.
	Now func() time.Time
	// MaxUnknown overrides MaxUnknown (tests).
	MaxUnknown int
}

// New loads the registry file (if present).
func New(o Options) (*Registry, error) {
	r := &Registry{path: o.Path, known: o.Known, now: o.Now, onChange: o.OnChange, maxUnknown: o.MaxUnknown,
		machines: map[string]*state.Machine{}, bootIP: map[string]netip.Addr{}}
	if r.maxUnknown <= 0 {
		r.maxUnknown = MaxUnknown
	}
	if r.known == nil {
		r.known = map[string]string{}
	}
	if r.now == nil {
		r.now = time.Now
	}
	if o.Path != "" {
		var f state.Machines
		if err := state.ReadJSON(o.Path, &f); err != nil {
			return nil, fmt.Errorf("loading machine registry: %w", err)
		}
		for i := range f.Machines {
			m := f.Machines[i]
			if m.MAC == "" {
				continue
			}
			m.Node = r.known[m.MAC]
			if m.Node == "" {
				r.evictUnknownLocked()
				r.unknown++
			}
			r.machines[m.MAC] = &m
		}
	}
	return r, nil
}

// Node returns the node name of a known MAC.
func (r *Registry) Node(mac string) (string, bool) {
	n, ok := r.known[mac]
	return n, ok
}

// Known reports whether mac is listed in the cluster file.
func (r *Registry) Known(mac string) bool { _, ok := r.known[mac]; return ok }

// Observe records that mac reached stage (from src, with address ip and
// arch when known). Stages only move forward within a boot; a new netboot
// (DHCP/iPXE stage) after the config was fetched marks the machine
// installed: Talos fetched its config, installed, and rebooted.
func (r *Registry) Observe(mac string, src Source, ip netip.Addr, arch string, stage Stage) state.Machine {
	r.mu.Lock()
	m := r.machines[mac]
	if m == nil {
		m = r.addLocked(mac)
	}
	before := *m
	if arch != "" {
		m.Arch = arch
	}
	if ip.IsValid() && !ip.IsUnspecified() {
		if src == FromDHCP {
			r.bootIP[mac] = ip
			m.IP = ip.String()
		} else if m.IP == "" {
			m.IP = ip.String()
		}
	}
	cur := Stage(m.Stage)
	switch {
	case stage == "":
	case cur == StageInstalled:
		// stays installed until Reinstall
	case cur == StageConfig && (stage == StageDHCP || stage == StageIPXE) && src == FromDHCP:
		m.Stage = string(StageInstalled)
	case (stage == StageDHCP || stage == StageIPXE) && src == FromDHCP:
		// a new boot starts over (e.g. a reboot before the config fetch),
		// but within one boot the DHCP→iPXE order holds.
		if cur.rank() < StageKernel.rank() && cur.rank() > stage.rank() {
			break
		}
		m.Stage = string(stage)
	case stage.rank() > cur.rank():
		m.Stage = string(stage)
	}
	m.LastSeen = r.now().UTC()
	changed := before.Stage != m.Stage || before.IP != m.IP || before.Arch != m.Arch
	r.dirty = r.dirty || changed || before.LastSeen.IsZero()
	out := *m
	r.mu.Unlock()
	if changed && r.onChange != nil {
		r.onChange(out)
	}
	return out
}

// evictUnknownLocked makes room for one more unknown machine.
// addLocked adds a new machine, counting (and bounding) unknown ones.
func (r *Registry) addLocked(mac string) *state.Machine {
	m := &state.Machine{MAC: mac, Node: r.known[mac]}
	if m.Node == "" {
		r.evictUnknownLocked()
		r.unknown++
	}
	r.machines[mac] = m
	return m
}

func (r *Registry) evictUnknownLocked() {
	for r.unknown >= r.maxUnknown {
		var oldest *state.Machine
		for _, m := range r.machines {
			if m.Node == "" && (oldest == nil || m.LastSeen.Before(oldest.LastSeen)) {
				oldest = m
			}
		}
		if oldest == nil {
			r.unknown = 0
			return
		}
		delete(r.machines, oldest.MAC)
		delete(r.bootIP, oldest.MAC)
		r.unknown--
		r.dirty = true
	}
}

// ConfigAllowed reports whether a request from ip may fetch mac's config:
// mac must be a known machine and ip an address that the DHCP exchange of
// one of that node's own NICs bound (the NIC that netbooted and the one
// Talos fetches the config from may differ).
func (r *Registry) ConfigAllowed(mac string, ip netip.Addr) bool {
	node, ok := r.known[mac]
	if !ok {
		return false
	}
	ip = ip.Unmap()
	r.mu.Lock()
	defer r.mu.Unlock()
	if b, ok := r.bootIP[mac]; ok && b == ip {
		return true
	}
	for m, n := range r.known {
		if n == node && m != mac {
			if b, ok := r.bootIP[m]; ok && b == ip {
				return true
			}
		}
	}
	return false
}

// Installed reports whether mac should boot from its disk.
func (r *Registry) Installed(mac string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.machines[mac]
	return m != nil && m.Stage == string(StageInstalled)
}

// SetInstalled marks mac installed (true) or back to be reinstalled
// (false: its next netboot boots Talos again).
func (r *Registry) SetInstalled(mac string, installed bool) state.Machine {
	r.mu.Lock()
	m := r.machines[mac]
	if m == nil {
		m = r.addLocked(mac)
		m.LastSeen = r.now().UTC()
	}
	if installed {
		m.Stage = string(StageInstalled)
	} else {
		m.Stage = string(StageDHCP)
	}
	r.dirty = true
	out := *m
	r.mu.Unlock()
	if r.onChange != nil {
		r.onChange(out)
	}
	return out
}

// Get returns one machine.
func (r *Registry) Get(mac string) (state.Machine, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.machines[mac]
	if m == nil {
		return state.Machine{}, false
	}
	return *m, true
}

// List returns all machines sorted by node name then MAC.
func (r *Registry) List() []state.Machine {
	r.mu.Lock()
	out := make([]state.Machine, 0, len(r.machines))
	for _, m := range r.machines {
		out = append(out, *m)
	}
	r.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Node != out[j].Node {
			if out[i].Node == "" || out[j].Node == "" {
				return out[i].Node != ""
			}
			return out[i].Node < out[j].Node
		}
		return out[i].MAC < out[j].MAC
	})
	return out
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
