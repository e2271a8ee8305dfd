package bootstrap_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dodai-dev/dodai/internal/cli"
	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/phase"
	"github.com/dodai-dev/dodai/internal/talos"
	"github.com/dodai-dev/dodai/internal/talos/compat"
	"github.com/dodai-dev/dodai/internal/testutil"
	"github.com/dodai-dev/dodai/test/faketalos"
)

// dodai runs the CLI in-process and returns its exit code and output.
func dodai(ctx context.Context, t testing.TB, tc *testCluster, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	full := append([]string{"-C", tc.Dir}, args...)
	code := cli.Run(ctx, full, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func bootstrapArgs(tc *testCluster, extra ...string) []string {
	return append([]string{"bootstrap", "--network", tc.Net.String(), "--talos-port", strconv.Itoa(tc.Port), "--poll-interval", "10ms"}, extra...)
}

// snapshot returns the files bootstrap may write.
func snapshot(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	l := cluster.At(dir)
	for _, f := range []string{l.Secrets(), l.Talosconfig(), l.Kubeconfig(), l.ClusterFile(), l.BootstrapState()} {
		b, err := os.ReadFile(f)
		if err == nil {
			out[f] = string(b)
		}
	}
	return out
}

func TestEndToEnd(t *testing.T) {
	ctx := testutil.Context(t, 3*time.Minute)
	kube := startKube(t)
	tc := newCluster(t, clusterOpts{CPs: 3, Workers: 2, RebootDelay: 30 * time.Millisecond, Kubeconfig: kube.kubeconfig})
	secrets := readFile(t, filepath.Join(tc.Dir, cluster.SecretsFile))

	// discover: all five machines, matched to their nodes by MAC.
	code, out, errOut := dodai(ctx, t, tc, "discover", "--network", tc.Net.String(), "--talos-port", strconv.Itoa(tc.Port), "-o", "json")
	if code != 0 {
		t.Fatalf("discover: exit %d: %s", code, errOut)
	}
	var machines []talos.Machine
	if err := json.Unmarshal([]byte(out), &machines); err != nil {
		t.Fatalf("discover output: %v\n%s", err, out)
	}
	if len(machines) != 5 {
		t.Fatalf("discovered %d machines", len(machines))
	}
	for i, m := range machines {
		if m.Node != tc.Names[i] || m.Stage != phase.Maintenance || m.TalosVersion != compat.DefaultTalosVersion || len(m.Disks) != 3 || m.MemoryMiB != 32768 {
			t.Fatalf("machine %d: %+v", i, m)
		}
	}
	code, out, _ = dodai(ctx, t, tc, "discover", "--network", tc.Net.String(), "--talos-port", strconv.Itoa(tc.Port))
	if code != 0 || !strings.Contains(out, "NODE") || !strings.Contains(out, "cp1") || !strings.Contains(out, "nvme0n1:512 GB:nvme") {
		t.Fatalf("discover table: %s", out)
	}

	// bootstrap.
	start := time.Now()
	code, out, errOut = dodai(ctx, t, tc, bootstrapArgs(tc)...)
	if code != 0 {
		t.Fatalf("bootstrap: exit %d\n%s\n%s", code, out, errOut)
	}
	t.Logf("bootstrap took %s\n%s", time.Since(start), out)
	for _, name := range tc.Names {
		if !strings.Contains(out, name) || tc.Nodes[name].Phase() != "running" || len(tc.Nodes[name].Applied()) != 1 {
			t.Fatalf("node %s: phase %s, applied %d\n%s", name, tc.Nodes[name].Phase(), len(tc.Nodes[name].Applied()), out)
		}
		// dry run before the real apply
		calls := tc.Nodes[name].Calls()
		if len(calls) < 2 || calls[0].Method != "ApplyConfiguration" || !calls[0].DryRun || calls[1].DryRun {
			t.Fatalf("node %s: calls %+v", name, calls)
		}
	}
	if n := tc.Group.BootstrapCalls(); n != 1 || tc.Group.Bootstrapped() != tc.Nodes["cp1"] {
		t.Fatalf("bootstrap calls %d on %v", n, tc.Group.Bootstrapped())
	}
	kcPath := filepath.Join(tc.Dir, cluster.KubeconfigFile)
	if fi, err := os.Stat(kcPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("kubeconfig: %v %v", fi, err)
	}
	if fi, err := os.Stat(filepath.Join(tc.Dir, cluster.TalosconfigFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("talosconfig: %v %v", fi, err)
	}
	kube.check(ctx, t, kcPath)
	if !bytes.Equal(secrets, readFile(t, filepath.Join(tc.Dir, cluster.SecretsFile))) {
		t.Fatal("secrets changed")
	}

	// Re-run: a no-op.
	before := snapshot(t, tc.Dir)
	applies, boots := tc.countAll("ApplyConfiguration"), tc.Group.BootstrapCalls()
	code, out, errOut = dodai(ctx, t, tc, bootstrapArgs(tc)...)
	if code != 0 {
		t.Fatalf("re-run: exit %d\n%s\n%s", code, out, errOut)
	}
	if tc.countAll("ApplyConfiguration") != applies || tc.Group.BootstrapCalls() != boots {
		t.Fatal("re-run applied or bootstrapped again")
	}
	after := snapshot(t, tc.Dir)
	for f, b := range before {
		if after[f] != b {
			t.Fatalf("re-run changed %s", f)
		}
	}
	if strings.Count(out, "configured") != 5 {
		t.Fatalf("re-run output:\n%s", out)
	}

	// status and kubeconfig.
	port := "--talos-port=" + strconv.Itoa(tc.Port)
	code, out, errOut = dodai(ctx, t, tc, "status", "nodes", port)
	if code != 0 || strings.Count(out, "running") != 5 || !strings.Contains(out, compat.DefaultTalosVersion) {
		t.Fatalf("status: exit %d\n%s\n%s", code, out, errOut)
	}
	// The whole status: nodes are fine, but the platform isn't installed yet,
	// which is "not all ready" (exit 1), said plainly, not an error.
	code, out, errOut = dodai(ctx, t, tc, "status", port)
	if code != 1 || strings.Count(out, "running") != 5 || !strings.Contains(out, "Flux is not installed") || strings.Contains(errOut, "error") {
		t.Fatalf("status: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, _ = dodai(ctx, t, tc, "kubeconfig", port)
	if code != 0 || !strings.Contains(out, "up to date") {
		t.Fatalf("kubeconfig: %d %s", code, out)
	}
	os.Remove(kcPath)
	code, out, _ = dodai(ctx, t, tc, "kubeconfig", port)
	if code != 0 || !strings.Contains(out, "written") {
		t.Fatalf("kubeconfig: %d %s", code, out)
	}
	kube.check(ctx, t, kcPath)
}

// TestFaults injects every fault at once: each failing node is reported
// with its own cause, the healthy ones finish, the exit is non-zero, and
// all within the timeout.
func TestFaults(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	kube := startKube(t)
	tc := newCluster(t, clusterOpts{CPs: 3, Workers: 2, Kubeconfig: kube.kubeconfig,
		Faults: map[string]faketalos.Faults{
			"cp1": {BootstrapNotAvailable: 3, TimeNotInSync: 2}, // retried until accepted
			"w1":  {ApplyError: "installer image pull failed: no route to host"},
			"w2":  {NeverReturn: true},
		},
		NoStart: map[string]bool{"cp3": true},
	})
	timeout := 3 * time.Second
	start := time.Now()
	code, out, errOut := dodai(ctx, t, tc, bootstrapArgs(tc, "--timeout", timeout.String())...)
	took := time.Since(start)
	if code == 0 {
		t.Fatalf("exit 0 with faults\n%s", out)
	}
	if took > timeout+2*time.Second {
		t.Fatalf("took %s, timeout %s", took, timeout)
	}
	for _, want := range []string{
		"node w1: applying config on " + tc.base + ".4",
		"installer image pull failed: no route to host",
		"node w2: config applied, but the node did not answer the authenticated Talos API on",
		"node cp3: machine with MAC " + mac(3) + " not found in maintenance mode",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("missing %q in:\n%s", want, errOut)
		}
	}
	for _, healthy := range []string{"node cp1:", "node cp2:"} {
		if strings.Contains(errOut, healthy) {
			t.Errorf("healthy node reported as failed (%q):\n%s", healthy, errOut)
		}
	}
	if !strings.Contains(out, "cp1    controlplane") || strings.Count(out, "   applied   ") != 2 || strings.Count(out, "   failed   ") != 3 {
		t.Errorf("result table:\n%s", out)
	}
	if tc.Group.BootstrapCalls() != 6 || tc.Group.Bootstrapped() == nil {
		t.Fatalf("bootstrap calls %d", tc.Group.BootstrapCalls())
	}
	if _, err := os.Stat(filepath.Join(tc.Dir, cluster.KubeconfigFile)); err != nil {
		t.Fatalf("kubeconfig not written though the control plane is healthy: %v", err)
	}
	t.Logf("took %s\n%s", took, errOut)
}

func TestFaultTimeNotInSync(t *testing.T) {
	ctx := testutil.Context(t, time.Minute)
	tc := newCluster(t, clusterOpts{CPs: 1, Workers: 0, Kubeconfig: []byte("unused"), Faults: map[string]faketalos.Faults{"cp1": {TimeNotInSync: -1}}})
	code, _, errOut := dodai(ctx, t, tc, bootstrapArgs(tc, "--timeout", "2s")...)
	if strings.Count(errOut, "\nnode cp1: ") != 1 {
		t.Errorf("cp1's failure should be reported once:\n%s", errOut)
	}
	if code == 0 || !strings.Contains(errOut, "node cp1: etcd bootstrap not accepted within the timeout") || !strings.Contains(errOut, "time is not in sync yet") {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	st := tc.readState(t)
	if st.Bootstrap == nil || st.Bootstrap.Requested == nil || st.Bootstrap.Done != nil {
		t.Fatalf("state %+v", st)
	}
}

func TestUnsupportedTalosVersion(t *testing.T) {
	ctx := testutil.Context(t, time.Minute)
	tc := newCluster(t, clusterOpts{CPs: 1, Workers: 2, Kubeconfig: []byte("unused"), Inventories: map[string]func(*faketalos.Inventory){
		"w1": func(i *faketalos.Inventory) { i.TalosVersion = "v1.7.6" },
		"w2": func(i *faketalos.Inventory) { i.TalosVersion = "v1.14.0" },
	}})
	code, _, errOut := dodai(ctx, t, tc, bootstrapArgs(tc, "--timeout", "3s", "--node", "w1", "--node", "w2")...)
	if code == 0 || !strings.Contains(errOut, "node w1: node runs Talos v1.7.6, older than the oldest supported") ||
		!strings.Contains(errOut, "node w2: node runs Talos v1.14.0, newer than this dodai supports") {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	if tc.countAll("ApplyConfiguration") != 0 {
		t.Fatal("applied to an unsupported node")
	}
}

// TestDiskConfirmed: once a disk was confirmed for a node, a different
// disk matching later is refused.
func TestDiskConfirmed(t *testing.T) {
	ctx := testutil.Context(t, time.Minute)
	tc := newCluster(t, clusterOpts{CPs: 1, Workers: 1, Kubeconfig: []byte("unused"),
		Faults: map[string]faketalos.Faults{"w1": {ApplyError: "disk busy"}}})
	code, _, errOut := dodai(ctx, t, tc, bootstrapArgs(tc, "--node", "w1", "--timeout", "3s")...)
	if code == 0 || !strings.Contains(errOut, "disk busy") {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	st := tc.readState(t)
	if st.Nodes["w1"] == nil || st.Nodes["w1"].Disk == nil || st.Nodes["w1"].Disk.DevPath != "/dev/nvme0n1" {
		t.Fatalf("state %+v", st.Nodes["w1"])
	}
	// The machine comes back with another NVMe disk (swapped hardware).
	addr := tc.Nodes["w1"].Endpoint()
	tc.Nodes["w1"].Close()
	inv := faketalos.DefaultInventory("talos-w1", mac(2))
	inv.Disks[0].Serial, inv.Disks[0].WWID = "OTHER", "eui.other"
	host := addr[:strings.LastIndex(addr, ":")]
	n, err := faketalos.Start(faketalos.Options{Name: "w1", MaintenanceAddr: host, Port: tc.Port, Inventory: inv, Group: tc.Group})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	code, _, errOut = dodai(ctx, t, tc, bootstrapArgs(tc, "--node", "w1", "--timeout", "3s")...)
	if code == 0 || !strings.Contains(errOut, "node w1: install disk now resolves to /dev/nvme0n1") || !strings.Contains(errOut, "was confirmed before") {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	if len(n.Applied()) != 0 {
		t.Fatal("applied to a different disk")
	}
}

// TestKillAndResume kills a real dodai process twice (after the applies,
// before bootstrap; then right after the Bootstrap call) and re-runs it:
// it resumes, bootstraps exactly once and never touches the secrets.
func TestKillAndResume(t *testing.T) {
	ctx := testutil.Context(t, 3*time.Minute)
	bin := testutil.DodaiBinary(t)
	kube := startKube(t)
	tc := newCluster(t, clusterOpts{CPs: 3, Workers: 2, Kubeconfig: kube.kubeconfig, RebootDelay: 20 * time.Millisecond,
		Delays: map[string]time.Duration{"cp1": 1500 * time.Millisecond, "w1": 4 * time.Second}})
	secrets := readFile(t, filepath.Join(tc.Dir, cluster.SecretsFile))
	args := append([]string{"-C", tc.Dir}, bootstrapArgs(tc, "--timeout", "60s")...)

	runUntil := func(what string, cond func() bool) {
		t.Helper()
		cmd := exec.CommandContext(ctx, bin, args...)
		var errb bytes.Buffer
		cmd.Stderr = &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		for !cond() {
			select {
			case err := <-done:
				t.Fatalf("dodai exited (%v) before %s\n%s", err, what, errb.String())
			case <-time.After(2 * time.Millisecond):
			}
		}
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
		t.Logf("killed dodai %s", what)
	}
	// 1: all five configs applied, cp1 still rebooting: no bootstrap yet.
	runUntil("after the applies", func() bool {
		for _, n := range tc.Nodes {
			if len(n.Applied()) == 0 {
				return false
			}
		}
		return true
	})
	if tc.Group.BootstrapCalls() != 0 {
		t.Fatal("bootstrapped too early for this test")
	}
	// 2: right after the Bootstrap call (w1 is still rebooting).
	runUntil("after the bootstrap call", func() bool { return tc.Group.BootstrapCalls() > 0 })

	// 3: completes.
	cmd := exec.CommandContext(ctx, bin, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("final run: %v\n%s", err, out)
	}
	if tc.Group.BootstrapCalls() != 1 {
		t.Fatalf("bootstrap called %d times", tc.Group.BootstrapCalls())
	}
	for name, n := range tc.Nodes {
		if len(n.Applied()) != 1 {
			t.Fatalf("%s applied %d times", name, len(n.Applied()))
		}
	}
	if !bytes.Equal(secrets, readFile(t, filepath.Join(tc.Dir, cluster.SecretsFile))) {
		t.Fatal("secrets changed")
	}
	kube.check(ctx, t, filepath.Join(tc.Dir, cluster.KubeconfigFile))
}

var _ = fmt.Sprint

// TestFirstControlPlaneFails: when the node etcd must be bootstrapped on
// fails, the run ends right away (not at the timeout) and says why.
func TestFirstControlPlaneFails(t *testing.T) {
	ctx := testutil.Context(t, time.Minute)
	tc := newCluster(t, clusterOpts{CPs: 2, Workers: 0, Kubeconfig: []byte("unused"),
		Faults: map[string]faketalos.Faults{"cp1": {ApplyError: "config rejected"}}})
	start := time.Now()
	code, _, errOut := dodai(ctx, t, tc, bootstrapArgs(tc, "--timeout", "30s")...)
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("took %s: waited for the timeout", took)
	}
	if code == 0 || !strings.Contains(errOut, "node cp1: applying config on") || !strings.Contains(errOut, "etcd not bootstrapped: cp1, the first control-plane node, failed") {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	if tc.Group.BootstrapCalls() != 0 || len(tc.Nodes["cp2"].Applied()) != 1 || strings.Contains(errOut, "node cp2:") {
		t.Fatalf("cp2 should be installed without error, nothing bootstrapped:\n%s", errOut)
	}
}
