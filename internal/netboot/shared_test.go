package netboot

import (
	"context"
	"net"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dodai-dev/dodai/api/v1alpha1"
	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/incluster/incltest"
	"github.com/dodai-dev/dodai/internal/incluster/netbootstore"
	"github.com/dodai-dev/dodai/internal/incluster/replicas"
	"github.com/dodai-dev/dodai/internal/netboot/dhcp"
	"github.com/dodai-dev/dodai/internal/state"
	"github.com/dodai-dev/dodai/internal/testutil"
)

// Two in-cluster replicas in proxy mode over one real apiserver. Every
// replica answers a boot client's DISCOVER and broadcast REQUEST on port
// 67 and sees a known machine's own DHCP REQUEST (Talos'); only the
// replica the client chose sees its PXE REQUEST on port 4011. One replica
// writes the Machine: the chosen one for the boot, the machine's last
// writer for Talos' REQUEST (at once: dodai controller joins the node at
// that address), and the other replica writes nothing. A known machine no
// replica wrote yet, or whose Machine names a boot server that stopped or
// died, is written at once too, by one replica only: the running replica
// the MAC's rendezvous hash names.
func TestProxyReplicasOneWriter(t *testing.T) {
	kc := incltest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const grace = 4 * time.Second
	boot, talosOnly := "52:54:00:00:03:01", "52:54:00:00:03:02"
	// Their rendezvous owners over a and b: a, b.
	expired, deleted := "52:54:00:00:03:03", "52:54:00:00:03:06"
	cl := &cluster.Cluster{Spec: cluster.Spec{Boot: cluster.Boot{Mode: "proxy"},
		Nodes: []cluster.Node{{Name: "cp1", MACs: []string{boot}}, {Name: "w1", MACs: []string{talosOnly}},
			{Name: "w2", MACs: []string{expired}}, {Name: "w3", MACs: []string{deleted}}}}}
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
		// Its heartbeat: the replicas tell from them which others run.
		st.Announce(s.ServerIP().String(), s.BaseURL(), s.Mode())
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
	// sees reports whether a replica's watch of the heartbeats shows the
	// named replicas' running states.
	sees := func(st *netbootstore.Store, want map[string]bool) bool {
		reps, err := st.Replicas(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, r := range reps {
			got[r.Name] = r.Running
		}
		for name, running := range want {
			if r, ok := got[name]; running != r || running && !ok {
				return false
			}
		}
		return true
	}
	waitSeen := func(what string, want map[string]bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !sees(sa, want) || !sees(sb, want) {
			if time.Now().After(deadline) {
				t.Fatalf("the replicas do not see %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitSeen("each other's heartbeat", map[string]bool{"a": true, "b": true})
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

	// oneWriter sends a known machine's Talos REQUEST to both replicas
	// and checks that one of them writes it at once (well within the
	// grace period) and the other holds it and, once that write arrived,
	// drops it: it writes nothing, also after the grace period. It
	// returns the writer.
	oneWriter := func(what, mac string, ip net.IP, wantWrites int64) string {
		t.Helper()
		wa, wb := sa.Writes(), sb.Writes()
		start := time.Now()
		send(msg(mac, dhcpv4.MessageTypeRequest, false, site, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip))), dhcp.PortDHCP, a, b)
		m := waitFor(what, grace, func(m *v1alpha1.Machine) bool {
			return m.Status.IP == ip.String() && (m.Status.BootServer == "a" || m.Status.BootServer == "b")
		}, mac)
		d := time.Since(start)
		if d > grace/2 {
			t.Errorf("%s: written %v after the REQUEST, want well within the grace period (%v)", what, d, grace)
		}
		time.Sleep(grace + time.Second)
		writer := m.Status.BootServer
		if want := replicas.Owner(mac, []string{"a", "b"}); writer != want {
			t.Errorf("%s: written by %s, want %s (the MAC's rendezvous owner)", what, writer, want)
		}
		got := map[string]int64{"a": sa.Writes() - wa, "b": sb.Writes() - wb}
		for name, n := range got {
			if name == writer && n != wantWrites {
				t.Errorf("%s: the writer %s wrote %d times, want %d", what, name, n, wantWrites)
			}
			if name != writer && n != 0 {
				t.Errorf("%s: %s wrote %d times, want 0 (%s wrote it)", what, name, n, writer)
			}
		}
		if m, _ := get(mac); m.Status.IP != ip.String() || m.Status.BootServer != writer {
			t.Errorf("%s: after the grace period %+v", what, m.Status)
		}
		t.Logf("%s: written by %s %v after the REQUEST; writes a %d, b %d", what, writer, d.Round(time.Millisecond), got["a"], got["b"])
		return writer
	}

	// A known machine no replica wrote yet: its address is written at
	// once, not after the grace period, by one replica (create, status).
	oneWriter("the new machine's address", talosOnly, net.IPv4(10, 0, 0, 78), 2)

	// A Machine whose boot server died (c: its heartbeat stands, not
	// renewed within its duration) or stopped (d: its heartbeat deleted):
	// one of the running replicas writes Talos' address at once.
	for _, tc := range []struct {
		name, mac, node, server string
		ip                      net.IP
	}{
		{"expired", expired, "w2", "c", net.IPv4(10, 0, 0, 79)},
		{"deleted", deleted, "w3", "d", net.IPv4(10, 0, 0, 80)},
	} {
		seen := metav1.NewTime(time.Now().Add(-time.Minute).UTC().Truncate(time.Second))
		m := &v1alpha1.Machine{ObjectMeta: metav1.ObjectMeta{Namespace: incltest.Namespace, Name: v1alpha1.MachineName(tc.mac)},
			Spec: v1alpha1.MachineSpec{MACs: []v1alpha1.MAC{v1alpha1.MAC(tc.mac)}, Node: tc.node}}
		if err := kc.Client.Create(ctx, m); err != nil {
			t.Fatal(err)
		}
		m.Status = v1alpha1.MachineStatus{BootServer: tc.server, IP: "10.0.0.9", Arch: "amd64", Stage: "dhcp", LastSeen: &seen}
		if err := kc.Client.Status().Update(ctx, m); err != nil {
			t.Fatal(err)
		}
		hb := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: incltest.Namespace, Name: replicas.LeaseName(tc.server),
			Labels: map[string]string{replicas.LabelComponent: replicas.Component}}}
		holder, secs, renewed := tc.server, int32(30), metav1.NewMicroTime(time.Now())
		if tc.name == "expired" {
			renewed = metav1.NewMicroTime(time.Now().Add(-time.Minute))
		}
		hb.Spec = coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &secs, RenewTime: &renewed}
		if err := kc.Client.Create(ctx, hb); err != nil {
			t.Fatal(err)
		}
		waitSeen(tc.name+": "+tc.server+"'s heartbeat", map[string]bool{"a": true, "b": true, tc.server: tc.name != "expired"})
		for _, st := range []*netbootstore.Store{sa, sb} {
			testutil.WaitUntil(t, tc.name+": the replicas to see the Machine", func() bool {
				recs, err := st.Machines(ctx)
				return err == nil && slices.ContainsFunc(recs, func(r state.Machine) bool { return r.MAC == tc.mac && r.IP == "10.0.0.9" })
			})
		}
		if tc.name == "deleted" {
			// While d runs, it owns its machine.
			if sa.Owns(tc.mac) || sb.Owns(tc.mac) {
				t.Errorf("%s: a or b owns a machine of d while d runs", tc.name)
			}
			if err := kc.Client.Delete(ctx, hb); err != nil {
				t.Fatal(err)
			}
			waitSeen("d stopped", map[string]bool{"a": true, "b": true, "d": false})
		}
		oneWriter(tc.name+": Talos' address of "+tc.server+"'s machine", tc.mac, tc.ip, 1)
	}
}
