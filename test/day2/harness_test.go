package day2_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dodai-dev/dodai/internal/cli"
	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/clusterdir"
	"github.com/dodai-dev/dodai/internal/machineconfig"
	"github.com/dodai-dev/dodai/internal/talos/compat"
	"github.com/dodai-dev/dodai/internal/testutil"
	"github.com/dodai-dev/dodai/test/faketalos"
	"github.com/dodai-dev/dodai/test/kubetest"
)

// testCluster is an installed cluster: a cluster directory, its fake
// machines, and the real Kubernetes (and etcd) behind them.
type testCluster struct {
	Dir   string
	Port  int
	Net   string // maintenance network to scan
	Group *faketalos.Group
	Nodes map[string]*faketalos.Node
	Kube  *kubetest.Env
}

// The cluster runs the releases new clusters get (the fake nodes' default
// Talos release, whose own machinery checks the configs).
const (
	talosVersion = compat.DefaultTalosVersion
	kubeVersion  = compat.DefaultKubernetesVersion
)

var netCounter atomic.Int32

func uniqueBase() (int, int) {
	n := int(netCounter.Add(1))
	return 100 + (os.Getpid()+n/40)%150, 10 + (n%40)*5
}

func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// clusterFile is a cluster.yaml with the given control planes and
// workers; machines are 127.B.C.N in maintenance and 127.B.(C+1).N
// configured.
func clusterFile(b, c, cps, workers int) string {
	var s strings.Builder
	fmt.Fprintf(&s, `apiVersion: dodai.dev/v1alpha1
kind: Cluster
metadata:
  name: day2
spec:
  talosVersion: %s
  kubernetesVersion: %s
  endpoint: https://127.%d.%d.1:6443
  nodes:
`, talosVersion, kubeVersion, b, c+1)
	for i := 1; i <= cps+workers; i++ {
		name, role := fmt.Sprintf("cp%d", i), "controlplane"
		if i > cps {
			name, role = fmt.Sprintf("w%d", i-cps), "worker"
		}
		fmt.Fprintf(&s, "    - name: %s\n      role: %s\n      macs: [\"52:54:00:d2:%02x:%02x\"]\n      address: 127.%d.%d.%d/8\n      installDisk:\n        selector: {type: nvme}\n",
			name, role, c, i, b, c+1, i)
	}
	return s.String()
}

// newCluster installs a cluster of fake machines with `dodai bootstrap`.
func newCluster(t testing.TB, cps, workers int) *testCluster {
	t.Helper()
	testutil.Slow(t, "runs a real kube-apiserver and etcd (built by hack/deps/kube.sh)")
	ctx := testCtx(t, 3*time.Minute)
	b, c := uniqueBase()
	env := kubetest.StartT(t, kubetest.Options{InstallFluxCRDs: true})
	tc := &testCluster{Dir: t.TempDir(), Port: freePort(t), Net: fmt.Sprintf("127.%d.%d.0/24", b, c), Group: faketalos.NewGroup(),
		Nodes: map[string]*faketalos.Node{}, Kube: env}
	tc.Group.SetEtcdBackend(faketalos.EtcdBackend{Endpoint: env.EtcdURL, Restore: env.RestoreEtcd})
	if err := os.WriteFile(filepath.Join(tc.Dir, cluster.FileName), []byte(clusterFile(b, c, cps, workers)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := machineconfig.InitSecrets(tc.Dir, talosVersion); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= cps+workers; i++ {
		name := fmt.Sprintf("cp%d", i)
		if i > cps {
			name = fmt.Sprintf("w%d", i-cps)
		}
		n, err := faketalos.Start(faketalos.Options{Name: name, MaintenanceAddr: fmt.Sprintf("127.%d.%d.%d", b, c, i), Port: tc.Port,
			Inventory: faketalos.DefaultInventory("talos-"+name, fmt.Sprintf("52:54:00:d2:%02x:%02x", c, i)), RebootDelay: 20 * time.Millisecond,
			Kubeconfig: env.KubeconfigBytes(), Group: tc.Group, Kube: env.Client})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(n.Close)
		tc.Nodes[name] = n
	}
	if code, _, errOut := tc.dodai(ctx, "bootstrap", "--network", tc.Net, "--poll-interval", "20ms"); code != 0 {
		t.Fatalf("bootstrap: exit %d\n%s", code, errOut)
	}
	return tc
}

// dodai runs the CLI in-process against the cluster directory.
func (tc *testCluster) dodai(ctx context.Context, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	full := append([]string{"-C", tc.Dir}, args...)
	full = append(full, "--talos-port", strconv.Itoa(tc.Port))
	code := cli.Run(ctx, full, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func (tc *testCluster) load(t testing.TB) *cluster.Source {
	t.Helper()
	d, err := clusterdir.Open(tc.Dir)
	if err == nil {
		err = d.Err()
	}
	if err != nil {
		t.Fatal(err)
	}
	return d.Source
}

// show logs a command's output (go test -v shows it; the README's examples
// come from there).
func show(t testing.TB, cmd, out, errOut string) {
	t.Helper()
	t.Logf("$ dodai %s\n%s%s", cmd, out, errOut)
}
