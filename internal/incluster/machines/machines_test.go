package machines_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dodai-dev/dodai/api/v1alpha1"
	"github.com/dodai-dev/dodai/internal/incluster/incltest"
	"github.com/dodai-dev/dodai/internal/incluster/machines"
	"github.com/dodai-dev/dodai/internal/state"
)

// Put against the real apiserver: replica a wrote the Machine, then
// replica b's record arrives. Within one boot the stage never moves back
// (a slower replica's older record changes nothing, not even the boot
// server); a later boot starts over, a boot after the config fetch is
// "installed", installed stays installed, and only a later reinstall
// request moves an installed machine back to dhcp.
func TestPutNeverMovesTheStageBack(t *testing.T) {
	kc := incltest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	t0 := time.Now().UTC().Truncate(time.Second)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	var zero time.Time
	rec := func(stage string, boot, seen, reinstall time.Time, ip string) state.Machine {
		return state.Machine{Stage: stage, BootStarted: boot, LastSeen: seen, Reinstall: reinstall, IP: ip, Arch: "amd64"}
	}
	for i, c := range []struct {
		name       string
		stored     state.Machine // written by a
		record     state.Machine // then written by b
		wantStage  string
		wantBoot   time.Time
		wantServer string
		wantIP     string
		wantWrites int // b's writes
	}{
		{"same boot, b's older record of an earlier stage",
			rec("kernel", at(0), at(5*time.Second), zero, "10.0.0.1"), rec("dhcp", at(time.Second), at(time.Second), zero, "10.0.0.2"),
			"kernel", at(0), "a", "10.0.0.1", 0},
		{"same boot, b's newer record of an earlier stage",
			rec("kernel", at(0), at(5*time.Second), zero, "10.0.0.1"), rec("ipxe", at(time.Second), at(6*time.Second), zero, "10.0.0.2"),
			"kernel", at(0), "b", "10.0.0.2", 1},
		{"same boot, b's older record of a further stage: b's stage, and b names itself so a hears it",
			rec("dhcp", at(0), at(6*time.Second), zero, "10.0.0.1"), rec("kernel", at(time.Second), at(5*time.Second), zero, "10.0.0.2"),
			"kernel", at(0), "b", "10.0.0.1", 1},
		{"same boot, b got further",
			rec("dhcp", at(0), at(0), zero, "10.0.0.1"), rec("initramfs", at(2*time.Second), at(8*time.Second), zero, "10.0.0.1"),
			"initramfs", at(0), "b", "10.0.0.1", 1},
		{"a later boot starts over",
			rec("kernel", at(0), at(5*time.Second), zero, "10.0.0.1"), rec("dhcp", at(5*time.Minute), at(5*time.Minute), zero, "10.0.0.3"),
			"dhcp", at(5 * time.Minute), "b", "10.0.0.3", 1},
		{"a later boot after the config fetch: installed",
			rec("config", at(0), at(time.Minute), zero, "10.0.0.1"), rec("dhcp", at(5*time.Minute), at(5*time.Minute), zero, "10.0.0.1"),
			"installed", at(0), "b", "10.0.0.1", 1},
		{"installed stays installed",
			rec("installed", at(0), at(time.Minute), zero, "10.0.0.1"), rec("dhcp", at(5*time.Minute), at(5*time.Minute), zero, "10.0.0.1"),
			"installed", at(0), "b", "10.0.0.1", 1},
		{"a later reinstall request starts over",
			rec("installed", at(0), at(time.Minute), zero, "10.0.0.1"), rec("dhcp", at(time.Hour), at(time.Hour), at(time.Hour), "10.0.0.1"),
			"dhcp", at(time.Hour), "b", "10.0.0.1", 1},
		{"a record from before the reinstall request changes no stage",
			rec("dhcp", at(time.Hour), at(time.Hour), at(time.Hour), "10.0.0.1"), rec("installed", at(0), at(2*time.Hour), zero, "10.0.0.1"),
			"dhcp", at(time.Hour), "b", "10.0.0.1", 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			mac := fmt.Sprintf("52:54:00:00:02:%02x", i)
			c.stored.MAC, c.record.MAC = mac, mac
			a := &machines.Store{Client: kc.Client, Namespace: incltest.Namespace, Server: "a"}
			b := &machines.Store{Client: kc.Client, Namespace: incltest.Namespace, Server: "b"}
			if _, err := a.Put(ctx, c.stored, false); err != nil {
				t.Fatal(err)
			}
			n, err := b.Put(ctx, c.record, false)
			if err != nil {
				t.Fatal(err)
			}
			var m v1alpha1.Machine
			if err := kc.Client.Get(ctx, client.ObjectKey{Namespace: incltest.Namespace, Name: v1alpha1.MachineName(mac)}, &m); err != nil {
				t.Fatal(err)
			}
			st := m.Status
			if st.Stage != c.wantStage || st.BootStarted == nil || !st.BootStarted.Time.Equal(c.wantBoot) || st.BootServer != c.wantServer || st.IP != c.wantIP || n != c.wantWrites {
				t.Errorf("stage %s, boot %v, server %s, ip %s, %d writes; want %s, %s, %s, %s, %d",
					st.Stage, st.BootStarted, st.BootServer, st.IP, n, c.wantStage, c.wantBoot, c.wantServer, c.wantIP, c.wantWrites)
			}
			if want := c.record.Reinstall; !want.IsZero() && c.wantStage == "dhcp" && (st.Reinstall == nil || !st.Reinstall.Time.Equal(want)) {
				t.Errorf("reinstall %v, want %v", st.Reinstall, want)
			}
		})
	}
}
