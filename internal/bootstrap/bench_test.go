package bootstrap_test

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/dodai-dev/dodai/internal/bootstrap"
	"github.com/dodai-dev/dodai/internal/testutil"
)

// BenchmarkBootstrap measures maintenance mode → kubeconfig against fake
// nodes and a real kube-apiserver: dodai's parallel run versus the same
// steps one node after another, as talos-bootstrap does them.
//
//	go test ./internal/bootstrap -run '^$' -bench Bootstrap -benchtime 5x
func BenchmarkBootstrap(b *testing.B) {
	kube := startKube(b)
	for _, c := range []struct {
		cps, workers int
		delay        time.Duration
	}{{3, 2, 0}, {3, 2, 200 * time.Millisecond}, {3, 50, 0}, {3, 50, 200 * time.Millisecond}} {
		for _, seq := range []bool{false, true} {
			mode := "parallel"
			if seq {
				mode = "sequential"
			}
			b.Run(fmt.Sprintf("nodes=%d/reboot=%s/%s", c.cps+c.workers, c.delay, mode), func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					tc := newCluster(b, clusterOpts{CPs: c.cps, Workers: c.workers, RebootDelay: c.delay, Kubeconfig: kube.kubeconfig})
					src, r := tc.load(b)
					ctx := testutil.Context(b, 5*time.Minute)
					b.StartTimer()
					_, err := bootstrap.Run(ctx, bootstrap.Options{Source: src, Renderer: r, Networks: []netip.Prefix{tc.Net},
						Port: tc.Port, PollInterval: 10 * time.Millisecond, Sequential: seq})
					b.StopTimer()
					if err != nil {
						b.Fatal(err)
					}
					if tc.Group.BootstrapCalls() != 1 {
						b.Fatalf("bootstrap calls %d", tc.Group.BootstrapCalls())
					}
					for _, n := range tc.Nodes {
						n.Close()
					}
					b.StartTimer()
				}
			})
		}
	}
}
