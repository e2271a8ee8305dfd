package faketalos

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/cosi-project/runtime/pkg/resource"
	"github.com/cosi-project/runtime/pkg/state"
	"github.com/siderolabs/talos/pkg/machinery/nethelpers"
	"github.com/siderolabs/talos/pkg/machinery/resources/block"
	"github.com/siderolabs/talos/pkg/machinery/resources/hardware"
	"github.com/siderolabs/talos/pkg/machinery/resources/network"
	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"

	"github.com/dodai-dev/dodai/internal/talos/compat"
)

// Inventory is the scripted hardware and network state of a fake node, as
// its COSI resources report it.
type Inventory struct {
	// Hostname reported in maintenance mode (e.g. talos-abc-def).
	Hostname string
	// TalosVersion reported by runtime.Version and the Version API; the
	// node accepts configs as this release does. Default: the release new
	// clusters get (compat.DefaultTalosVersion).
	TalosVersion string
	// Schematic is the Image Factory schematic ID of the image the machine
	// boots and is installed with ("" for a vanilla image); its extensions
	// come from Options.Factory.
	Schematic string
	// Links are the NICs; the first one carries the maintenance address.
	Links []Link
	// Disks of the machine.
	Disks []Disk
	// CPUs, one entry per socket.
	CPUs []CPU
	// MemoryMiB, one entry per memory module.
	MemoryMiB []uint32
	// PrefixLen of the maintenance address (default 8 on 127.0.0.0/8).
	PrefixLen int
	// Gateway of the default route, optional.
	Gateway string
	// DNS servers, optional.
	DNS []string
}

// Link is one NIC.
type Link struct {
	Name   string
	MAC    string
	Down   bool
	Driver string
	Speed  int
}

// Disk is one block device (block.Disk spec fields).
type Disk struct {
	ID         string // sda, nvme0n1; DevPath is /dev/<ID>
	Size       uint64
	Model      string
	Serial     string
	WWID       string
	Transport  string // sata, nvme, usb, virtio…
	Rotational bool
	Readonly   bool
	CDROM      bool
	BusPath    string
}

// CPU is one processor socket.
type CPU struct {
	Manufacturer string
	Product      string
	Cores        uint32
	Threads      uint32
}

// DefaultInventory is a typical small server: two NICs, an NVMe system disk,
// a SATA data disk and a USB stick, 2×16 GiB RAM.
func DefaultInventory(hostname string, macs ...string) Inventory {
	inv := Inventory{
		Hostname:     hostname,
		TalosVersion: compat.DefaultTalosVersion,
		Disks: []Disk{
			{ID: "nvme0n1", Size: 512110190592, Model: "Samsung SSD 980 PRO 512GB", Serial: "S5GXNF0R" + hostname, WWID: "eui.0025385" + hostname, Transport: "nvme", BusPath: "/pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme"},
			{ID: "sda", Size: 4000787030016, Model: "ST4000NM000A", Serial: "ZC1" + hostname, WWID: "naa.5000c500" + hostname, Transport: "sata", Rotational: true, BusPath: "/pci0000:00/0000:00:17.0/ata1"},
			{ID: "sdb", Size: 32017047552, Model: "SanDisk Ultra", Serial: "4C53" + hostname, Transport: "usb", BusPath: "/pci0000:00/0000:00:14.0/usb1"},
		},
		CPUs:      []CPU{{Manufacturer: "Intel(R) Corporation", Product: "Intel(R) Xeon(R) E-2388G CPU @ 3.20GHz", Cores: 8, Threads: 16}},
		MemoryMiB: []uint32{16384, 16384},
		DNS:       []string{"127.0.0.53"},
	}
	for i, m := range macs {
		inv.Links = append(inv.Links, Link{Name: fmt.Sprintf("enp%ds0", i+1), MAC: m, Driver: "igb", Speed: 1000})
	}
	return inv
}

