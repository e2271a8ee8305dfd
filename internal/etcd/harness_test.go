package etcd_test

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dodai-dev/dodai/internal/etcd"
	"github.com/dodai-dev/dodai/test/faketalos"
	"github.com/dodai-dev/dodai/test/kubetest"
)

var netCounter atomic.Int32

// uniqueBase is "127.X.Y", distinct per cluster in this process and likely
// across concurrently running test processes.
func uniqueBase() string {
	n := int(netCounter.Add(1))
	return fmt.Sprintf("127.%d.%d", 100+(os.Getpid()+n/40)%150, 100+(n%40)*3)
}

func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// startCluster installs a cluster of fake nodes; with env, its members
// front env's real etcd.
func startCluster(t testing.TB, cps, workers int, env *kubetest.Env) (*faketalos.Cluster, *etcd.Client) {
	t.Helper()
	o := faketalos.ClusterOptions{ControlPlanes: cps, Workers: workers, Base: uniqueBase(), RebootDelay: 20 * time.Millisecond}
	if env != nil {
		o.Kubeconfig = env.KubeconfigBytes()
		o.Etcd = &faketalos.EtcdBackend{Endpoint: env.EtcdURL, Restore: env.RestoreEtcd}
	}
	cl, err := faketalos.StartCluster(testCtx(t, time.Minute), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	c := &etcd.Client{Talosconfig: cl.Talosconfig, Port: cl.Port, CallTimeout: 5 * time.Second}
	for i := 1; i <= cps; i++ {
		name := fmt.Sprintf("cp%d", i)
		c.Nodes = append(c.Nodes, etcd.Node{Name: name, Address: cl.Addresses[name]})
	}
	t.Cleanup(func() { c.Close() })
	return cl, c
}
