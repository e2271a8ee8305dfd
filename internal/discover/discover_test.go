package discover

import (
	"context"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/state"
)

func TestParseNetworks(t *testing.T) {
	got, err := ParseNetworks([]string{"192.168.100.7/24", " 10.0.0.1 "})
	if err != nil {
		t.Fatal(err)
	}
	if got[0].String() != "192.168.100.0/24" || got[1].String() != "10.0.0.1/32" {
		t.Fatalf("got %v", got)
	}
	for _, bad := range []string{"", "fd00::/64", "300.1.1.1/24", "10.0.0.0/33", "eth0"} {
		if _, err := ParseNetworks([]string{bad}); err == nil || !strings.Contains(err.Error(), "--network") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestTargets(t *testing.T) {
	tests := []struct {
		nets  []string
		hosts []string
		want  int
		first string
		err   string
	}{
		{nets: []string{"192.168.1.0/24"}, want: 254, first: "192.168.1.1"},
		{nets: []string{"192.168.1.8/30"}, want: 2, first: "192.168.1.9"},
		{nets: []string{"192.168.1.8/31"}, want: 2, first: "192.168.1.8"},
		{nets: []string{"192.168.1.8/32"}, want: 1, first: "192.168.1.8"},
		{nets: []string{"10.0.0.0/16"}, want: 65534, first: "10.0.0.1"},
		{nets: []string{"10.0.0.0/15"}, err: "too large"},
		{nets: []string{"192.168.1.0/30"}, hosts: []string{"192.168.1.1", "10.1.1.1"}, want: 3, first: "192.168.1.1"},
	}
	for _, tt := range tests {
		var o Options
		for _, n := range tt.nets {
			o.Networks = append(o.Networks, netip.MustParsePrefix(n))
		}
		for _, h := range tt.hosts {
			o.Hosts = append(o.Hosts, netip.MustParseAddr(h))
		}
		got, err := targets(o)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%v: %v", tt.nets, err)
			}
			continue
		}
		if err != nil || len(got) != tt.want || got[0].String() != tt.first {
			t.Errorf("%v: %d targets, first %v, err %v", tt.nets, len(got), got, err)
		}
	}
}

func TestSkippedIface(t *testing.T) {
	for _, n := range []string{"lo", "docker0", "cni0", "flannel.1", "veth1234", "br-abc", "cilium_host"} {
		if !skippedIface(n) {
			t.Errorf("%s not skipped", n)
		}
	}
	for _, n := range []string{"eth0", "ens18", "enp1s0", "bond0", "br0"} {
		if skippedIface(n) {
			t.Errorf("%s skipped", n)
		}
	}
}

// TestProbe: only the listening addresses are reported, in order, and a
// non-Talos listener is dropped by Scan.
func TestProbe(t *testing.T) {
	l1, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l1.Close()
	port := l1.Addr().(*net.TCPAddr).Port
	go func() {
		for {
			c, err := l1.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	o := Options{Networks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/29")}, Port: port, DialTimeout: time.Second}
	open, err := Probe(ctx, o)
	if err != nil || len(open) != 1 || open[0].String() != "127.0.0.1" {
		t.Fatalf("open %v %v", open, err)
	}
	ms, err := Scan(ctx, o)
	if err != nil || len(ms) != 0 {
		t.Fatalf("scan of a non-Talos listener: %v %v", ms, err)
	}
}

func FuzzParseNetworks(f *testing.F) {
	for _, s := range []string{"192.168.1.0/24", "10.0.0.1", "::1/128", "1.2.3.4/0", "a/b", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := ParseNetworks([]string{s})
		if err != nil {
			return
		}
		for _, p := range ps {
			if !p.Addr().Is4() || p != p.Masked() {
				t.Fatalf("%q gave %v", s, p)
			}
		}
		if got, err := targets(Options{Networks: ps}); err == nil && len(got) > MaxHosts {
			t.Fatalf("%q: %d targets", s, len(got))
		}
	})
}

func TestRegistryHosts(t *testing.T) {
	dir := cluster.At(t.TempDir())
	if hs, err := RegistryHosts(dir); err != nil || len(hs) != 0 {
		t.Fatalf("no registry: %v %v", hs, err)
	}
	reg := state.Machines{Machines: []state.Machine{
		{MAC: "52:54:00:00:00:01", IP: "192.168.100.50", Stage: "booted"},
		{MAC: "52:54:00:00:00:02", IP: "192.168.100.51", Stage: "booted"},
		{MAC: "52:54:00:00:00:03", Stage: "dhcp"},
		{MAC: "52:54:00:00:00:04", IP: "192.168.100.50", Stage: "booted"},
	}}
	if err := state.WriteJSON(dir.MachinesState(), reg); err != nil {
		t.Fatal(err)
	}
	hs, err := RegistryHosts(dir)
	if err != nil || len(hs) != 2 || hs[0].String() != "192.168.100.50" || hs[1].String() != "192.168.100.51" {
		t.Fatalf("got %v %v", hs, err)
	}
	if err := os.WriteFile(dir.MachinesState(), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := RegistryHosts(dir); err == nil || !strings.Contains(err.Error(), "machines.json") {
		t.Fatalf("corrupt registry: %v", err)
	}
}
