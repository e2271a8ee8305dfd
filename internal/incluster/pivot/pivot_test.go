package pivot_test

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dodai-dev/dodai/api/v1alpha1"
	"github.com/dodai-dev/dodai/internal/cli"
	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/incluster/handover"
	"github.com/dodai-dev/dodai/internal/incluster/incltest"
	"github.com/dodai-dev/dodai/internal/incluster/pivot"
	"github.com/dodai-dev/dodai/internal/macaddr"
	"github.com/dodai-dev/dodai/internal/machineconfig"
	"github.com/dodai-dev/dodai/internal/netboot/dhcp"
	"github.com/dodai-dev/dodai/internal/state"
)

const clusterYAML = `apiVersion: dodai.dev/v1alpha1
kind: Cluster
metadata: {name: piv}
spec:
  endpoint: https://10.99.0.11:6443
  boot:
    interface: br0
    mode: dhcp
    subnet: 10.99.0.0/24
    range: {start: 10.99.0.100, end: 10.99.0.199}
  nodes:
    - {name: cp1, role: controlplane, macs: ["52:54:00:00:00:11", "52:54:00:00:01:11"], address: 10.99.0.11/24, installDisk: {path: /dev/vda}}
`

// clusterDir writes a cluster directory that a local dhcp-mode netboot has
// served: a registry of two machines (one node, one unknown) and leases in
// both the snapshot and the journal.
func clusterDir(t *testing.T) (string, time.Time) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, cluster.FileName), []byte(clusterYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := machineconfig.InitSecrets(dir, "v1.11.5"); err != nil {
		t.Fatal(err)
	}
	seen := time.Now().UTC().Truncate(time.Second)
	reg := state.Machines{Machines: []state.Machine{
		{MAC: "52:54:00:00:00:11", Node: "cp1", IP: "10.99.0.11", Arch: "amd64", Stage: "installed", LastSeen: seen},
		{MAC: "52:54:00:00:00:99", IP: "10.99.0.100", Arch: "amd64", Stage: "kernel", LastSeen: seen},
	}}
	if err := state.WriteJSON(cluster.At(dir).MachinesState(), reg); err != nil {
		t.Fatal(err)
	}
	path := cluster.At(dir).Leases()
	l, err := dhcp.NewLeases(dhcp.LeaseOptions{Path: path, Start: netip.MustParseAddr("10.99.0.100"), End: netip.MustParseAddr("10.99.0.199")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Bind(macaddr.MustParse("52:54:00:00:00:99"), netip.MustParseAddr("10.99.0.100"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil { // into the snapshot
		t.Fatal(err)
	}
	l, err = dhcp.NewLeases(dhcp.LeaseOptions{Path: path, Start: netip.MustParseAddr("10.99.0.100"), End: netip.MustParseAddr("10.99.0.199")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Bind(macaddr.MustParse("52:54:00:00:00:42"), netip.MustParseAddr("10.99.0.101"), time.Hour); err != nil { // journal only
		t.Fatal(err)
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	return dir, seen
}

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if code := cli.Run(ctx, args, strings.NewReader(""), &out, &errOut); code != 0 {
		return out.String(), errors.New(errOut.String())
	}
	return out.String(), nil
}

// The registry and the leases survive the move into the cluster; pivot
// refuses while a local netboot holds the cluster directory; a local
// netboot refuses to start for the pivoted cluster unless forced; `dodai
// status netboot` then reads the cluster; re-running pivot is safe.
func TestPivot(t *testing.T) {
	kc := incltest.Start(t)
	c := kc.Client
	dir, seen := clusterDir(t)
	if err := os.WriteFile(filepath.Join(dir, cluster.KubeconfigFile), kc.Env.KubeconfigBytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	ns := "dodai-system"

	// A local netboot runs (it holds the lock): pivot refuses and writes nothing.
	release, err := handover.Lock(dir, "dodai netboot")
	if err != nil {
		t.Fatal(err)
	}
	_, err = run(t, "pivot", "-C", dir)
	if err == nil || !strings.Contains(err.Error(), "refusing to pivot: dodai netboot pid") {
		t.Fatalf("pivot while netboot runs: %v", err)
	}
	if err := c.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: pivot.ConfigMapName}, &corev1.ConfigMap{}); !apierrors.IsNotFound(err) {
		t.Errorf("refused pivot wrote the ConfigMap: %v", err)
	}
	release()

	out, err := run(t, "pivot", "-C", dir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "Moved 2 machine(s) and 2 lease(s) into namespace dodai-system") {
		t.Errorf("pivot output:\n%s", out)
	}
	var ms v1alpha1.MachineList
	if err := c.List(t.Context(), &ms, client.InNamespace(ns)); err != nil || len(ms.Items) != 2 {
		t.Fatalf("Machines: %d %v", len(ms.Items), err)
	}
	cp := &v1alpha1.Machine{}
	if err := c.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "52-54-00-00-00-11"}, cp); err != nil {
		t.Fatal(err)
	}
	if cp.Spec.Node != "cp1" || len(cp.Spec.MACs) != 2 || cp.Status.Stage != "installed" || cp.Status.IP != "10.99.0.11" ||
		!cp.Status.LastSeen.Time.Equal(seen) || cp.Labels[v1alpha1.LabelNode] != "cp1" {
		t.Errorf("cp1 Machine: %+v %+v", cp.Spec, cp.Status)
	}
	var ls v1alpha1.DHCPLeaseList
	if err := c.List(t.Context(), &ls, client.InNamespace(ns)); err != nil || len(ls.Items) != 2 {
		t.Fatalf("DHCPLeases: %d %v", len(ls.Items), err)
	}
	for _, le := range ls.Items {
		want := map[string]string{"10.99.0.100": "52:54:00:00:00:99", "10.99.0.101": "52:54:00:00:00:42"}[le.Name]
		if le.Spec.MAC != want || !le.Spec.Expires.After(time.Now().Add(50*time.Minute)) {
			t.Errorf("DHCPLease %s: %+v", le.Name, le.Spec)
		}
	}
	sec := &corev1.Secret{}
	if err := c.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: pivot.SecretName}, sec); err != nil || len(sec.Data[cluster.SecretsFile]) == 0 {
		t.Errorf("Secret: %v", err)
	}
	cm := &corev1.ConfigMap{}
	if err := c.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: pivot.ConfigMapName}, cm); err != nil || cm.Data[cluster.FileName] != clusterYAML {
		t.Errorf("ConfigMap: %v", err)
	}

	// A local netboot now refuses (before touching anything), unless forced.
	_, err = run(t, "netboot", "-C", dir, "--interface", "lo")
	if err == nil || !strings.Contains(err.Error(), "this cluster was pivoted") {
		t.Errorf("local netboot after pivot: %v", err)
	}
	_, err = run(t, "netboot", "-C", dir, "--interface", "lo", "--force", "--assets", filepath.Join(dir, "none"))
	if err == nil || strings.Contains(err.Error(), "pivoted") {
		t.Errorf("forced local netboot should get past the pivot check (and stop at the missing assets): %v", err)
	}

	// status reads the cluster: the machine the in-cluster server saw
	// after the pivot shows up.
	now := time.Now().UTC().Truncate(time.Second)
	last := metav1.NewTime(now)
	cp.Status.Stage, cp.Status.LastSeen = "config", &last
	if err := c.Status().Update(t.Context(), cp); err != nil {
		t.Fatal(err)
	}
	out, err = run(t, "status", "netboot", "-C", dir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "52:54:00:00:00:11   cp1") || !strings.Contains(out, "config") || !strings.Contains(out, "52:54:00:00:00:99") {
		t.Errorf("status after pivot:\n%s", out)
	}

	// Re-running converges and keeps what the cluster saw since.
	if _, err := run(t, "pivot", "-C", dir); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "52-54-00-00-00-11"}, cp); err != nil || cp.Status.Stage != "config" {
		t.Errorf("re-run pivot rolled back the Machine: %v %+v", err, cp.Status)
	}
}
