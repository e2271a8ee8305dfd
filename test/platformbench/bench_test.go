// Package platformbench measures `dodai platform install` to all-Ready for
// the full bundle's 24-release graph (ConfigMap charts) against a real
// apiserver and real Flux controllers: with dodai's dependent kick, with
// Flux's defaults, and with Cozystack's tuning. Run it with
// hack/bench/platform.sh (it is not part of the default test suite).
package platformbench

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/platform/catalog"
	"github.com/dodai-dev/dodai/internal/platform/graph"
	"github.com/dodai-dev/dodai/internal/platform/install"
	"github.com/dodai-dev/dodai/test/kubetest"
)

func BenchmarkPlatformInstall(b *testing.B) {
	cases := []struct {
		name       string
		requeue    time.Duration
		concurrent int
		kick       bool
		single     bool
	}{
		{name: "single-release", requeue: 5 * time.Second, concurrent: 20, single: true},
		{name: "flux-defaults", requeue: 30 * time.Second, concurrent: 4},
		{name: "cozystack-tuning", requeue: 5 * time.Second, concurrent: 20},
		{name: "dodai-kick", requeue: 5 * time.Second, concurrent: 20, kick: true},
		{name: "dodai-kick-flux-defaults", requeue: 30 * time.Second, concurrent: 4, kick: true},
	}
	cat, err := catalog.Load()
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				env := kubetest.StartT(b, kubetest.Options{Flux: &kubetest.FluxOptions{RequeueDependency: tc.requeue, Concurrent: tc.concurrent}})
				p := cluster.Platform{Bundle: "full"}
				if tc.single {
					// One release with no dependencies: the unit of the
					// critical path.
					p = cluster.Platform{Bundle: "hosted", Components: map[string]cluster.ComponentOverride{}}
					for _, n := range cat.Bundles["hosted"] {
						if n != "cert-manager" {
							f := false
							p.Components[n] = cluster.ComponentOverride{Enabled: &f}
						}
					}
					p.DropDependents = true
				}
				g, err := graph.Resolve(cat, p)
				if err != nil {
					b.Fatal(err)
				}
				repo := kubetest.NewHelmRepo(b)
				for _, r := range g.Releases {
					if err := repo.Add(strings.TrimPrefix(r.Source.Chart, "./charts/"), kubetest.ChartSpec{Version: r.Source.Version}); err != nil {
						b.Fatal(err)
					}
				}
				p.Mirror = &cluster.Mirror{Helm: repo.URL()}
				g, err = graph.Resolve(cat, p)
				if err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
				b.StartTimer()
				res, err := install.Install(ctx, g, install.Options{Kubeconfig: env.Kubeconfig, RESTConfig: env.RESTConfig(),
					SkipFlux: true, Timeout: 7 * time.Minute, NoKick: !tc.kick})
				b.StopTimer()
				cancel()
				if err != nil {
					b.Fatal(err)
				}
				depth := len(g.Layers())
				var last time.Duration
				for _, d := range res.Ready {
					if d > last {
						last = d
					}
				}
				// s/all-ready includes the waiter's 2 s settle window;
				// s/last-ready is when the last release first became Ready.
				b.ReportMetric(res.Elapsed.Seconds(), "s/all-ready")
				b.ReportMetric(last.Seconds(), "s/last-ready")
				b.ReportMetric(float64(depth), "layers")
				b.ReportMetric(float64(res.Kicks), "kicks")
				b.Logf("%s: %d releases, %d layers, all Ready in %s (kicks %d)", tc.name, len(g.Releases), depth, res.Elapsed.Round(10*time.Millisecond), res.Kicks)
				if err := env.Stop(); err != nil {
					b.Log(err)
				}
			}
		})
	}
}
