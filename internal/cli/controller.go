package cli

import (
	"github.com/spf13/cobra"

	"github.com/dodai-dev/dodai/internal/incluster/controller"
)

func newControllerCmd(g *Globals) *cobra.Command {
	var o controller.Options
	var k inClusterFlags
	cmd := &cobra.Command{
		Use:   "controller",
		Short: "Join machines to the cluster from inside it (runs in the dodai chart's Deployment)",
		Long: `controller watches the Machines the in-cluster boot servers record. A machine
whose MAC belongs to a node of cluster.yaml and that sits in Talos maintenance
mode at its DHCP address gets its config over the Talos API, through the same
code path and disk-safety rules as "dodai bootstrap"; the controller then
reports the node (conditions Joined and NodeReady) until its Kubernetes Node
is Ready. Unknown machines are recorded and left alone.

The cluster directory is read-only here: cluster.yaml and secrets.yaml come
from the ConfigMap and Secret that "dodai pivot" writes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			src, err := g.Load()
			if err != nil {
				return err
			}
			if o.REST, err = k.rest(50, 100); err != nil {
				return err
			}
			if o.Port, err = g.TalosPort(); err != nil {
				return err
			}
			o.Namespace = k.ns()
			o.Source, o.Log = src, g.Log
			return controller.Run(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	k.register(f, false)
	f.BoolVar(&o.LeaderElect, "leader-elect", false, "elect one active replica (for more than one)")
	f.StringVar(&o.MetricsAddr, "metrics-addr", "", "Prometheus metrics listen address (default off)")
	f.StringVar(&o.ProbeAddr, "health-addr", "", "/healthz and /readyz listen address (default off)")
	g.talosPortFlag(cmd)
	return cmd
}
