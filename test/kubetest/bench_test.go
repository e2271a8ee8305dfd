package kubetest

import (
	"context"
	"testing"
	"time"
)

// BenchmarkStart measures starting (to /readyz) and stopping an Env with
// etcd and kube-apiserver only, and with the Flux controllers as well.
//
//	go test -run '^$' -bench Start -benchtime 3x ./test/kubetest/
func BenchmarkStart(b *testing.B) {
	for _, bc := range []struct {
		name string
		opts Options
	}{
		{"apiserver", Options{}},
		{"flux", Options{Flux: &FluxOptions{}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var ready time.Duration
			for b.Loop() {
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
				e, err := Start(ctx, bc.opts)
				cancel()
				if err != nil {
					b.Fatal(err)
				}
				ready += e.Timings["total"]
				if err := e.Stop(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(ready.Milliseconds())/float64(b.N), "ms-to-ready/op")
		})
	}
}
