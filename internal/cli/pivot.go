package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/dodai-dev/dodai/internal/incluster/handover"
	"github.com/dodai-dev/dodai/internal/incluster/kube"
	"github.com/dodai-dev/dodai/internal/incluster/machines"
	"github.com/dodai-dev/dodai/internal/incluster/pivot"
	"github.com/dodai-dev/dodai/internal/incluster/replicas"
)

func newPivotCmd(g *Globals) *cobra.Command {
	var kubeconfig, ns string
	cmd := &cobra.Command{
		Use:   "pivot",
		Short: "Move the boot server's state (machine registry, dhcp leases) into the cluster, for the in-cluster netboot and controller",
		Long: `pivot hands netboot over from this machine to the cluster. It refuses while a
local "dodai netboot" for this cluster directory runs (and holds the same lock
while it works, so none starts meanwhile). It installs the dodai.dev CRDs,
writes cluster.yaml as the ConfigMap ` + pivot.ConfigMapName + ` and secrets.yaml as the Secret
` + pivot.SecretName + `, copies state/machines.json into Machines and the dhcp-mode
leases into DHCPLeases (never rolling back newer objects), and records the
pivot in state/pivot.json. From then on a local "dodai netboot" refuses to
start for this cluster unless --force, and "dodai status netboot" reads the
cluster. Then enable the dodai platform component and label the boot nodes
dodai.dev/netboot=true: it runs "dodai netboot --in-cluster" on those nodes
and "dodai controller". Stop the local netboot before. Re-running is safe.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			src, err := g.Load()
			if err != nil {
				return err
			}
			cfg, err := kube.RESTConfig(g.kubeconfig(kubeconfig), 50, 100)
			if err != nil {
				return err
			}
			c, err := kube.Client(cfg)
			if err != nil {
				return err
			}
			res, err := pivot.Run(cmd.Context(), pivot.Options{Source: src, Client: c, Namespace: kube.Namespace(ns), Server: cfg.Host, Log: g.Log})
			if err != nil {
				return err
			}
			return g.Print(res, func(w io.Writer) error {
				fmt.Fprintf(w, "Moved %d machine(s) and %d lease(s) into namespace %s (ConfigMap %s, Secret %s).\n",
					res.Machines, res.Leases, res.Namespace, res.ConfigMap, res.Secret)
				fmt.Fprintln(w, "A local `dodai netboot` now refuses to start for this cluster (--force overrides).")
				fmt.Fprintln(w, "Next: enable the dodai component (spec.platform.components.dodai) and label the boot nodes dodai.dev/netboot=true:")
				fmt.Fprintln(w, "it runs dodai netboot --in-cluster there and dodai controller.")
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig (default: the cluster directory's kubeconfig)")
	cmd.Flags().StringVar(&ns, "namespace", kube.DefaultNamespace, "namespace for the Machines, DHCPLeases, ConfigMap and Secret")
	return cmd
}

// pivotedNetboot returns the machine registry and the boot server
// replicas (their heartbeats) from the cluster when the cluster directory
// was pivoted (pivoted false: read the local state).
func pivotedNetboot(ctx context.Context, g *Globals, kubeconfig string) (netbootStatus, bool, error) {
	rec, err := handover.Pivoted(g.ClusterDir)
	if err != nil || rec == nil {
		return netbootStatus{}, false, err
	}
	cfg, err := kube.RESTConfig(g.kubeconfig(kubeconfig), 50, 100)
	if err != nil {
		return netbootStatus{}, true, err
	}
	c, err := kube.Client(cfg)
	if err != nil {
		return netbootStatus{}, true, err
	}
	list, err := (&machines.Store{Client: c, Namespace: rec.Namespace}).List(ctx)
	if err != nil {
		return netbootStatus{}, true, err
	}
	reps, err := replicas.List(ctx, c, rec.Namespace, time.Now())
	if err != nil {
		return netbootStatus{}, true, err
	}
	return netbootStatus{Namespace: rec.Namespace, Replicas: reps, Machines: list}, true, nil
}

// refusePivoted refuses a local `dodai netboot` for a pivoted cluster
// unless forced.
func refusePivoted(dir string, force bool) error {
	rec, err := handover.Pivoted(dir)
	if err != nil {
		return err
	}
	if rec != nil && !force {
		return handover.RefuseLocal(rec)
	}
	return nil
}