// populate creates the COSI resources for the inventory in st.
func (n *Node) populate(ctx context.Context, st state.State, addr string, stage runtime.MachineStage, hostname string) error {
	inv := n.opts.Inventory
	var res []resource.Resource

	v := runtime.NewVersion()
	v.TypedSpec().Version = inv.TalosVersion
	res = append(res, v)

	ms := runtime.NewMachineStatus()
	ms.TypedSpec().Stage = stage
	ms.TypedSpec().Status.Ready = stage == runtime.MachineStageRunning
	res = append(res, ms)

	for _, d := range inv.Disks {
		r := block.NewDisk(block.NamespaceName, d.ID)
		s := r.TypedSpec()
		s.DevPath = "/dev/" + d.ID
		s.SetSize(d.Size)
		s.Model, s.Serial, s.WWID, s.Transport = d.Model, d.Serial, d.WWID, d.Transport
		s.Rotational, s.Readonly, s.CDROM, s.BusPath = d.Rotational, d.Readonly, d.CDROM, d.BusPath
		s.IOSize, s.SectorSize = 512, 512
		res = append(res, r)
	}

	prefix := inv.PrefixLen
	if prefix == 0 {
		prefix = 8
	}
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return fmt.Errorf("fake node %s: address %q: %w", n.opts.Name, addr, err)
	}
	pfx := netip.PrefixFrom(ip, prefix)
	for i, l := range inv.Links {
		hw, err := net.ParseMAC(l.MAC)
		if err != nil {
			return fmt.Errorf("fake node %s: link %s: %w", n.opts.Name, l.Name, err)
		}
		r := network.NewLinkStatus(network.NamespaceName, l.Name)
		s := r.TypedSpec()
		s.Index = uint32(i + 2)
		s.Type = nethelpers.LinkEther
		s.Kind = ""
		s.HardwareAddr = nethelpers.HardwareAddr(hw)
		s.PermanentAddr = nethelpers.HardwareAddr(hw)
		s.MTU = 1500
		s.Driver = l.Driver
		s.SpeedMegabits = l.Speed
		s.LinkState = !l.Down
		if l.Down {
			s.OperationalState = nethelpers.OperStateDown
		} else {
			s.OperationalState = nethelpers.OperStateUp
		}
		res = append(res, r)
		if i == 0 {
			ha := network.NewHardwareAddr(network.NamespaceName, "first")
			ha.TypedSpec().Name = l.Name
			ha.TypedSpec().HardwareAddr = nethelpers.HardwareAddr(hw)
			res = append(res, ha)

			as := network.NewAddressStatus(network.NamespaceName, l.Name+"/"+pfx.String())
			as.TypedSpec().Address = pfx
			as.TypedSpec().LinkName = l.Name
			as.TypedSpec().LinkIndex = s.Index
			as.TypedSpec().Family = nethelpers.FamilyInet4
			as.TypedSpec().Scope = nethelpers.ScopeGlobal
			res = append(res, as)

			if inv.Gateway != "" {
				gw, err := netip.ParseAddr(inv.Gateway)
				if err != nil {
					return fmt.Errorf("fake node %s: gateway: %w", n.opts.Name, err)
				}
				rs := network.NewRouteStatus(network.NamespaceName, "inet4/"+inv.Gateway+"//1024")
				rs.TypedSpec().Family = nethelpers.FamilyInet4
				rs.TypedSpec().Gateway = gw
				rs.TypedSpec().OutLinkName = l.Name
				rs.TypedSpec().OutLinkIndex = s.Index
				rs.TypedSpec().Table = nethelpers.TableMain
				rs.TypedSpec().Priority = 1024
				res = append(res, rs)
			}
		}
	}
	na := network.NewNodeAddress(network.NamespaceName, network.NodeAddressDefaultID)
	na.TypedSpec().Addresses = []netip.Prefix{pfx}
	res = append(res, na)

	hs := network.NewHostnameStatus(network.NamespaceName, network.HostnameID)
	hs.TypedSpec().Hostname = hostname
	res = append(res, hs)

	rs := network.NewResolverStatus(network.NamespaceName, network.ResolverID)
	for _, d := range inv.DNS {
		a, err := netip.ParseAddr(d)
		if err != nil {
			return fmt.Errorf("fake node %s: dns: %w", n.opts.Name, err)
		}
		rs.TypedSpec().DNSServers = append(rs.TypedSpec().DNSServers, a)
	}
	res = append(res, rs)

	for i, c := range inv.CPUs {
		p := hardware.NewProcessorInfo(fmt.Sprintf("CPU-%d", i))
		p.TypedSpec().Socket = fmt.Sprintf("CPU%d", i)
		p.TypedSpec().Manufacturer = c.Manufacturer
		p.TypedSpec().ProductName = c.Product
		p.TypedSpec().CoreCount = c.Cores
		p.TypedSpec().ThreadCount = c.Threads
		res = append(res, p)
	}
	for i, m := range inv.MemoryMiB {
		mm := hardware.NewMemoryModuleInfo(fmt.Sprintf("DIMM-%d", i))
		mm.TypedSpec().Size = m
		mm.TypedSpec().DeviceLocator = fmt.Sprintf("DIMM %d", i)
		res = append(res, mm)
	}

	for _, r := range res {
		if err := st.Create(ctx, r); err != nil {
			return fmt.Errorf("fake node %s: creating %s: %w", n.opts.Name, r.Metadata().ID(), err)
		}
	}
	return nil
}
