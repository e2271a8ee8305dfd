package controller_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dodai-dev/dodai/api/v1alpha1"
	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/clusterdir"
	"github.com/dodai-dev/dodai/internal/incluster/controller"
	"github.com/dodai-dev/dodai/internal/incluster/incltest"
	"github.com/dodai-dev/dodai/internal/machineconfig"
	"github.com/dodai-dev/dodai/internal/testutil"
	"github.com/dodai-dev/dodai/test/faketalos"
)

// addrBase is a 127.X.Y prefix unlikely to be used by another test process.
func addrBase() (maint, configured string) {
	x := 100 + os.Getpid()%150
	return fmt.Sprintf("127.%d.201", x), fmt.Sprintf("127.%d.202", x)
}

// machine creates a Machine as a boot server records one: spec with the
// MAC, status with the address its DHCP exchange bound.
func machine(t *testing.T, c client.Client, mac, node, ip string) {
	t.Helper()
	m := &v1alpha1.Machine{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.MachineName(mac), Namespace: incltest.Namespace},
		Spec: v1alpha1.MachineSpec{MACs: []v1alpha1.MAC{v1alpha1.MAC(mac)}, Node: node}}
	if err := c.Create(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	// The controller may already be writing its conditions: retry on
	// conflicts, as a boot server does.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := c.Get(t.Context(), client.ObjectKeyFromObject(m), m); err != nil {
			return err
		}
		now := metav1.Now()
		m.Status.Arch, m.Status.IP, m.Status.Stage, m.Status.LastSeen, m.Status.BootServer = "amd64", ip, v1alpha1.StageInitramfs, &now, "test"
		return c.Status().Update(t.Context(), m)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func waitCondition(t *testing.T, c client.Client, mac, typ string, status metav1.ConditionStatus, reason string) *v1alpha1.Machine {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	var last *metav1.Condition
	for time.Now().Before(deadline) {
		m := &v1alpha1.Machine{}
		if err := c.Get(t.Context(), client.ObjectKey{Namespace: incltest.Namespace, Name: v1alpha1.MachineName(mac)}, m); err != nil {
			t.Fatal(err)
		}
		last = meta.FindStatusCondition(m.Status.Conditions, typ)
		if last != nil && last.Status == status && last.Reason == reason {
			return m
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("Machine %s: condition %s is %+v, want %s/%s", mac, typ, last, status, reason)
	return nil
}

// A fake Talos node in maintenance mode with a known MAC is configured by
// the controller (inventory recorded, install disk confirmed, config
// applied once) and reported until its Node is Ready; a node whose only
// matching disk is a USB stick is refused by the disk-safety rule without
// any apply; an unknown MAC is recorded and left alone.
func TestJoin(t *testing.T) {
	kc := incltest.Start(t)
	c := kc.Client
	maint, cfgNet := addrBase()
	port := testutil.FreePort(t)
	dir := t.TempDir()
	macCP, macUSB, macUnknown := "52:54:00:bb:00:01", "52:54:00:bb:00:02", "52:54:00:bb:00:03"
	yaml := fmt.Sprintf(`apiVersion: dodai.dev/v1alpha1
kind: Cluster
metadata: {name: join}
spec:
  talosVersion: v1.11.5
  kubernetesVersion: v1.34.1
  endpoint: https://%[1]s.1:6443
  nodes:
    - {name: cp1, role: controlplane, macs: ["%[2]s"], address: %[1]s.1/8, installDisk: {selector: {type: nvme}}}
    - {name: cp2, role: controlplane, macs: ["%[3]s"], address: %[1]s.2/8, installDisk: {path: /dev/sdb}}
`, cfgNet, macCP, macUSB)
	if err := os.WriteFile(filepath.Join(dir, cluster.FileName), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := machineconfig.InitSecrets(dir, "v1.11.5"); err != nil {
		t.Fatal(err)
	}
	d, err := clusterdir.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Err(); err != nil {
		t.Fatal(err)
	}
	src := d.Source
	group := faketalos.NewGroup()
	fake := map[string]*faketalos.Node{}
	for i, mac := range []string{macCP, macUSB, macUnknown} {
		// The machines boot the Talos release the cluster file names.
		inv := faketalos.DefaultInventory(fmt.Sprintf("talos-%d", i), mac)
		inv.TalosVersion = "v1.11.5"
		n, err := faketalos.Start(faketalos.Options{Name: mac, MaintenanceAddr: fmt.Sprintf("%s.%d", maint, i+1), Port: port,
			Inventory: inv, RebootDelay: 300 * time.Millisecond, Group: group})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(n.Close)
		fake[mac] = n
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- controller.Run(ctx, controller.Options{REST: kc.REST, Namespace: incltest.Namespace, Source: src, Port: port, Poll: 200 * time.Millisecond})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("controller: %v", err)
		}
	})

	machine(t, c, macCP, "cp1", maint+".1")
	machine(t, c, macUSB, "cp2", maint+".2")
	machine(t, c, macUnknown, "", maint+".3")

	m := waitCondition(t, c, macCP, v1alpha1.ConditionJoined, metav1.ConditionTrue, controller.ReasonConfigured)
	if n := len(fake[macCP].Applied()); n != 1 {
		t.Errorf("cp1 got %d configs, want 1", n)
	}
	j := m.Status.Join
	if j == nil || j.InstallDisk == nil || j.InstallDisk.DevPath != "/dev/nvme0n1" || j.Address != cfgNet+".1" || j.Configured == nil {
		t.Errorf("join status %+v", j)
	}
	if inv := m.Status.Inventory; inv == nil || inv.TalosVersion != "v1.11.5" || len(inv.Disks) != 3 || inv.MemoryMiB != 32768 || inv.CPUs != 16 {
		t.Errorf("inventory %+v", inv)
	}
	waitCondition(t, c, macCP, v1alpha1.ConditionNodeReady, metav1.ConditionFalse, controller.ReasonNodeMissing)

	// The node's kubelet registers it (no kubelet runs here: the test does
	// what it would) and it turns Ready.
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "cp1"}}
	if err := c.Create(t.Context(), node); err != nil {
		t.Fatal(err)
	}
	waitCondition(t, c, macCP, v1alpha1.ConditionNodeReady, metav1.ConditionFalse, controller.ReasonNodeNotReady)
	node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
	if err := c.Status().Update(t.Context(), node); err != nil {
		t.Fatal(err)
	}
	waitCondition(t, c, macCP, v1alpha1.ConditionNodeReady, metav1.ConditionTrue, controller.ReasonNodeReady)

	usb := waitCondition(t, c, macUSB, v1alpha1.ConditionJoined, metav1.ConditionFalse, controller.ReasonApplyFailed)
	if msg := meta.FindStatusCondition(usb.Status.Conditions, v1alpha1.ConditionJoined).Message; !strings.Contains(msg, "USB") {
		t.Errorf("USB refusal message: %s", msg)
	}
	unknown := waitCondition(t, c, macUnknown, v1alpha1.ConditionJoined, metav1.ConditionFalse, controller.ReasonUnknownMachine)
	if unknown.Status.Join != nil {
		t.Errorf("unknown machine has join status %+v", unknown.Status.Join)
	}
	for _, mac := range []string{macUSB, macUnknown} {
		if n := fake[mac].Count("ApplyConfiguration"); n != 0 {
			t.Errorf("%s: %d ApplyConfiguration calls, want none", mac, n)
		}
	}
	if n := fake[macCP].Count("Bootstrap"); n != 0 {
		t.Errorf("the controller bootstrapped etcd (%d calls): joins never do", n)
	}
}
