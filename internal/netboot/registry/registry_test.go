package registry

import (
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/dodai-dev/dodai/internal/macaddr"
	"github.com/dodai-dev/dodai/internal/state"
)

var mac = macaddr.MustParse("52:54:00:12:34:56")

func known(pairs ...any) map[macaddr.MAC]string {
	m := map[macaddr.MAC]string{}
	for i := 0; i+1 < len(pairs); i += 2 {
		switch k := pairs[i].(type) {
		case macaddr.MAC:
			m[k] = pairs[i+1].(string)
		case string:
			m[macaddr.MustParse(k)] = pairs[i+1].(string)
		}
	}
	return m
}

func TestStagesAndBootOnce(t *testing.T) {
	var changes []string
	r, err := New(Options{Known: known(mac, "cp1"), OnChange: func(m state.Machine) { changes = append(changes, m.Stage) }})
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("10.0.0.5")
	steps := []struct {
		src   Source
		stage Stage
		want  Stage
	}{
		{FromDHCP, StageDHCP, StageDHCP},
		{FromDHCP, StageIPXE, StageIPXE},
		{FromDHCP, StageDHCP, StageIPXE}, // iPXE's own proxy REQUEST after its DISCOVER: no step back
		{FromHTTP, StageKernel, StageKernel},
		{FromHTTP, StageInitramfs, StageInitramfs},
		{FromHTTP, StageKernel, StageInitramfs},
		{FromHTTP, StageConfig, StageConfig},
		{FromHTTP, StageIPXE, StageConfig}, // HTTP cannot claim a reboot
		{FromDHCP, StageDHCP, StageInstalled},
		{FromDHCP, StageIPXE, StageInstalled},
	}
	for i, s := range steps {
		m := r.Observe(mac, s.src, ip, "amd64", s.stage)
		if Stage(m.Stage) != s.want {
			t.Fatalf("step %d: %s → %s, want %s", i, s.stage, m.Stage, s.want)
		}
	}
	if !r.Installed(mac) {
		t.Fatal("not installed")
	}
	r.SetInstalled(mac, false)
	if r.Installed(mac) {
		t.Fatal("reinstall did not reset")
	}
	if len(changes) < 6 || changes[len(changes)-1] != "dhcp" {
		t.Fatalf("changes %v", changes)
	}
	// A reboot before the config was fetched starts over at DHCP.
	r.Observe(mac, FromHTTP, ip, "", StageKernel)
	if m := r.Observe(mac, FromDHCP, ip, "", StageDHCP); m.Stage != "dhcp" {
		t.Fatalf("reboot during kernel: %s", m.Stage)
	}
}

func TestConfigAllowed(t *testing.T) {
	r, _ := New(Options{Known: known(mac, "cp1")})
	dhcpIP := netip.MustParseAddr("10.0.0.5")
	other := netip.MustParseAddr("10.0.0.6")
	if r.ConfigAllowed(mac, dhcpIP) {
		t.Fatal("allowed before any DHCP")
	}
	// HTTP observations never bind an address.
	r.Observe(mac, FromHTTP, other, "", StageKernel)
	if r.ConfigAllowed(mac, other) {
		t.Fatal("HTTP-seen address allowed")
	}
	r.Observe(mac, FromDHCP, dhcpIP, "", StageDHCP)
	if !r.ConfigAllowed(mac, dhcpIP) || r.ConfigAllowed(mac, other) {
		t.Fatal("wrong address decision")
	}
	if !r.ConfigAllowed(mac, netip.MustParseAddr("::ffff:10.0.0.5")) {
		t.Fatal("v4-mapped remote address refused")
	}
	// Unknown machines never get a config.
	r.Observe(macaddr.MustParse("02:00:00:00:00:01"), FromDHCP, other, "", StageDHCP)
	if r.ConfigAllowed(macaddr.MustParse("02:00:00:00:00:01"), other) {
		t.Fatal("unknown machine allowed")
	}
}

func TestPersist(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "machines.json")
	r, _ := New(Options{Path: path, Known: known(mac, "cp1")})
	r.Observe(mac, FromDHCP, netip.MustParseAddr("10.0.0.5"), "amd64", StageDHCP)
	r.Observe(macaddr.MustParse("02:00:00:00:00:01"), FromDHCP, netip.MustParseAddr("10.0.0.6"), "arm64", StageIPXE)
	if err := r.Save(); err != nil {
		t.Fatal(err)
	}
	var f state.Machines
	if err := state.ReadJSON(path, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Machines) != 2 || f.Machines[0].Node != "cp1" || f.Machines[0].IP != "10.0.0.5" || f.Machines[1].Arch != "arm64" {
		t.Fatalf("file: %+v", f.Machines)
	}
	r2, err := New(Options{Path: path, Known: known(mac, "cp1")})
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := r2.Get(mac); !ok || m.Stage != "dhcp" {
		t.Fatalf("reloaded %+v", m)
	}
	// Reloaded addresses are not trusted for config access: a new DHCP
	// exchange must bind them.
	if r2.ConfigAllowed(mac, netip.MustParseAddr("10.0.0.5")) {
		t.Fatal("address from file trusted")
	}
}

