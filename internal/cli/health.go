package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/dodai-dev/dodai/internal/health"
	"github.com/dodai-dev/dodai/internal/platform"
)

// healthOptions prepares the checks of a cluster directory.
func (g *Globals) healthOptions(d *day2, kubeconfig string) (health.Options, error) {
	o := health.Options{Source: d.src, Addresses: map[string]string{}, Talosconfig: d.tc, Port: d.port, Etcd: d.etcd(),
		NetbootRunFile: d.layout.NetbootRun(), Log: g.Log}
	for i := range d.src.Cluster.Spec.Nodes {
		n := &d.src.Cluster.Spec.Nodes[i]
		o.Addresses[n.Name] = d.address(n)
	}
	gr, err := platform.Resolve(d.src.Cluster.Spec.Platform)
	if err != nil {
		return o, err
	}
	for _, r := range gr.Releases {
		o.Releases = append(o.Releases, r.Namespace+"/"+r.Name)
	}
	cfg, err := restConfig(g.kubeconfig(kubeconfig))
	if err != nil {
		o.KubeErr = err
		return o, nil
	}
	cfg.Timeout = 10 * time.Second
	if o.Kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return o, err
	}
	if o.Dynamic, err = dynamic.NewForConfig(cfg); err != nil {
		return o, err
	}
	return o, nil
}

func newHealthCmd(g *Globals) *cobra.Command {
	var wait, poll time.Duration
	var kubeconfig string
	cmd := &cobra.Command{
		Use:   "health",
		Short: "Is the cluster all right? etcd, control plane, nodes, platform, netboot in one table",
		Long: `health checks, in one report:

  etcd            quorum and leader, every member (down, alarm, stale), every
                  control-plane node a member;
  control-plane   the Kubernetes API (/readyz) and kube-apiserver,
                  kube-controller-manager and kube-scheduler on every
                  control-plane node;
  node            every node of cluster.yaml: Talos answers with the expected
                  version and extensions, its Kubernetes Node is Ready with the
                  expected kubelet version;
  platform        every HelmRelease of spec.platform, by the platform's
                  readiness rule (the current generation reconciled and Ready);
  netboot         the netboot server, when one runs.

Every failure names its kind (etcd-member-down, node-not-ready, version-skew,
release-not-ready, ...). The exit status is 1 when anything fails. --wait D
checks again until everything passes or D has passed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := g.openDay2()
			if err != nil {
				return err
			}
			o, err := g.healthOptions(d, kubeconfig)
			if err != nil {
				return err
			}
			defer o.Etcd.Close()
			var rep *health.Report
			if wait > 0 {
				ctx, cancel := context.WithTimeout(cmd.Context(), wait)
				defer cancel()
				start := time.Now()
				rep = health.Wait(ctx, o, poll, func(r *health.Report) {
					p := r.Problems()
					g.Log.Info("waiting for the cluster to be healthy", "problems", len(p), "kinds", strings.Join(r.Kinds(), ","),
						"first", p[0].Subject+": "+p[0].Detail, "elapsed", time.Since(start).Round(time.Second))
				})
			} else {
				rep = health.Run(cmd.Context(), o)
			}
			if err := g.Print(rep, func(w io.Writer) error { return healthTable(w, rep) }); err != nil {
				return err
			}
			if !rep.Healthy {
				return &ExitError{Code: 1, Err: errors.New("unhealthy: " + strings.Join(rep.Kinds(), ", "))}
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&wait, "wait", 0, "check again until healthy, at most this long (0: check once)")
	cmd.Flags().DurationVar(&poll, "poll-interval", 2*time.Second, "interval between checks with --wait")
	_ = cmd.Flags().MarkHidden("poll-interval")
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig (default: the cluster directory's kubeconfig)")
	g.talosPortFlag(cmd)
	return cmd
}

func healthTable(w io.Writer, rep *health.Report) error {
	rows := make([][]string, 0, len(rep.Checks))
	for _, c := range rep.Checks {
		st := "ok"
		detail := c.Detail
		if !c.OK {
			st = "FAIL"
			detail = c.Kind + ": " + c.Detail
		}
		rows = append(rows, []string{c.Area, c.Subject, st, orDash(detail)})
	}
	if err := Table(w, []string{"AREA", "CHECK", "STATUS", "DETAIL"}, rows); err != nil {
		return err
	}
	if rep.Healthy {
		fmt.Fprintf(w, "\nhealthy: %d checks passed\n", len(rep.Checks))
	} else {
		fmt.Fprintf(w, "\nUNHEALTHY: %d of %d checks failed (%s)\n", len(rep.Problems()), len(rep.Checks), strings.Join(rep.Kinds(), ", "))
	}
	return nil
}
