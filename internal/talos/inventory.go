package talos

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/cosi-project/runtime/pkg/safe"
	"github.com/cosi-project/runtime/pkg/state"
	"github.com/siderolabs/talos/pkg/machinery/client"
	"github.com/siderolabs/talos/pkg/machinery/nethelpers"
	"github.com/siderolabs/talos/pkg/machinery/resources/block"
	"github.com/siderolabs/talos/pkg/machinery/resources/hardware"
	"github.com/siderolabs/talos/pkg/machinery/resources/network"
	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"

	"github.com/dodai-dev/dodai/internal/phase"
)

// Machine is what a node reports about itself through its COSI resources.
type Machine struct {
	// Address is the IP the machine was reached on.
	Address string `json:"address" yaml:"address"`
	// MAC is the first hardware address (hardwareaddresses/first).
	MAC string `json:"mac" yaml:"mac"`
	// Node is the cluster node this machine is (matched by MAC) or "unknown".
	Node         string      `json:"node" yaml:"node"`
	Hostname     string      `json:"hostname" yaml:"hostname"`
	TalosVersion string      `json:"talosVersion" yaml:"talosVersion"`
	Stage        phase.Phase `json:"stage" yaml:"stage"`
	Ready        bool        `json:"ready" yaml:"ready"`
	CPUs         []CPU       `json:"cpus,omitempty" yaml:"cpus,omitempty"`
	MemoryMiB    uint64      `json:"memoryMiB" yaml:"memoryMiB"`
	Disks        []Disk      `json:"disks,omitempty" yaml:"disks,omitempty"`
	Links        []Link      `json:"links,omitempty" yaml:"links,omitempty"`
	Addresses    []string    `json:"addresses,omitempty" yaml:"addresses,omitempty"`
	Gateway      string      `json:"gateway,omitempty" yaml:"gateway,omitempty"`
	DNS          []string    `json:"dns,omitempty" yaml:"dns,omitempty"`
}

// CPU is one processor socket.
type CPU struct {
	Model   string `json:"model" yaml:"model"`
	Cores   uint32 `json:"cores" yaml:"cores"`
	Threads uint32 `json:"threads" yaml:"threads"`
}

// Disk is one block device as Talos sees it.
type Disk struct {
	Name       string `json:"name" yaml:"name"`
	DevPath    string `json:"devPath" yaml:"devPath"`
	Size       uint64 `json:"size" yaml:"size"`
	PrettySize string `json:"prettySize" yaml:"prettySize"`
	Model      string `json:"model,omitempty" yaml:"model,omitempty"`
	Serial     string `json:"serial,omitempty" yaml:"serial,omitempty"`
	WWID       string `json:"wwid,omitempty" yaml:"wwid,omitempty"`
	Transport  string `json:"transport,omitempty" yaml:"transport,omitempty"`
	Rotational bool   `json:"rotational,omitempty" yaml:"rotational,omitempty"`
	Readonly   bool   `json:"readonly,omitempty" yaml:"readonly,omitempty"`
	CDROM      bool   `json:"cdrom,omitempty" yaml:"cdrom,omitempty"`
	BusPath    string `json:"busPath,omitempty" yaml:"busPath,omitempty"`
}

// Link is one network link.
type Link struct {
	Name      string   `json:"name" yaml:"name"`
	MAC       string   `json:"mac" yaml:"mac"`
	Up        bool     `json:"up" yaml:"up"`
	Physical  bool     `json:"physical" yaml:"physical"`
	Driver    string   `json:"driver,omitempty" yaml:"driver,omitempty"`
	SpeedMbps int      `json:"speedMbps,omitempty" yaml:"speedMbps,omitempty"`
	Addresses []string `json:"addresses,omitempty" yaml:"addresses,omitempty"`
}

