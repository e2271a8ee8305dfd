package controller

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/incluster/kube"
	"github.com/dodai-dev/dodai/internal/machineconfig"
)

// Options of Run.
type Options struct {
	REST *rest.Config
	// Namespace holds the Machines (and the leader-election lease).
	Namespace string
	// Source is the loaded cluster directory (cluster.yaml + secrets.yaml).
	Source *cluster.Source
	// LeaderElect lets several replicas run, one active.
	LeaderElect bool
	// MetricsAddr and ProbeAddr serve Prometheus metrics and /healthz,
	// /readyz ("" or "0": off).
	MetricsAddr, ProbeAddr string
	// Port of the Talos API (default talos.DefaultPort); Poll the requeue
	// interval while waiting (default 5 s).
	Port int
	Poll time.Duration
	Log  *slog.Logger
}

// Run runs the join controller until ctx ends.
func Run(ctx context.Context, o Options) error {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	renderer, err := machineconfig.New(o.Source)
	if err != nil {
		return fmt.Errorf("preparing machine configs: %w", err)
	}
	tc, err := renderer.Talosconfig()
	if err != nil {
		return err
	}
	ctrl.SetLogger(logr.FromSlogHandler(o.Log.Handler()))
	metrics := o.MetricsAddr
	if metrics == "" {
		metrics = "0"
	}
	mgr, err := ctrl.NewManager(o.REST, ctrl.Options{
		Scheme:                  kube.Scheme(),
		Cache:                   cache.Options{DefaultNamespaces: map[string]cache.Config{o.Namespace: {}}},
		LeaderElection:          o.LeaderElect,
		LeaderElectionID:        "dodai-controller",
		LeaderElectionNamespace: o.Namespace,
		Metrics:                 metricsserver.Options{BindAddress: metrics},
		HealthProbeBindAddress:  o.ProbeAddr,
	})
	if err != nil {
		return fmt.Errorf("creating the controller manager: %w", err)
	}
	if o.ProbeAddr != "" && o.ProbeAddr != "0" {
		if err := mgr.AddHealthzCheck("ping", func(_ *http.Request) error { return nil }); err != nil {
			return err
		}
	}
	r := &Reconciler{Client: mgr.GetClient(), Source: o.Source, Renderer: renderer, Talosconfig: tc, Port: o.Port, Poll: o.Poll, Log: o.Log}
	if err := r.SetupWithManager(mgr, 4); err != nil {
		return err
	}
	o.Log.Info("dodai controller running", "namespace", o.Namespace, "cluster", o.Source.Cluster.Metadata.Name, "nodes", len(o.Source.Cluster.Spec.Nodes), "leaderElection", o.LeaderElect)
	return mgr.Start(ctx)
}
