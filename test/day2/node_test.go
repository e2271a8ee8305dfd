package day2_test

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/state"
	"github.com/dodai-dev/dodai/test/faketalos"
)

// callTime returns when a node last served a method successfully.
func callTime(n *faketalos.Node, method string) (time.Time, string) {
	var at time.Time
	var detail string
	for _, c := range n.Calls() {
		if c.Method == method && c.Code == 0 {
			at, detail = c.Time, c.Detail
		}
	}
	return at, detail
}

func (tc *testCluster) nodeGone(ctx context.Context, t *testing.T, name string) {
	t.Helper()
	if _, err := tc.Kube.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("Kubernetes Node %s still there: %v", name, err)
	}
}

func (tc *testCluster) members() []string {
	var out []string
	for _, m := range tc.Group.EtcdMembers() {
		out = append(out, m.Node)
	}
	slices.Sort(out)
	return out
}

func TestNodeRemove(t *testing.T) {
	ctx := testCtx(t, 5*time.Minute)
	tc := newCluster(t, 3, 1)

	// A worker: drained, reset (STATE and EPHEMERAL, powered off), its Node
	// deleted, forgotten; the command says where it is in cluster.yaml.
	code, out, errOut := tc.dodai(ctx, "node", "remove", "w1", "--poll-interval", "20ms")
	if code != 0 {
		t.Fatalf("remove w1: exit %d\n%s%s", code, out, errOut)
	}
	show(t, "node remove w1", out, errOut)
	if _, d := callTime(tc.Nodes["w1"], "Reset"); d != "graceful=true reboot=false wipe=STATE,EPHEMERAL mode=ALL" {
		t.Fatalf("w1 reset: %q", d)
	}
	if !strings.Contains(out, "cordoned and drained") || !strings.Contains(out, "Kubernetes Node deleted") ||
		!regexp.MustCompile(`delete node w1 from the cluster file \(\S+cluster\.yaml:\d+, spec\.nodes\[3\]\)`).MatchString(errOut) {
		t.Fatalf("remove w1 output:\n%s%s", out, errOut)
	}
	tc.nodeGone(ctx, t, "w1")
	if st, _ := state.ReadBootstrap(cluster.At(tc.Dir).BootstrapState()); st.Nodes["w1"] != nil {
		t.Fatal("w1 still in bootstrap state")
	}
	// The machine powers off after its API stopped answering (which is
	// what remove waits for): give it a moment, as a real one takes.
	for deadline := time.Now().Add(10 * time.Second); tc.Nodes["w1"].Phase() != "off"; {
		if time.Now().After(deadline) {
			t.Fatalf("w1 phase %s, want off", tc.Nodes["w1"].Phase())
		}
		time.Sleep(20 * time.Millisecond)
	}

	// 3 → 2 is refused before anything changes; --force does it.
	code, out, errOut = tc.dodai(ctx, "node", "remove", "cp3", "--poll-interval", "20ms")
	if code != 1 || !strings.Contains(errOut, "refusing to remove cp3") || !strings.Contains(errOut, "an even membership of 2") || !strings.Contains(errOut, "--force") {
		t.Fatalf("remove cp3: exit %d\n%s", code, errOut)
	}
	show(t, "node remove cp3", out, errOut)
	if n := tc.Nodes["cp3"]; n.Count("Reset")+n.Count("EtcdLeaveCluster") != 0 {
		t.Fatal("cp3 touched by a refused removal")
	}
	if got := tc.members(); !slices.Equal(got, []string{"cp1", "cp2", "cp3"}) {
		t.Fatalf("members %v", got)
	}
}

