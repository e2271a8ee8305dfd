package etcd_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"

	"github.com/dodai-dev/dodai/internal/etcd"
)

func TestStatusAndMemberOperations(t *testing.T) {
	if testing.Short() {
		t.Skip("starts fake Talos nodes")
	}
	ctx := testCtx(t, 2*time.Minute)
	cl, c := startCluster(t, 3, 1, nil)

	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Members) != 3 || !st.HasQuorum || st.Quorum != 2 || st.HealthyMembers != 3 || st.Leader != "cp1" || len(st.NotMembers) != 0 {
		t.Fatalf("status: %+v", st)
	}
	for i, m := range st.Members {
		want := []string{"cp1", "cp2", "cp3"}[i]
		if m.Node != want || m.Name != want || !m.Healthy || m.Status == nil || m.Status.DBSize == 0 || len(m.IDHex) != 16 || m.Leader != (i == 0) {
			t.Fatalf("member %d: %+v", i, m)
		}
	}

	// An alarm makes its member unhealthy, named.
	cl.Group.SetEtcdAlarm(cl.Node("cp2"), "NOSPACE")
	st, _ = c.Status(ctx)
	if m := st.Member("cp2"); m.Healthy || len(m.Alarms) != 1 || m.Alarms[0] != "NOSPACE" {
		t.Fatalf("alarm: %+v", m)
	}

	// A member down: named among the nodes without a healthy member; with
	// cp2's alarm the cluster has lost its healthy quorum.
	cl.Group.SetEtcdDown(cl.Node("cp3"), true)
	st, _ = c.Status(ctx)
	if m := st.Member("cp3"); m == nil || m.Healthy || !strings.Contains(m.Problem, "etcd is not running") {
		t.Fatalf("down member: %+v", m)
	}
	if st.HasQuorum || len(st.NotMembers) != 2 || st.NotMembers[1].Node != "cp3" {
		t.Fatalf("status with two bad members: %+v", st)
	}
	if r := st.CheckRemove(st.Member("cp3")); r.Err == nil || !strings.Contains(r.Err.Error(), "no healthy quorum") {
		t.Fatalf("remove without quorum: %+v", r)
	}
	cl.Group.SetEtcdAlarm(cl.Node("cp2"), "") // no-op alarm name: still NOSPACE
	if cc, err := cl.Client(ctx, "cp2"); err == nil {
		if _, err := cc.EtcdAlarmDisarm(ctx); err != nil {
			t.Fatal(err)
		}
		cc.Close()
	}
	st, _ = c.Status(ctx)
	if !st.HasQuorum || st.HealthyMembers != 2 {
		t.Fatalf("after disarm: %+v", st)
	}
	if r := st.CheckRemove(st.Member("cp1")); r.Err == nil || !strings.Contains(r.Err.Error(), "below the quorum") {
		t.Fatalf("removing a healthy member with one down: %+v", r)
	}
	if err := st.CheckDisrupt(st.Member("cp2")); err == nil {
		t.Fatal("disrupting a healthy member with one down allowed")
	}

	// Forfeit moves leadership off cp1.
	to, err := c.ForfeitLeadership(ctx, "cp1")
	if err != nil || to != "cp2" {
		t.Fatalf("forfeit: %q %v", to, err)
	}
	if to, err := c.ForfeitLeadership(ctx, "cp1"); err != nil || to != "" {
		t.Fatalf("forfeit by a follower: %q %v", to, err)
	}
	st, _ = c.Status(ctx)
	if st.Leader != "cp2" {
		t.Fatalf("leader %q", st.Leader)
	}

	// The dead member is removed by ID through a healthy one; removing it
	// again is "member not found".
	id := st.Member("cp3").ID
	if err := c.RemoveMember(ctx, "cp1", id); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveMember(ctx, "cp1", id); err == nil || !strings.Contains(err.Error(), "member not found") {
		t.Fatalf("second remove: %v", err)
	}
	st, _ = c.Status(ctx)
	if len(st.Members) != 2 || !st.HasQuorum || st.Member("cp3") != nil {
		t.Fatalf("after remove: %+v", st)
	}

	// Leaving: etcd's strict reconfiguration check refuses the last member.
	if err := c.Leave(ctx, "cp2"); err != nil {
		t.Fatal(err)
	}
	if err := c.Leave(ctx, "cp1"); err == nil || !strings.Contains(err.Error(), "not enough started members") {
		t.Fatalf("last member left: %v", err)
	}
	var kinds []string
	for _, e := range cl.Group.EtcdEvents() {
		kinds = append(kinds, e.Kind+":"+e.Member)
	}
	if got := strings.Join(kinds, " "); got != "bootstrap:cp1 join:cp2 join:cp3 forfeit:cp1 remove:cp3 leave:cp2" {
		t.Fatalf("events: %s", got)
	}

	// Workers have no etcd.
	w := &etcd.Client{Talosconfig: cl.Talosconfig, Port: cl.Port, Nodes: []etcd.Node{{Name: "w1", Address: cl.Addresses["w1"]}}}
	defer w.Close()
	st, err = w.Status(ctx)
	if err != nil || st.HasQuorum || len(st.NotMembers) != 1 || !strings.Contains(st.NotMembers[0].Problem, "only available on control plane nodes") {
		t.Fatalf("worker: %+v %v", st, err)
	}
}

func TestWaitHealthyMember(t *testing.T) {
	if testing.Short() {
		t.Skip("starts fake Talos nodes")
	}
	ctx := testCtx(t, time.Minute)
	cl, c := startCluster(t, 3, 0, nil)
	// No join happens until the test allows it (a delay longer than the
	// test), so what the waits see does not depend on the machine's speed.
	cl.Group.SetEtcdJoinDelay(time.Hour)
	// cp3 leaves: its etcd stays stopped until the machine reboots.
	if err := c.Leave(ctx, "cp3"); err != nil {
		t.Fatal(err)
	}
	// Three status rounds see the member gone; the wait is then given up
	// and names the last problem.
	waitCtx, give := context.WithCancel(ctx)
	var seen []string
	_, err := c.WaitHealthyMember(waitCtx, "cp3", 10*time.Millisecond, func(p string) {
		if seen = append(seen, p); len(seen) == 3 {
			give()
		}
	})
	give()
	if err == nil || !strings.Contains(err.Error(), "etcd member of cp3 not healthy in time: failed to query etcd status: etcd is not running") {
		t.Fatalf("a node that left became healthy: %v", err)
	}
	for _, p := range seen {
		if !strings.Contains(p, "etcd is not running") {
			t.Fatalf("progress %q", seen)
		}
	}
	// Reset with EPHEMERAL wiped and a reboot: it joins again, as a new
	// member, once joins are allowed (after the wait reported two rounds
	// without it).
	cc, err := cl.Client(ctx, "cp3")
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if err := cc.ResetGeneric(ctx, &machine.ResetRequest{Reboot: true, SystemPartitionsToWipe: []*machine.ResetPartitionSpec{{Label: "EPHEMERAL", Wipe: true}}}); err != nil {
		t.Fatal(err)
	}
	var progress []string
	m, err := c.WaitHealthyMember(ctx, "cp3", 10*time.Millisecond, func(p string) {
		if progress = append(progress, p); len(progress) == 2 {
			cl.Group.SetEtcdJoinDelay(0)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(progress) < 2 {
		t.Fatalf("healthy before joins were allowed; progress %q", progress)
	}
	if m.Node != "cp3" || !m.Healthy {
		t.Fatalf("member %+v", m)
	}
	if n := cl.Node("cp3").Count("Reset"); n != 1 {
		t.Fatalf("resets: %d", n)
	}
}
