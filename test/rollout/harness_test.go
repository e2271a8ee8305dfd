package rollout_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/siderolabs/image-factory/pkg/schematic"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/dodai-dev/dodai/internal/cli"
	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/machineconfig"
	"github.com/dodai-dev/dodai/internal/testutil"
	"github.com/dodai-dev/dodai/test/faketalos"
	"github.com/dodai-dev/dodai/test/kubetest"
)

// One real control plane for the package: kube-apiserver, etcd and
// kube-controller-manager (its disruption controller computes the
// PodDisruptionBudget status evictions are checked against). The fake
// nodes' kubelets register their Nodes in it.
var kube = kubetest.Shared{Options: kubetest.Options{ControllerManager: true}}

func TestMain(m *testing.M) { os.Exit(kube.Run(m)) }

func startKube(t testing.TB) *kubetest.Env {
	t.Helper()
	testutil.Slow(t, "a real kube-apiserver and fake Talos nodes")
	return kube.Env(t)
}

// spec is the part of cluster.yaml a test changes between rollouts.
type spec struct {
	Talos, Kubernetes string
	Extensions        []string
	Installer         string
	// Patches is YAML under spec.patches.all, e.g. "- machine: {...}".
	Patches string
	// Extra lists workers of the file that have no machine (yet).
	Extra []string
	// Platform is YAML under spec.platform (indented by four spaces).
	Platform string
}

type clusterOpts struct {
	CPs, Workers int
	RebootDelay  time.Duration
	Spec         spec
	Faults       map[string]faketalos.Faults
	// Kube is the test Kubernetes of this cluster (default: the package's
	// shared one).
	Kube *kubetest.Env
}

// testCluster is a cluster directory, its fake machines and the factory
// that knows their images.
type testCluster struct {
	t       testing.TB
	Dir     string
	Port    int
	Net     string // maintenance network to scan
	Group   *faketalos.Group
	Factory *faketalos.Factory
	Nodes   map[string]*faketalos.Node
	Names   []string
	kube    *kubetest.Env
	cfgBase string
	cps     int
	spec    spec
	mac     func(int) string
}

var netCounter atomic.Int32

// uniqueBase returns "127.X.Y" distinct per test and (likely) per process.
func uniqueBase() (string, string) {
	n := int(netCounter.Add(1))
	x := 100 + (os.Getpid()+n*7)%150
	return fmt.Sprintf("127.%d.%d", x, 10+(n%40)*2), fmt.Sprintf("127.%d.%d", x, 11+(n%40)*2)
}

// newCluster writes the cluster directory, registers the image's schematic
// with the fake factory and starts the machines in maintenance mode.
func newCluster(t testing.TB, o clusterOpts) *testCluster {
	t.Helper()
	env := o.Kube
	if env == nil {
		env = startKube(t)
	}
	base, cfgBase := uniqueBase()
	tc := &testCluster{t: t, Dir: t.TempDir(), Port: testutil.FreePort(t), Net: base + ".0/24", Group: faketalos.NewGroup(),
		Factory: faketalos.NewFactory(), Nodes: map[string]*faketalos.Node{}, kube: env, cfgBase: cfgBase, cps: o.CPs}
	// The members' snapshots come from the real etcd behind the apiserver.
	tc.Group.SetEtcdBackend(faketalos.EtcdBackend{Endpoint: env.EtcdURL, Restore: env.RestoreEtcd})
	prefix := fmt.Sprintf("%02x", (netCounter.Load()+int32(os.Getpid()))%256)
	tc.mac = func(i int) string { return fmt.Sprintf("52:54:00:%s:%02x:%02x", prefix, i/256, i%256) }
	for i := 1; i <= o.CPs+o.Workers; i++ {
		name := fmt.Sprintf("cp%d", i)
		if i > o.CPs {
			name = fmt.Sprintf("w%d", i-o.CPs)
		}
		tc.Names = append(tc.Names, name)
	}
	if o.Spec.Talos == "" {
		o.Spec.Talos = "v1.11.5"
	}
	if o.Spec.Kubernetes == "" {
		o.Spec.Kubernetes = "v1.34.1"
	}
	tc.write(o.Spec)
	if _, err := machineconfig.InitSecrets(tc.Dir, o.Spec.Talos); err != nil {
		t.Fatal(err)
	}
	id := tc.register(o.Spec.Extensions)
	// Runs after the nodes' Close (cleanups run last-registered first).
	t.Cleanup(tc.deleteNodes)
	for i, name := range tc.Names {
		inv := faketalos.DefaultInventory("talos-"+name, tc.mac(i+1))
		inv.TalosVersion = o.Spec.Talos
		inv.Schematic = id
		n, err := faketalos.Start(faketalos.Options{Name: name, MaintenanceAddr: fmt.Sprintf("%s.%d", base, i+1), Port: tc.Port,
			Inventory: inv, RebootDelay: o.RebootDelay, Kubeconfig: env.KubeconfigBytes(), Faults: o.Faults[name],
			Group: tc.Group, Kube: env.Client, Factory: tc.Factory})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(n.Close)
		tc.Nodes[name] = n
	}
	return tc
}

// register tells the fake factory about the schematic of these extensions
// (as POST /schematics does) and returns its ID.
func (tc *testCluster) register(exts []string) string {
	tc.t.Helper()
	s := &schematic.Schematic{}
	s.Customization.SystemExtensions.OfficialExtensions = slices.Clone(exts)
	id, err := tc.Factory.Add(s)
	if err != nil {
		tc.t.Fatal(err)
	}
	return id
}

