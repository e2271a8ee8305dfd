// Package discover finds Talos machines in maintenance mode without nmap:
// a bounded-concurrency TCP probe of the Talos API port over the given
// networks, then an insecure Talos API call (only maintenance-mode nodes
// answer without a client certificate), deduplicated by MAC, with each
// machine's inventory read from its COSI resources.
package discover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/state"
	"github.com/dodai-dev/dodai/internal/talos"
)

// MaxHosts bounds the addresses one scan probes (a /16).
const MaxHosts = 1 << 16

// Options of a scan.
type Options struct {
	// Networks to probe (every host address of each).
	Networks []netip.Prefix
	// Hosts are extra single addresses (e.g. from the netboot registry).
	Hosts []netip.Addr
	// Port of the Talos API (default talos.DefaultPort).
	Port int
	// DialTimeout per TCP probe, default 500ms.
	DialTimeout time.Duration
	// Concurrency of probes, default 256.
	Concurrency int
	// Log receives debug messages.
	Log *slog.Logger
}

// skippedIface reports interfaces that never hold Talos machines: loopback,
// container and CNI bridges (talos-bootstrap skips docker/cni the same way).
func skippedIface(name string) bool {
	for _, p := range []string{"lo", "docker", "br-", "cni", "flannel", "cali", "cilium", "veth", "virbr", "kube-", "vxlan", "genev", "tun", "wg"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// DefaultNetworks returns the host's directly connected IPv4 networks,
// skipping loopback, docker and CNI interfaces.
func DefaultNetworks() ([]netip.Prefix, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("listing network interfaces: %w", err)
	}
	var out []netip.Prefix
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 || skippedIface(ifc.Name) {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok || ipn.IP.To4() == nil {
				continue
			}
			ones, _ := ipn.Mask.Size()
			if ones < 16 {
				// A /8 can't be scanned (and Scan refuses it): take the /16
				// around the host's own address, where its neighbours most
				// likely are. --network scans elsewhere.
				ones = 16
			}
			ip, _ := netip.AddrFromSlice(ipn.IP.To4())
			p := netip.PrefixFrom(ip, ones).Masked()
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	return out, nil
}

// ParseNetworks parses networks given by the user (CIDR, or a single
// address).
func ParseNetworks(values []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, v := range values {
		v = strings.TrimSpace(v)
		if p, err := netip.ParsePrefix(v); err == nil {
			if !p.Addr().Is4() {
				return nil, fmt.Errorf("network %q: only IPv4 networks can be scanned", v)
			}
			out = append(out, p.Masked())
			continue
		}
		if a, err := netip.ParseAddr(v); err == nil && a.Is4() {
			out = append(out, netip.PrefixFrom(a, 32))
			continue
		}
		return nil, fmt.Errorf("network %q is not an IPv4 CIDR like 192.168.100.0/24", v)
	}
	return out, nil
}

// Targets are where a scan looks: whole networks and single addresses.
type Targets struct {
	Networks []netip.Prefix
	Hosts    []netip.Addr
}

// TargetsFor is the one rule for where to look for a cluster directory's
// machines, used by discover, bootstrap and the interactive mode: the given
// networks, else the host's directly connected ones (DefaultNetworks), plus
// the addresses netboot recorded (state/machines.json) and the maintenance
// addresses bootstrap remembered (state/bootstrap.json). It returns
// ErrNoNetworks when all of that is empty.
func TargetsFor(l cluster.Layout, networks []netip.Prefix) (Targets, error) {
	return targetsFor(l, networks, DefaultNetworks)
}

func targetsFor(l cluster.Layout, networks []netip.Prefix, hostNetworks func() ([]netip.Prefix, error)) (Targets, error) {
	t := Targets{Networks: networks}
	if len(t.Networks) == 0 {
		var err error
		if t.Networks, err = hostNetworks(); err != nil {
			return Targets{}, err
		}
	}
	add := func(s string) {
		if a, err := netip.ParseAddr(s); err == nil && !slices.Contains(t.Hosts, a) {
			t.Hosts = append(t.Hosts, a)
		}
	}
	reg, err := state.ReadMachines(l.MachinesState())
	if err != nil {
		return Targets{}, err
	}
	for _, m := range reg.Machines {
		add(m.IP)
	}
	bs, err := state.ReadBootstrap(l.BootstrapState())
	if err != nil {
		return Targets{}, err
	}
	for _, name := range slices.Sorted(maps.Keys(bs.Nodes)) {
		add(bs.Nodes[name].MaintenanceAddress)
	}
	if len(t.Networks) == 0 && len(t.Hosts) == 0 {
		return Targets{}, ErrNoNetworks
	}
	return t, nil
}

// targets expands networks to host addresses (no network/broadcast address
// for prefixes shorter than /31), plus extra hosts, without duplicates.
func targets(opts Options) ([]netip.Addr, error) {
	seen := map[netip.Addr]bool{}
	var out []netip.Addr
	add := func(a netip.Addr) {
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	for _, h := range opts.Hosts {
		add(h)
	}
	for _, p := range opts.Networks {
		bits := p.Addr().BitLen() - p.Bits()
		if bits > 16 || len(out)+(1<<bits) > MaxHosts+len(opts.Hosts) {
			return nil, fmt.Errorf("network %s is too large to scan (more than %d addresses); scan a smaller one", p, MaxHosts)
		}
		first := p.Masked().Addr()
		n := 1 << bits
		for i, a := 0, first; i < n && p.Contains(a); i, a = i+1, a.Next() {
			if bits >= 2 && (i == 0 || i == n-1) {
				continue
			}
			add(a)
		}
	}
	return out, nil
}

// Probe returns the addresses whose Talos API port accepts TCP connections.
func Probe(ctx context.Context, opts Options) ([]netip.Addr, error) {
	addrs, err := targets(opts)
	if err != nil {
		return nil, err
	}
	if opts.Port == 0 {
		opts.Port = talos.DefaultPort
	}
	if opts.DialTimeout == 0 {
		opts.DialTimeout = 500 * time.Millisecond
	}
	if opts.Concurrency == 0 {
		opts.Concurrency = 256
	}
	var (
		mu   sync.Mutex
		open []netip.Addr
		wg   sync.WaitGroup
	)
	sem := make(chan struct{}, opts.Concurrency)
	d := net.Dialer{Timeout: opts.DialTimeout}
	for _, a := range addrs {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return nil, ctx.Err()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := d.DialContext(ctx, "tcp", talos.Endpoint(a.String(), opts.Port))
			if err != nil {
				return
			}
			c.Close()
			mu.Lock()
			open = append(open, a)
			mu.Unlock()
		}()
	}
	wg.Wait()
	slices.SortFunc(open, func(a, b netip.Addr) int { return a.Compare(b) })
	return open, ctx.Err()
}

// Scan probes the networks and reads the inventory of every machine in
// maintenance mode, deduplicated by MAC (the lowest address wins).
func Scan(ctx context.Context, opts Options) ([]*talos.Machine, error) {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Port == 0 {
		opts.Port = talos.DefaultPort
	}
	open, err := Probe(ctx, opts)
	if err != nil {
		return nil, err
	}
	log.Debug("talos API port open", "hosts", len(open))
	results := make([]*talos.Machine, len(open))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i, a := range open {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			m, err := Inspect(ctx, a.String(), opts.Port)
			if err != nil {
				log.Debug("not a maintenance-mode Talos node", "address", a, "error", err)
				return
			}
			results[i] = m
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	var out []*talos.Machine
	seen := map[string]bool{}
	for _, m := range results {
		if m == nil || seen[m.MAC] {
			continue
		}
		seen[m.MAC] = true
		out = append(out, m)
	}
	return out, nil
}

// Inspect reads one address's inventory over the maintenance API.
func Inspect(ctx context.Context, addr string, port int) (*talos.Machine, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := talos.Maintenance(ctx, talos.Endpoint(addr, port))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	m, err := talos.ReadMachine(ctx, c, addr)
	if err != nil {
		return nil, fmt.Errorf("reading inventory of %s: %w", addr, err)
	}
	return m, nil
}

// Find is how dodai looks for a cluster directory's machines (discover,
// bootstrap and the interactive mode): it scans where TargetsFor says, with
// o's port, timeouts and log (o.Networks and o.Hosts are replaced), and
// matches what answers to c's nodes (Match; c may be nil). It returns the
// targets too, so callers can say where they looked.
func Find(ctx context.Context, l cluster.Layout, c *cluster.Cluster, networks []netip.Prefix, o Options) (Targets, []*talos.Machine, error) {
	tg, err := TargetsFor(l, networks)
	if err != nil {
		return Targets{}, nil, err
	}
	if o.Log != nil {
		o.Log.Debug("scanning", "networks", fmt.Sprint(tg.Networks), "hosts", fmt.Sprint(tg.Hosts))
	}
	o.Networks, o.Hosts = tg.Networks, tg.Hosts
	machines, err := Scan(ctx, o)
	if err != nil {
		return tg, nil, err
	}
	Match(machines, c)
	return tg, machines, nil
}

// Match sets each machine's Node to the cluster node owning one of its
// MACs, or "unknown".
func Match(machines []*talos.Machine, c *cluster.Cluster) {
	for _, m := range machines {
		m.Node = "unknown"
		if n := NodeFor(m, c); n != nil {
			m.Node = n.Name
		}
	}
}

// NodeFor returns the cluster node whose MACs include one of the machine's.
func NodeFor(m *talos.Machine, c *cluster.Cluster) *cluster.Node {
	if c == nil {
		return nil
	}
	for i := range c.Spec.Nodes {
		n := &c.Spec.Nodes[i]
		for _, mac := range n.MACs {
			if canon, err := cluster.ParseMAC(mac); err == nil && m.HasMAC(canon) {
				return n
			}
		}
	}
	return nil
}

// ErrNoNetworks means there is nothing to scan: no network was given, the
// host has no directly connected IPv4 network, and no machine address was
// recorded.
var ErrNoNetworks = errors.New("no networks to scan: the host has no directly connected IPv4 network and no machine address is recorded in state/")
