package registry

import (
	"net/netip"
	"testing"
	"time"

	"github.com/dodai-dev/dodai/internal/state"
)

// Merge: records another boot server wrote, against this one's, by the
// rules of its comment.
func TestMerge(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC)
	rec := func(stage Stage, boot, seen time.Time, reinstall time.Time) state.Machine {
		return state.Machine{MAC: mac.String(), Stage: string(stage), BootStarted: boot, LastSeen: seen, Reinstall: reinstall, IP: "10.0.0.9", Arch: "amd64"}
	}
	var zero time.Time
	for _, c := range []struct {
		name          string
		ours, theirs  state.Machine
		applied       string // "applied": the controller applied cp1's config 2 minutes in
		want          Stage
		wantBoot      time.Time
		wantChanged   bool
		wantReinstall time.Time
	}{
		{"same boot, they got further", rec(StageDHCP, t0, t0, zero), rec(StageKernel, t0.Add(2*time.Second), t0.Add(3*time.Second), zero), "", StageKernel, t0, true, zero},
		{"same boot, we got further", rec(StageConfig, t0, t0.Add(time.Minute), zero), rec(StageIPXE, t0, t0.Add(time.Second), zero), "", StageConfig, t0, false, zero},
		{"we never saw the boot start: theirs", rec(StageIPXE, zero, t0, zero), rec(StageKernel, t0, t0.Add(3*time.Second), zero), "", StageKernel, t0, true, zero},
		{"either installed", rec(StageDHCP, t0, t0, zero), rec(StageInstalled, t0.Add(-time.Hour), t0.Add(-time.Hour), zero), "", StageInstalled, t0, true, zero},
		{"their later boot", rec(StageKernel, t0, t0, zero), rec(StageIPXE, t0.Add(time.Minute), t0.Add(time.Minute), zero), "", StageIPXE, t0.Add(time.Minute), true, zero},
		{"their later boot after our config fetch: installed", rec(StageConfig, t0, t0, zero), rec(StageDHCP, t0.Add(5*time.Minute), t0.Add(5*time.Minute), zero), "", StageInstalled, t0, true, zero},
		{"their later boot after the controller applied: installed", rec(StageInitramfs, t0, t0, zero), rec(StageDHCP, t0.Add(5*time.Minute), t0.Add(5*time.Minute), zero), "applied", StageInstalled, t0, true, zero},
		{"their earlier boot fetched the config: installed", rec(StageDHCP, t0.Add(5*time.Minute), t0.Add(5*time.Minute), zero), rec(StageConfig, t0, t0.Add(time.Minute), zero), "", StageInstalled, t0.Add(5 * time.Minute), true, zero},
		{"their reinstall wins over our installed", rec(StageInstalled, t0, t0, zero), rec(StageDHCP, t0.Add(time.Hour), t0.Add(time.Hour), t0.Add(time.Hour)), "", StageDHCP, t0.Add(time.Hour), true, t0.Add(time.Hour)},
		{"their record from before our reinstall changes no stage", rec(StageDHCP, t0.Add(time.Hour), t0.Add(time.Hour), t0.Add(time.Hour)), rec(StageInstalled, t0, t0.Add(2*time.Hour), zero), "", StageDHCP, t0.Add(time.Hour), true, t0.Add(time.Hour)},
		{"the store's whole seconds are the same reinstall", rec(StageDHCP, t0.Add(time.Hour+300*time.Millisecond), t0.Add(time.Hour), t0.Add(time.Hour+300*time.Millisecond)), rec(StageKernel, t0.Add(time.Hour), t0.Add(time.Hour+time.Second), t0.Add(time.Hour)), "", StageKernel, t0.Add(time.Hour + 300*time.Millisecond), true, t0.Add(time.Hour + 300*time.Millisecond)},
	} {
		t.Run(c.name, func(t *testing.T) {
			var applied func(string) (time.Time, bool)
			if c.applied != "" {
				applied = func(string) (time.Time, bool) { return t0.Add(2 * time.Minute), true }
			}
			changes := 0
			r, err := New(Options{Known: known(mac, "cp1"), Seed: []state.Machine{c.ours}, ConfigApplied: applied, OnChange: func(state.Machine) { changes++ }})
			if err != nil {
				t.Fatal(err)
			}
			got, changed := r.Merge(c.theirs)
			if Stage(got.Stage) != c.want || !got.BootStarted.Equal(c.wantBoot) || changed != c.wantChanged || !got.Reinstall.Equal(c.wantReinstall) {
				t.Errorf("merged %+v changed %v; want stage %s, boot %s, changed %v, reinstall %s", got, changed, c.want, c.wantBoot, c.wantChanged, c.wantReinstall)
			}
			if got.Node != "cp1" {
				t.Errorf("node %q: the cluster file names it, not the record", got.Node)
			}
			if changes != 0 {
				t.Error("Merge called OnChange: the record would echo between replicas")
			}
		})
	}
}

// A merged record never grants config access: only this server's own DHCP
// exchange binds the boot address. An unknown MAC is added, counted among
// the bounded unknown machines.
func TestMergeNewMachine(t *testing.T) {
	r, _ := New(Options{Known: known(mac, "cp1"), MaxUnknown: 1})
	m, changed := r.Merge(state.Machine{MAC: mac.String(), Stage: "kernel", IP: "10.0.0.5", Node: "spoofed"})
	if !changed || m.Node != "cp1" || m.Stage != "kernel" {
		t.Fatalf("merged %+v %v", m, changed)
	}
	if r.ConfigAllowed(mac, netip.MustParseAddr("10.0.0.5")) {
		t.Error("a merged record's address may fetch the config")
	}
	r.Merge(state.Machine{MAC: "52:54:00:00:00:0a", Stage: "dhcp", LastSeen: time.Now()})
	r.Merge(state.Machine{MAC: "52:54:00:00:00:0b", Stage: "dhcp", LastSeen: time.Now().Add(time.Second)})
	if r.Len() != 2 {
		t.Errorf("%d machines, want cp1 and the one newest unknown", r.Len())
	}
	if _, changed := r.Merge(state.Machine{MAC: "not a mac"}); changed {
		t.Error("a bad MAC changed the registry")
	}
}

// A reinstall request stamps the record, so replicas can order it.
func TestReinstallStamped(t *testing.T) {
	now := time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC)
	r, _ := New(Options{Known: known(mac, "cp1"), Now: func() time.Time { return now }})
	r.SetInstalled(mac, true)
	if m := r.SetInstalled(mac, false); !m.Reinstall.Equal(now) || !m.BootStarted.Equal(now) {
		t.Errorf("reinstall: %+v", m)
	}
}