// write (re)writes cluster.yaml for a spec.
func (tc *testCluster) write(s spec) {
	tc.t.Helper()
	tc.spec = s
	var b strings.Builder
	fmt.Fprintf(&b, `apiVersion: dodai.dev/v1alpha1
kind: Cluster
metadata:
  name: day2
spec:
  talosVersion: %s
  kubernetesVersion: %s
  endpoint: https://%s.1:6443
`, s.Talos, s.Kubernetes, tc.cfgBase)
	if len(s.Extensions) > 0 || s.Installer != "" {
		b.WriteString("  image:\n")
		if len(s.Extensions) > 0 {
			fmt.Fprintf(&b, "    extensions: [%s]\n", strings.Join(s.Extensions, ", "))
		}
		if s.Installer != "" {
			fmt.Fprintf(&b, "    installer: %s\n", s.Installer)
		}
	}
	if s.Patches != "" {
		b.WriteString("  patches:\n    all:\n")
		for _, l := range strings.Split(strings.TrimSpace(s.Patches), "\n") {
			b.WriteString("      " + l + "\n")
		}
	}
	if s.Platform != "" {
		b.WriteString("  platform:\n" + s.Platform)
	}
	b.WriteString("  nodes:\n")
	for i, name := range tc.Names {
		role := cluster.RoleControlPlane
		if i >= tc.cps {
			role = cluster.RoleWorker
		}
		fmt.Fprintf(&b, "    - name: %s\n      role: %s\n      macs: [\"%s\"]\n      address: %s.%d/8\n      installDisk:\n        selector: {type: nvme}\n",
			name, role, tc.mac(i+1), tc.cfgBase, i+1)
	}
	for i, name := range s.Extra {
		fmt.Fprintf(&b, "    - name: %s\n      role: worker\n      macs: [\"%s\"]\n      installDisk:\n        selector: {type: nvme}\n", name, tc.mac(200+i))
	}
	if err := os.WriteFile(filepath.Join(tc.Dir, cluster.FileName), []byte(b.String()), 0o644); err != nil {
		tc.t.Fatal(err)
	}
	if len(s.Extensions) > 0 && s.Installer == "" {
		tc.register(s.Extensions)
	}
}

// dodai runs the CLI in-process.
func (tc *testCluster) dodai(ctx context.Context, args ...string) (int, string, string) {
	tc.t.Helper()
	var out, errb bytes.Buffer
	full := append([]string{"-C", tc.Dir}, args...)
	full = append(full, "--talos-port", strconv.Itoa(tc.Port))
	code := cli.Run(ctx, full, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func (tc *testCluster) bootstrap(ctx context.Context) {
	tc.t.Helper()
	code, out, errOut := tc.dodai(ctx, "bootstrap", "--network", tc.Net, "--poll-interval", "10ms")
	if code != 0 {
		tc.t.Fatalf("bootstrap: exit %d\n%s\n%s", code, out, errOut)
	}
	for _, name := range tc.Names {
		tc.waitNode(ctx, name)
	}
}

// apply runs `dodai apply --yes` with short test bounds.
func (tc *testCluster) apply(ctx context.Context, extra ...string) (int, string, string) {
	tc.t.Helper()
	args := append([]string{"apply", "--yes", "--poll-interval", "20ms", "--drain-timeout", "60s", "--network", tc.Net}, extra...)
	return tc.dodai(ctx, args...)
}

// waitNode waits until the node's Kubernetes Node is Ready.
func (tc *testCluster) waitNode(ctx context.Context, name string) {
	tc.t.Helper()
	for {
		n, err := tc.kube.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
					return
				}
			}
		}
		select {
		case <-ctx.Done():
			tc.t.Fatalf("Node %s not Ready: %v %+v", name, err, n)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// deleteNodes removes this cluster's Nodes and their mirror pods from the
// shared apiserver (node names repeat across tests) and waits until they
// are gone.
func (tc *testCluster) deleteNodes() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs := tc.kube.Client
	for _, name := range tc.Names {
		_ = cs.CoreV1().Nodes().Delete(ctx, name, metav1.DeleteOptions{})
		for _, app := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
			_ = cs.CoreV1().Pods(metav1.NamespaceSystem).Delete(ctx, app+"-"+name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
		}
	}
	for _, name := range tc.Names {
		for ctx.Err() == nil {
			_, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			pods, _ := cs.CoreV1().Pods(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + name})
			if apierrors.IsNotFound(err) && pods != nil && len(pods.Items) == 0 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// noSecrets fails when out shows any secret of the cluster's bundle.
func (tc *testCluster) noSecrets(out string) {
	tc.t.Helper()
	b, err := machineconfig.LoadSecrets(tc.Dir)
	if err != nil {
		tc.t.Fatal(err)
	}
	for name, v := range map[string]string{
		"bootstrap token": b.Secrets.BootstrapToken, "cluster secret": b.Cluster.Secret, "trustd token": b.TrustdInfo.Token,
		"aescbc secret": b.Secrets.AESCBCEncryptionSecret, "OS CA key": base64.StdEncoding.EncodeToString(b.Certs.OS.Key),
	} {
		if v != "" && strings.Contains(out, v) {
			tc.t.Fatalf("output shows the %s:\n%s", name, out)
		}
	}
}