func TestNodeRemoveFiveToThree(t *testing.T) {
	ctx := testCtx(t, 5*time.Minute)
	tc := newCluster(t, 5, 0)
	for _, name := range []string{"cp5", "cp4"} {
		code, out, errOut := tc.dodai(ctx, "node", "remove", name, "--poll-interval", "20ms")
		if code != 0 {
			t.Fatalf("remove %s: exit %d\n%s%s", name, code, out, errOut)
		}
		n := tc.Nodes[name]
		left, _ := callTime(n, "EtcdLeaveCluster")
		reset, _ := callTime(n, "Reset")
		if left.IsZero() || reset.IsZero() || !left.Before(reset) {
			t.Fatalf("%s: leave at %v, reset at %v: not leave-before-reset", name, left, reset)
		}
		tc.nodeGone(ctx, t, name)
	}
	if got := tc.members(); !slices.Equal(got, []string{"cp1", "cp2", "cp3"}) {
		t.Fatalf("members %v", got)
	}
	// The leader hands leadership over before it leaves.
	code, _, errOut := tc.dodai(ctx, "node", "remove", "cp1", "--poll-interval", "20ms")
	if code != 1 || !strings.Contains(errOut, "refusing to remove cp1") {
		t.Fatalf("3 → 2: exit %d\n%s", code, errOut)
	}
	code, out, errOut := tc.dodai(ctx, "node", "remove", "cp1", "--force", "--poll-interval", "20ms")
	if code != 0 || !strings.Contains(out, "etcd member removed by ID") || !strings.Contains(errOut, "still answers the Talos API") {
		t.Fatalf("--force on a live cp1: exit %d\n%s%s", code, out, errOut)
	}
	show(t, "node remove cp1 --force", out, errOut)
	if got := tc.members(); !slices.Equal(got, []string{"cp2", "cp3"}) {
		t.Fatalf("members %v", got)
	}
	// The last two: 2 → 1 allowed, 1 → 0 never.
	if code, out, errOut := tc.dodai(ctx, "node", "remove", "cp3", "--poll-interval", "20ms"); code != 0 {
		t.Fatalf("2 → 1: exit %d\n%s%s", code, out, errOut)
	}
	code, _, errOut = tc.dodai(ctx, "node", "remove", "cp2", "--force", "--poll-interval", "20ms")
	if code != 1 || !strings.Contains(errOut, "last etcd member") {
		t.Fatalf("1 → 0: exit %d\n%s", code, errOut)
	}
}

func TestNodeRemoveDead(t *testing.T) {
	ctx := testCtx(t, 5*time.Minute)
	tc := newCluster(t, 3, 1)
	// cp3 and w1 die.
	tc.Nodes["cp3"].Close()
	tc.Nodes["w1"].Close()
	code, _, errOut := tc.dodai(ctx, "node", "remove", "cp3", "--poll-interval", "20ms")
	if code != 1 || !strings.Contains(errOut, "does not answer the Talos API") || !strings.Contains(errOut, "use --force") {
		t.Fatalf("dead cp3 without --force: exit %d\n%s", code, errOut)
	}
	var id uint64
	for _, m := range tc.Group.EtcdMembers() {
		if m.Node == "cp3" {
			id = m.ID
		}
	}
	code, out, errOut := tc.dodai(ctx, "node", "remove", "cp3", "--force", "--poll-interval", "20ms")
	if code != 0 {
		t.Fatalf("dead cp3 --force: exit %d\n%s%s", code, out, errOut)
	}
	ev := tc.Group.EtcdEvents()
	if last := ev[len(ev)-1]; last.Kind != "remove" || last.ID != id || last.Via == "cp3" {
		t.Fatalf("last etcd event %+v", last)
	}
	tc.nodeGone(ctx, t, "cp3")
	if code, out, errOut := tc.dodai(ctx, "node", "remove", "w1", "--force", "--poll-interval", "20ms"); code != 0 {
		t.Fatalf("dead w1 --force: exit %d\n%s%s", code, out, errOut)
	}
	tc.nodeGone(ctx, t, "w1")
	if got := tc.members(); !slices.Equal(got, []string{"cp1", "cp2"}) {
		t.Fatalf("members %v", got)
	}
}

