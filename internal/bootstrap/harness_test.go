package bootstrap_test

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/clusterdir"
	"github.com/dodai-dev/dodai/internal/machineconfig"
	"github.com/dodai-dev/dodai/internal/state"
	"github.com/dodai-dev/dodai/internal/testutil"
	"github.com/dodai-dev/dodai/test/faketalos"
)

// clusterOpts describe a test cluster of fake nodes.
type clusterOpts struct {
	CPs, Workers int
	RebootDelay  time.Duration
	Faults       map[string]faketalos.Faults
	Delays       map[string]time.Duration // per-node reboot delay
	Inventories  map[string]func(*faketalos.Inventory)
	Kubeconfig   []byte
	// NoStart lists nodes whose fake machine is not started.
	NoStart map[string]bool
}

// testCluster is a cluster directory plus its fake machines.
type testCluster struct {
	Dir   string
	Port  int
	Net   netip.Prefix // maintenance network to scan
	Group *faketalos.Group
	Nodes map[string]*faketalos.Node
	Names []string
	base  string
}

var netCounter atomic.Int32

// uniqueBase returns "127.X.Y" distinct per test in this process and
// (likely) across concurrently running test processes.
func uniqueBase() string {
	n := int(netCounter.Add(1))
	return fmt.Sprintf("127.%d.%d", 100+(os.Getpid()+n/80)%150, 10+(n%80)*3)
}

func mac(i int) string { return fmt.Sprintf("52:54:00:aa:%02x:%02x", i/256, i%256) }

// newCluster writes cluster.yaml and secrets.yaml and starts the fake
// machines in maintenance mode: maintenance addresses BASE.N (N = 1…),
// configured addresses (BASE+1).N.
func newCluster(t testing.TB, o clusterOpts) *testCluster {
	t.Helper()
	base := uniqueBase()
	parts := strings.Split(base, ".")
	var third int
	fmt.Sscanf(parts[2], "%d", &third)
	cfgBase := fmt.Sprintf("%s.%s.%d", parts[0], parts[1], third+1)
	tc := &testCluster{Dir: t.TempDir(), Port: testutil.FreePort(t), Group: faketalos.NewGroup(), Nodes: map[string]*faketalos.Node{}, base: base}
	tc.Net = netip.MustParsePrefix(base + ".0/24")
	var b strings.Builder
	fmt.Fprintf(&b, `# test cluster
apiVersion: dodai.dev/v1alpha1
kind: Cluster
metadata:
  name: e2e
spec:
  talosVersion: v1.11.5
  kubernetesVersion: v1.34.1
  endpoint: https://%s.1:6443
  nodes:
`, cfgBase)
	total := o.CPs + o.Workers
	for i := 1; i <= total; i++ {
		name, role := fmt.Sprintf("cp%d", i), cluster.RoleControlPlane
		if i > o.CPs {
			name, role = fmt.Sprintf("w%d", i-o.CPs), cluster.RoleWorker
		}
		tc.Names = append(tc.Names, name)
		fmt.Fprintf(&b, `    - name: %s
      role: %s
      macs: ["%s"]
      address: %s.%d/8
      installDisk:
        selector: {type: nvme}
`, name, role, mac(i), cfgBase, i)
	}
	if err := os.WriteFile(filepath.Join(tc.Dir, cluster.FileName), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := machineconfig.InitSecrets(tc.Dir, "v1.11.5"); err != nil {
		t.Fatal(err)
	}
	for i, name := range tc.Names {
		if o.NoStart[name] {
			continue
		}
		inv := faketalos.DefaultInventory("talos-"+strings.ToLower(name), mac(i+1))
		if f := o.Inventories[name]; f != nil {
			f(&inv)
		}
		delay := o.RebootDelay
		if d, ok := o.Delays[name]; ok {
			delay = d
		}
		n, err := faketalos.Start(faketalos.Options{Name: name, MaintenanceAddr: fmt.Sprintf("%s.%d", base, i+1), Port: tc.Port,
			Inventory: inv, RebootDelay: delay, Kubeconfig: o.Kubeconfig, Faults: o.Faults[name], Group: tc.Group})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(n.Close)
		tc.Nodes[name] = n
	}
	return tc
}

func (tc *testCluster) load(t testing.TB) (*cluster.Source, *machineconfig.Renderer) {
	t.Helper()
	d, err := clusterdir.Open(tc.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Err(); err != nil {
		t.Fatal(err)
	}
	src := d.Source
	r, err := machineconfig.New(src)
	if err != nil {
		t.Fatal(err)
	}
	return src, r
}

func (tc *testCluster) countAll(method string) int {
	total := 0
	for _, n := range tc.Nodes {
		total += n.Count(method)
	}
	return total
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readState reads the cluster's state/bootstrap.json.
func (tc *testCluster) readState(t testing.TB) *state.Bootstrap {
	t.Helper()
	st, err := state.ReadBootstrap(cluster.At(tc.Dir).BootstrapState())
	if err != nil {
		t.Fatal(err)
	}
	return st
}
