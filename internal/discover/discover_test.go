package discover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
		if _, err := ParseNetworks([]string{bad}); err == nil || !strings.Contains(err.Error(), "network") {
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

// TargetsFor: one rule for where discover, bootstrap and the interactive
// mode look for machines.
func TestTargetsFor(t *testing.T) {
	hostNet := netip.MustParsePrefix("192.168.100.0/24")
	given := netip.MustParsePrefix("10.1.0.0/24")
	reg := state.Machines{Machines: []state.Machine{
		{MAC: "52:54:00:00:00:01", IP: "192.168.100.50", Stage: "booted"},
		{MAC: "52:54:00:00:00:02", IP: "192.168.100.51", Stage: "booted"},
		{MAC: "52:54:00:00:00:03", Stage: "dhcp"},
		{MAC: "52:54:00:00:00:04", IP: "192.168.100.50", Stage: "booted"},
	}}
	remembered := state.Bootstrap{Nodes: map[string]*state.Node{
		"w1":  {MaintenanceAddress: "10.9.0.7"},
		"cp1": {MaintenanceAddress: "192.168.100.51"}, // also in the registry
		"w2":  {Address: "10.9.0.9"},                  // configured only
	}}
	cases := []struct {
		name       string
		networks   []netip.Prefix
		hostNets   []netip.Prefix
		registry   *state.Machines
		bootstrap  *state.Bootstrap
		wantNets   string
		wantHosts  string
		wantErr    error
		corruptReg bool
	}{
		{name: "given networks win over the host's", networks: []netip.Prefix{given}, hostNets: []netip.Prefix{hostNet}, wantNets: "[10.1.0.0/24]", wantHosts: "[]"},
		{name: "the host's networks by default", hostNets: []netip.Prefix{hostNet}, wantNets: "[192.168.100.0/24]", wantHosts: "[]"},
		{name: "netboot's addresses, once each", hostNets: []netip.Prefix{hostNet}, registry: &reg, wantNets: "[192.168.100.0/24]", wantHosts: "[192.168.100.50 192.168.100.51]"},
		{name: "remembered maintenance addresses", registry: &reg, bootstrap: &remembered, wantNets: "[]", wantHosts: "[192.168.100.50 192.168.100.51 10.9.0.7]"},
		{name: "remembered addresses alone are enough", bootstrap: &remembered, wantNets: "[]", wantHosts: "[192.168.100.51 10.9.0.7]"},
		{name: "nothing to scan", wantErr: ErrNoNetworks},
		{name: "a broken registry is an error", hostNets: []netip.Prefix{hostNet}, corruptReg: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := cluster.At(t.TempDir())
			if c.registry != nil {
				if err := state.WriteJSON(dir.MachinesState(), c.registry); err != nil {
					t.Fatal(err)
				}
			}
			if c.bootstrap != nil {
				if err := state.WriteJSON(dir.BootstrapState(), c.bootstrap); err != nil {
					t.Fatal(err)
				}
			}
			if c.corruptReg {
				if err := os.MkdirAll(dir.State(), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(dir.MachinesState(), []byte("{"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			got, err := targetsFor(dir, c.networks, func() ([]netip.Prefix, error) { return c.hostNets, nil })
			switch {
			case c.corruptReg:
				if err == nil || !strings.Contains(err.Error(), "machines.json") {
					t.Fatalf("corrupt registry: %v", err)
				}
			case c.wantErr != nil:
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("err %v, want %v", err, c.wantErr)
				}
			default:
				if err != nil || fmt.Sprint(got.Networks) != c.wantNets || fmt.Sprint(got.Hosts) != c.wantHosts {
					t.Fatalf("got %v %v %v, want %s %s", got.Networks, got.Hosts, err, c.wantNets, c.wantHosts)
				}
			}
		})
	}
	hostErr := errors.New("netlink refused")
	if _, err := targetsFor(cluster.At(t.TempDir()), nil, func() ([]netip.Prefix, error) { return nil, hostErr }); !errors.Is(err, hostErr) {
		t.Fatalf("host networks error: %v", err)
	}
}

// Find scans where TargetsFor says: here only the address bootstrap
// remembered has a listener (not a Talos node), outside the given network.
func TestFind(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	dir := cluster.At(t.TempDir())
	if err := state.WriteJSON(dir.BootstrapState(), state.Bootstrap{Nodes: map[string]*state.Node{"w1": {MaintenanceAddress: "127.0.0.1"}}}); err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	given := netip.MustParsePrefix("127.0.0.8/30")
	tg, ms, err := Find(ctx, dir, nil, []netip.Prefix{given}, Options{Port: l.Addr().(*net.TCPAddr).Port, DialTimeout: time.Second,
		Log: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil || len(ms) != 0 || fmt.Sprint(tg.Networks, tg.Hosts) != "[127.0.0.8/30] [127.0.0.1]" {
		t.Fatalf("targets %v, machines %v, err %v", tg, ms, err)
	}
	if !strings.Contains(logs.String(), `msg="talos API port open" hosts=1`) {
		t.Fatalf("the remembered address was not probed:\n%s", logs.String())
	}
}