func TestNodeReinstall(t *testing.T) {
	ctx := testCtx(t, 5*time.Minute)
	tc := newCluster(t, 3, 1)
	reinstall := func(name string) (int, string, string) {
		return tc.dodai(ctx, "node", "reinstall", name, "--network", tc.Net, "--poll-interval", "20ms")
	}

	// A worker: drained, reset to maintenance mode (STATE and EPHEMERAL,
	// reboot), its Node deleted, installed again with the current config.
	code, out, errOut := reinstall("w1")
	if code != 0 {
		t.Fatalf("reinstall w1: exit %d\n%s%s", code, out, errOut)
	}
	show(t, "node reinstall w1", out, errOut)
	if _, d := callTime(tc.Nodes["w1"], "Reset"); d != "graceful=true reboot=true wipe=STATE,EPHEMERAL mode=ALL" {
		t.Fatalf("w1 reset: %q", d)
	}
	if n := len(tc.Nodes["w1"].Applied()); n != 2 || tc.Nodes["w1"].Phase() != "running" {
		t.Fatalf("w1: %d configs applied, phase %s", n, tc.Nodes["w1"].Phase())
	}
	for _, s := range []string{"cordoned and drained", "Talos reset", "Kubernetes Node deleted", "back in maintenance mode", "installed again"} {
		if !strings.Contains(out, s) {
			t.Fatalf("output lacks %q:\n%s", s, out)
		}
	}
	if st, _ := state.ReadBootstrap(cluster.At(tc.Dir).BootstrapState()); st.Nodes["w1"] == nil || st.Nodes["w1"].Disk == nil || st.Nodes["w1"].Applied == nil {
		t.Fatalf("w1 bootstrap record after the reinstall: %+v", st.Nodes["w1"])
	}

	// A control plane leaves etcd before the reset and comes back as a new,
	// healthy member before the command returns.
	var oldID uint64
	for _, m := range tc.Group.EtcdMembers() {
		if m.Node == "cp3" {
			oldID = m.ID
		}
	}
	if code, out, errOut := reinstall("cp3"); code != 0 {
		t.Fatalf("reinstall cp3: exit %d\n%s%s", code, out, errOut)
	}
	left, _ := callTime(tc.Nodes["cp3"], "EtcdLeaveCluster")
	reset, _ := callTime(tc.Nodes["cp3"], "Reset")
	if left.IsZero() || !left.Before(reset) {
		t.Fatalf("cp3: leave at %v, reset at %v", left, reset)
	}
	var newID uint64
	for _, m := range tc.Group.EtcdMembers() {
		if m.Node == "cp3" {
			newID = m.ID
		}
	}
	if got := tc.members(); !slices.Equal(got, []string{"cp1", "cp2", "cp3"}) || newID == 0 || newID == oldID {
		t.Fatalf("members %v, cp3 member %x (was %x)", got, newID, oldID)
	}

	// The disk-safety rule of bootstrap holds: the machine came back with
	// another disk, so it is reset but not installed to the new disk.
	inv := faketalos.DefaultInventory("talos-w1", tc.macOf(t, "w1"))
	inv.Disks[0].Serial, inv.Disks[0].WWID = "REPLACED", "eui.replaced"
	tc.Nodes["w1"].SetInventory(inv)
	code, out, errOut = reinstall("w1")
	if code == 0 || !strings.Contains(errOut, "refusing to install to a different disk") {
		t.Fatalf("reinstall onto a swapped disk: exit %d\n%s%s", code, out, errOut)
	}
	if n := len(tc.Nodes["w1"].Applied()); n != 2 {
		t.Fatalf("w1 got a config on the swapped disk (%d applied)", n)
	}
}

// macOf is the node's first MAC in the cluster file.
func (tc *testCluster) macOf(t testing.TB, name string) string {
	t.Helper()
	for _, n := range tc.load(t).Cluster.Spec.Nodes {
		if n.Name == name && len(n.MACs) > 0 {
			return n.MACs[0]
		}
	}
	t.Fatalf("no MAC for %s", name)
	return ""
}
