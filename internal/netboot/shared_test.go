package netboot

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dodai-dev/dodai/api/v1alpha1"
	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/incluster/incltest"
	"github.com/dodai-dev/dodai/internal/incluster/netbootstore"
	"github.com/dodai-dev/dodai/internal/netboot/dhcp"
)

// Two in-cluster replicas in proxy mode over one real apiserver. Every
// replica answers a boot client's DISCOVER and broadcast REQUEST on port
// 67 and sees a known machine's own DHCP REQUEST (Talos'); only the
// replica the client chose sees its PXE REQUEST on port 4011. One replica
// writes the Machine: the chosen one for the boot, the machine's last
// writer for Talos' REQUEST (at once: dodai controller joins the node at
// that address), and the other replica writes nothing. A known machine no
// replica wrote yet is written at once too.
func TestProxyReplicasOneWriter(t *testing.T) {
	kc := incltest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const grace = 3 * time.Second
	boot, talosOnly := "52:54:00:00:03:01", "52:54:00:00:03:02"
	cl := &cluster.Cluster{Spec: cluster.Spec{Boot: cluster.Boot{Mode: "proxy"},
		Nodes: []cluster.Node{{Name: "cp1", MACs: []string{boot}}, {Name: "w1", MACs: []string{talosOnly}}}}}
	assets, ipxe := t.TempDir(), t.TempDir()
	touch(t, filepath.Join(assets, "amd64", "vmlinuz"))
	touch(t, filepath.Join(assets, "amd64", "initramfs.xz"))
	touch(t, filepath.Join(ipxe, "undionly.kpxe"))
	touch(t, filepath.Join(ipxe, "snponly.efi"))
	replica := func(name string) (*Server, *netbootstore.Store) {
		st, err := netbootstore.Open(ctx, netbootstore.Options{REST: kc.REST, Namespace: incltest.Namespace, Server: name, Cluster: cl, OfferGrace: grace})
		if err != nil {
			t.Fatal(err)
		}
		s, err := New(Options{Cluster: cl, ClusterDir: t.TempDir(), Interface: "lo", AssetsDir: assets, IPXEDir: ipxe, Shared: st})
		if err != nil {
			t.Fatal(err)
		}
		go st.Run(ctx)
		return s, st
	}
	// The apiserver's first write of a kind is slow (admission sets up):
	// done before the replicas' writes are timed against the grace period.
	warm := &v1alpha1.Machine{ObjectMeta: metav1.ObjectMeta{Namespace: incltest.Namespace, Name: v1alpha1.MachineName("52:54:00:00:03:ff")},
		Spec: v1alpha1.MachineSpec{MACs: []v1alpha1.MAC{"52:54:00:00:03:ff"}}}
	if err := kc.Client.Create(ctx, warm); err != nil {
		t.Fatal(err)
	}
	a, sa := replica("a")
	b, sb := replica("b")
	send := func(req *dhcpv4.DHCPv4, port dhcp.Port, to ...*Server) {
		t.Helper()
		for _, s := range to {
			reply, ev := s.dhcpCfg.Handle(req, port)
			if reply == nil && ev.Client.Class != "" {
				t.Fatalf("%s on port %d not answered: %s", req.MessageType(), port, ev.Ignored)
			}
			s.onDHCP(ev)
		}
	}
	msg := func(mac string, t dhcpv4.MessageType, pxe bool, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
		hw, _ := net.ParseMAC(mac)
		mods = append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(t)}, mods...)
		if pxe {
			mods = append(mods, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")),
				dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64)))
		}
		m, err := dhcpv4.New(mods...)
		if err != nil {
			panic(err)
		}
		return m
	}
	site := dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 0, 0, 1)))
	get := func(mac string) (*v1alpha1.Machine, bool) {
		var m v1alpha1.Machine
		err := kc.Client.Get(ctx, client.ObjectKey{Namespace: incltest.Namespace, Name: v1alpha1.MachineName(mac)}, &m)
		return &m, err == nil && m.Status.LastSeen != nil
	}
	waitFor := func(what string, within time.Duration, cond func(*v1alpha1.Machine) bool, mac string) *v1alpha1.Machine {
		t.Helper()
		start := time.Now()
		for {
			if m, ok := get(mac); ok && cond(m) {
				return m
			}
			if time.Since(start) > within {
				m, _ := get(mac)
				t.Fatalf("%s: not within %v: %+v", what, within, m.Status)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	// The firmware's DHCP: both replicas offer and ACK its broadcast
	// REQUEST; it asks b on port 4011.
	send(msg(boot, dhcpv4.MessageTypeDiscover, true), dhcp.PortDHCP, a, b)
	send(msg(boot, dhcpv4.MessageTypeRequest, true, site, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(10, 0, 0, 50)))), dhcp.PortDHCP, a, b)
	send(msg(boot, dhcpv4.MessageTypeRequest, true, dhcpv4.WithClientIP(net.IPv4(10, 0, 0, 50))), dhcp.PortPXE, b)
	m := waitFor("b's record of the boot", grace, func(m *v1alpha1.Machine) bool { return m.Status.IP == "10.0.0.50" }, boot)
	if m.Status.BootServer != "b" || m.Status.Stage != "dhcp" {
		t.Errorf("boot: %+v, want b's record at stage dhcp", m.Status)
	}
	time.Sleep(2 * grace)
	if w := sa.Writes(); w != 0 {
		t.Errorf("a wrote %d times for a boot the client took to b", w)
	}
	bootWrites := sb.Writes()

	// Talos' own DHCP (no boot client) takes another address: every
	// replica sees the broadcast REQUEST; b, the Machine's last writer,
	// writes it at once.
	send(msg(boot, dhcpv4.MessageTypeRequest, false, site, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(10, 0, 0, 77)))), dhcp.PortDHCP, a, b)
	waitFor("b's record of Talos' address", grace, func(m *v1alpha1.Machine) bool { return m.Status.IP == "10.0.0.77" && m.Status.BootServer == "b" }, boot)
	time.Sleep(2 * grace)
	if w := sa.Writes(); w != 0 {
		t.Errorf("a wrote %d times for Talos' REQUEST that b recorded", w)
	}
	if w := sb.Writes() - bootWrites; w != 1 {
		t.Errorf("b wrote %d times for Talos' REQUEST, want 1 (status)", w)
	}
	if m, _ := get(boot); m.Status.IP != "10.0.0.77" || m.Status.Stage != "dhcp" {
		t.Errorf("after Talos' REQUEST: %+v", m.Status)
	}

	// A known machine no replica wrote yet: its address is written at
	// once, not after the grace period.
	send(msg(talosOnly, dhcpv4.MessageTypeRequest, false, site, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(10, 0, 0, 78)))), dhcp.PortDHCP, a, b)
	waitFor("the new machine's address", grace, func(m *v1alpha1.Machine) bool { return m.Status.IP == "10.0.0.78" }, talosOnly)
}