// skipDisk hides devices that are never install targets (talos-bootstrap
// skips zd/drbd/loop/sr as well).
func skipDisk(name string) bool {
	for _, p := range []string{"loop", "zd", "drbd", "ram", "dm-", "md", "sr"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// MachineStatus reads the machine's stage (booting, maintenance, running…)
// and readiness.
func MachineStatus(ctx context.Context, st state.State) (stage phase.Phase, ready bool, err error) {
	ms, err := safe.StateGetByID[*runtime.MachineStatus](ctx, st, runtime.MachineStatusID)
	if err != nil {
		return phase.Unknown, false, fmt.Errorf("reading machine status: %w", err)
	}
	return phase.FromMachineStage(ms.TypedSpec().Stage), ms.TypedSpec().Status.Ready, nil
}

// Version reads the Talos version the node runs from runtime.Version
// (the Version API is refused in maintenance mode).
func Version(ctx context.Context, st state.State) (string, error) {
	v, err := safe.StateGetByID[*runtime.Version](ctx, st, "version")
	if err != nil {
		return "", fmt.Errorf("reading Talos version: %w", err)
	}
	return v.TypedSpec().Version, nil
}

// FirstMAC reads hardwareaddresses/first.
func FirstMAC(ctx context.Context, st state.State) (string, error) {
	ha, err := safe.StateGetByID[*network.HardwareAddr](ctx, st, network.FirstHardwareAddr)
	if err != nil {
		return "", fmt.Errorf("reading hardware address: %w", err)
	}
	return net.HardwareAddr(ha.TypedSpec().HardwareAddr).String(), nil
}

// ReadMachine reads a node's inventory through the Talos API resources.
func ReadMachine(ctx context.Context, c *client.Client, addr string) (*Machine, error) {
	st := c.COSI
	m := &Machine{Address: addr, Node: "unknown"}
	var err error
	if m.Stage, m.Ready, err = MachineStatus(ctx, st); err != nil {
		return nil, err
	}
	if m.TalosVersion, err = Version(ctx, st); err != nil {
		return nil, err
	}
	if m.MAC, err = FirstMAC(ctx, st); err != nil {
		return nil, err
	}
	hs, err := safe.StateGetByID[*network.HostnameStatus](ctx, st, network.HostnameID)
	if err == nil {
		m.Hostname = hs.TypedSpec().FQDN()
	} else if !state.IsNotFoundError(err) {
		return nil, fmt.Errorf("reading hostname: %w", err)
	}
	disks, err := safe.StateListAll[*block.Disk](ctx, st)
	if err != nil {
		return nil, fmt.Errorf("reading disks: %w", err)
	}
	for d := range disks.All() {
		if skipDisk(d.Metadata().ID()) {
			continue
		}
		s := d.TypedSpec()
		m.Disks = append(m.Disks, Disk{Name: d.Metadata().ID(), DevPath: s.DevPath, Size: s.Size, PrettySize: s.PrettySize,
			Model: s.Model, Serial: s.Serial, WWID: s.WWID, Transport: s.Transport, Rotational: s.Rotational,
			Readonly: s.Readonly, CDROM: s.CDROM, BusPath: s.BusPath})
	}
	addrs, err := safe.StateListAll[*network.AddressStatus](ctx, st)
	if err != nil {
		return nil, fmt.Errorf("reading addresses: %w", err)
	}
	byLink := map[string][]string{}
	for a := range addrs.All() {
		s := a.TypedSpec()
		if s.Scope != nethelpers.ScopeGlobal || s.LinkName == "lo" {
			continue
		}
		byLink[s.LinkName] = append(byLink[s.LinkName], s.Address.String())
	}
	links, err := safe.StateListAll[*network.LinkStatus](ctx, st)
	if err != nil {
		return nil, fmt.Errorf("reading links: %w", err)
	}
	for l := range links.All() {
		s := l.TypedSpec()
		if s.Type == nethelpers.LinkLoopbck {
			continue
		}
		m.Links = append(m.Links, Link{Name: l.Metadata().ID(), MAC: net.HardwareAddr(s.HardwareAddr).String(),
			Up: s.OperationalState == nethelpers.OperStateUp, Physical: s.Physical(), Driver: s.Driver,
			SpeedMbps: s.SpeedMegabits, Addresses: byLink[l.Metadata().ID()]})
	}
	na, err := safe.StateGetByID[*network.NodeAddress](ctx, st, network.NodeAddressDefaultID)
	if err == nil {
		for _, p := range na.TypedSpec().Addresses {
			m.Addresses = append(m.Addresses, p.String())
		}
	} else if !state.IsNotFoundError(err) {
		return nil, fmt.Errorf("reading node addresses: %w", err)
	}
	routes, err := safe.StateListAll[*network.RouteStatus](ctx, st)
	if err != nil {
		return nil, fmt.Errorf("reading routes: %w", err)
	}
	for r := range routes.All() {
		s := r.TypedSpec()
		if !s.Destination.IsValid() && s.Gateway.IsValid() && s.Family == nethelpers.FamilyInet4 {
			m.Gateway = s.Gateway.String()
			break
		}
	}
	rs, err := safe.StateGetByID[*network.ResolverStatus](ctx, st, network.ResolverID)
	if err == nil {
		for _, a := range rs.TypedSpec().DNSServers {
			m.DNS = append(m.DNS, a.String())
		}
	} else if !state.IsNotFoundError(err) {
		return nil, fmt.Errorf("reading resolvers: %w", err)
	}
	cpus, err := safe.StateListAll[*hardware.Processor](ctx, st)
	if err != nil {
		return nil, fmt.Errorf("reading processors: %w", err)
	}
	for p := range cpus.All() {
		s := p.TypedSpec()
		if s.CoreCount == 0 && s.ProductName == "" {
			continue
		}
		m.CPUs = append(m.CPUs, CPU{Model: strings.TrimSpace(s.ProductName), Cores: s.CoreCount, Threads: s.ThreadCount})
	}
	mem, err := safe.StateListAll[*hardware.MemoryModule](ctx, st)
	if err != nil {
		return nil, fmt.Errorf("reading memory modules: %w", err)
	}
	for mm := range mem.All() {
		m.MemoryMiB += uint64(mm.TypedSpec().Size)
	}
	slices.SortFunc(m.Disks, func(a, b Disk) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(m.Links, func(a, b Link) int { return strings.Compare(a.Name, b.Name) })
	return m, nil
}

// CPUSummary is e.g. "1x Intel Xeon E-2388G (8c/16t)".
func (m *Machine) CPUSummary() string {
	if len(m.CPUs) == 0 {
		return "-"
	}
	c := m.CPUs[0]
	model := strings.NewReplacer("(R)", "", "(TM)", "", "(tm)", "").Replace(c.Model)
	return fmt.Sprintf("%dx %s (%dc/%dt)", len(m.CPUs), strings.Join(strings.Fields(model), " "), c.Cores, c.Threads)
}

// HasMAC reports whether any link of the machine has the MAC.
func (m *Machine) HasMAC(mac string) bool {
	if strings.EqualFold(m.MAC, mac) {
		return true
	}
	for _, l := range m.Links {
		if strings.EqualFold(l.MAC, mac) {
			return true
		}
	}
	return false
}