func TestConfigAllowedOtherNIC(t *testing.T) {
	nic2, stranger := macaddr.MustParse("52:54:00:12:34:57"), macaddr.MustParse("52:54:00:99:99:99")
	r, _ := New(Options{Known: known(mac, "cp1", nic2, "cp1", stranger, "cp2")})
	ip2 := netip.MustParseAddr("10.0.0.9")
	// cp1 netbooted via mac, but its OS came up on nic2 with another address.
	r.Observe(mac, FromDHCP, netip.MustParseAddr("10.0.0.5"), "", StageIPXE)
	r.Observe(nic2, FromDHCP, ip2, "", "")
	if !r.ConfigAllowed(mac, ip2) {
		t.Fatal("second NIC of the same node refused")
	}
	// Another node's address never works.
	r.Observe(stranger, FromDHCP, netip.MustParseAddr("10.0.0.7"), "", StageDHCP)
	if r.ConfigAllowed(mac, netip.MustParseAddr("10.0.0.7")) || r.ConfigAllowed(stranger, ip2) {
		t.Fatal("address of another node accepted")
	}
}

func TestUnknownMachinesBounded(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	r, _ := New(Options{Known: known(mac, "cp1"), MaxUnknown: 3, Now: func() time.Time { return now }})
	r.Observe(mac, FromDHCP, netip.Addr{}, "", StageDHCP)
	for i := 0; i < 10; i++ {
		now = now.Add(time.Second)
		r.Observe(macaddr.MAC{2, 0, 0, 0, 0, byte(i)}, FromDHCP, netip.Addr{}, "", StageDHCP)
	}
	ms := r.List()
	if len(ms) != 4 || ms[0].Node != "cp1" {
		t.Fatalf("want cp1 + 3 newest unknown, got %+v", ms)
	}
	for _, m := range ms[1:] {
		if m.MAC < "02:00:00:00:00:07" {
			t.Fatalf("kept an old unknown machine: %+v", ms)
		}
	}
}

// TestInstalledAfterBootstrapApplied: without config serving (proxy mode),
// dodai bootstrap applies the config over the Talos API; the machine's next
// netboot after that is the reboot after the install and boots from disk.
// A reboot before the config was applied, or after a reinstall request,
// netboots Talos again.
func TestInstalledAfterBootstrapApplied(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	var applied time.Time
	r, _ := New(Options{Known: known(mac, "cp1"), Now: func() time.Time { return now },
		ConfigApplied: func(node string) (time.Time, bool) { return applied, node == "cp1" && !applied.IsZero() }})
	ip := netip.MustParseAddr("10.0.0.5")
	boot := func() {
		r.Observe(mac, FromDHCP, ip, "amd64", StageDHCP)
		now = now.Add(time.Second)
		r.Observe(mac, FromDHCP, ip, "amd64", StageIPXE)
		r.Observe(mac, FromHTTP, ip, "amd64", StageKernel)
		r.Observe(mac, FromHTTP, ip, "amd64", StageInitramfs)
		now = now.Add(time.Minute)
	}
	boot()
	// Rebooted in maintenance mode before bootstrap: netboots Talos again.
	if m := r.Observe(mac, FromDHCP, ip, "amd64", StageDHCP); m.Stage != "dhcp" {
		t.Fatalf("reboot before apply: %s", m.Stage)
	}
	now = now.Add(time.Second)
	r.Observe(mac, FromDHCP, ip, "amd64", StageIPXE)
	r.Observe(mac, FromHTTP, ip, "amd64", StageInitramfs)
	now = now.Add(time.Minute)
	applied = now // dodai bootstrap applies the config
	now = now.Add(time.Minute)
	// Talos' own DHCP renewals (no stage) change nothing.
	r.Observe(mac, FromDHCP, ip, "", "")
	if m := r.Observe(mac, FromDHCP, ip, "amd64", StageDHCP); m.Stage != "installed" {
		t.Fatalf("netboot after apply: %s", m.Stage)
	}
	// Reinstall: the old apply no longer counts.
	now = now.Add(time.Minute)
	r.SetInstalled(mac, false)
	now = now.Add(time.Second)
	boot()
	if m := r.Observe(mac, FromDHCP, ip, "amd64", StageDHCP); m.Stage != "dhcp" {
		t.Fatalf("reboot after reinstall request, before the new apply: %s", m.Stage)
	}
	// The boot start survives a restart of the server (machines.json).
	path := filepath.Join(t.TempDir(), "machines.json")
	r.path = path
	r.dirty = true
	if err := r.Save(); err != nil {
		t.Fatal(err)
	}
	r2, _ := New(Options{Path: path, Known: known(mac, "cp1"), Now: func() time.Time { return now },
		ConfigApplied: func(string) (time.Time, bool) { return applied, true }})
	r2.Observe(mac, FromHTTP, ip, "amd64", StageInitramfs)
	if m := r2.Observe(mac, FromDHCP, ip, "amd64", StageDHCP); m.Stage != "dhcp" {
		t.Fatalf("after restart, an apply older than the boot counted: %s", m.Stage)
	}
}
