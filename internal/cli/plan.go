package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/machineconfig"
	"github.com/dodai-dev/dodai/internal/plan"
)

// rolloutEnv is what plan and apply share: the loaded directory and
// clients.
type rolloutEnv struct {
	src        *cluster.Source
	r          *machineconfig.Renderer
	kube       kubernetes.Interface
	rest       *rest.Config
	kubeconfig string
	opts       plan.Options
}

func (g *Globals) openRollout(kubeconfig string, nodes []string) (*rolloutEnv, error) {
	dd, err := g.openDay2()
	if err != nil {
		return nil, err
	}
	src, r, tc, port := dd.src, dd.renderer, dd.tc, dd.port
	d := &rolloutEnv{src: src, r: r}
	kc := g.kubeconfig(kubeconfig)
	if _, err := os.Stat(kc); err == nil {
		cfg, err := restConfig(kc)
		if err != nil {
			return nil, err
		}
		if d.kube, err = kubernetes.NewForConfig(cfg); err != nil {
			return nil, fmt.Errorf("kubeconfig %s: %w", kc, err)
		}
		d.rest, d.kubeconfig = cfg, kc
	}
	d.opts = plan.Options{Source: src, Renderer: r, Talosconfig: tc, Kube: d.kube, Port: port, Nodes: nodes, Log: g.Log}
	if d.rest != nil && len(nodes) == 0 {
		dyn, err := dynamic.NewForConfig(d.rest)
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: %w", kc, err)
		}
		d.opts.Platform = func(ctx context.Context) ([]*plan.ReleaseChange, error) {
			return plan.PlatformChanges(ctx, dyn, src.Cluster.Spec.Platform)
		}
	}
	return d, nil
}

func newPlanCmd(g *Globals) *cobra.Command {
	var (
		nodes      []string
		kubeconfig string
		timeout    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "plan",
		Short: "Show what `dodai apply` would change on the running cluster",
		Long: `plan compares what runs with cluster.yaml, node by node, and prints what apply
would do: the machine-config diff (from the node's MachineConfig resource,
secrets redacted) with Talos' own dry-run answer (no reboot, reboot, or staged
for the upgrade's reboot); an OS upgrade where the Talos version or the image
schematic (extensions, kernel args) changed, with the installer image; a
Kubernetes upgrade (one minor version at a time, with the removed APIs still
in use); nodes to install and nodes the file does not know; the platform's
HelmRelease changes.

Version changes follow Talos' rules: Talos and Kubernetes one minor at a
time, Kubernetes inside the range the target Talos runs, a combined upgrade
in a safe order (Talos first, then Kubernetes). Refused plans (an upgrade
that would drop an extension the node runs and the file still lists, a Talos
or Kubernetes minor skipped, a combined upgrade that needs Kubernetes first,
unhealthy etcd) exit 1; version refusals name the cluster.yaml field and the
step to take instead. Otherwise the exit status is 0 when nothing would change and 2 when
something would. -o json|yaml prints the plan as data.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := g.openRollout(kubeconfig, nodes)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			p, err := plan.Build(ctx, d.opts)
			if err != nil {
				return err
			}
			if err := g.Print(p, func(w io.Writer) error { return writePlan(w, p, true) }); err != nil {
				return err
			}
			switch {
			case p.Refused():
				return &ExitError{Code: 1, Err: fmt.Errorf("the plan is refused:\n  %s", strings.Join(p.AllRefusals(), "\n  "))}
			case p.Changes():
				return &ExitError{Code: 2}
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&nodes, "node", nil, "only these nodes (repeatable; default: all)")
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig (default: the cluster directory's kubeconfig)")
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "give up after this long")
	g.talosPortFlag(cmd)
	return cmd
}

// writePlan prints the plan as tables, then the config diffs.
func writePlan(w io.Writer, p *plan.Plan, diffs bool) error {
	rows := make([][]string, 0, len(p.Nodes))
	for _, n := range p.Nodes {
		rows = append(rows, []string{n.Name, n.Role, orDash(n.TalosVersion), n.Summary()})
	}
	if err := Table(w, []string{"NODE", "ROLE", "TALOS", "CHANGES"}, rows); err != nil {
		return err
	}
	if k := p.Kubernetes; k != nil {
		fmt.Fprintf(w, "\nKubernetes\t%s → %s: control-plane components node by node, then the kubelets\n", k.From, k.To)
		for _, a := range k.RemovedAPIs {
			fmt.Fprintf(w, "  removed API still in use:\t%s\n", a)
		}
	}
	if len(p.Steps) > 1 {
		steps := make([]string, 0, len(p.Steps))
		for _, s := range p.Steps {
			steps = append(steps, s.String())
		}
		fmt.Fprintf(w, "\nUpgrade order\t%s\n", strings.Join(steps, ", then "))
	}
	if len(p.Platform) > 0 {
		fmt.Fprintln(w)
		prow := make([][]string, 0, len(p.Platform))
		for _, r := range p.Platform {
			ver := orDash(r.FromVersion) + " → " + r.ToVersion
			if r.FromVersion == r.ToVersion {
				ver = r.ToVersion
			}
			values := "-"
			if r.ValuesDiff != "" {
				values = "changed"
			}
			prow = append(prow, []string{r.Namespace, r.Name, r.Action, r.Chart, ver, values})
		}
		if err := Table(w, []string{"NAMESPACE", "RELEASE", "ACTION", "CHART", "VERSION", "VALUES"}, prow); err != nil {
			return err
		}
	}
	if len(p.Unknown) > 0 {
		fmt.Fprintf(w, "\nNodes in the cluster but not in cluster.yaml (reported, never removed): %s\n", strings.Join(p.Unknown, ", "))
	}
	var warns []string
	warns = append(warns, p.Warnings...)
	for _, n := range p.Nodes {
		for _, x := range n.Warnings {
			warns = append(warns, "node "+n.Name+": "+x)
		}
	}
	for _, x := range warns {
		fmt.Fprintf(w, "\nwarning: %s\n", x)
	}
	if refs := p.AllRefusals(); len(refs) > 0 {
		fmt.Fprintln(w, "\nRefused:")
		for _, r := range refs {
			fmt.Fprintf(w, "  %s\n", r)
		}
	}
	if !diffs {
		return nil
	}
	// Nodes with the same upgrade or the same config change are shown
	// once, under all their names.
	var upgrades, configs []string
	upNodes, cfgNodes := map[string][]string{}, map[string][]string{}
	for _, n := range p.Nodes {
		if u := n.Upgrade; u != nil {
			s := fmt.Sprintf("Talos %s → %s with %s", u.FromVersion, u.ToVersion, u.Image)
			if u.API != "" {
				s += " through " + u.API
			}
			if u.Extensions != nil {
				s += fmt.Sprintf(" (extensions: %s)", orDash(strings.Join(u.Extensions, " ")))
			}
			if u.NewForm != nil {
				s += fmt.Sprintf("; then the config in %s's form (%s)", u.ToVersion, u.NewForm)
			}
			if upNodes[s] == nil {
				upgrades = append(upgrades, s)
			}
			upNodes[s] = append(upNodes[s], n.Name)
		}
		if c := n.Config; c != nil {
			s := fmt.Sprintf("machine config, %s (Talos: %q)\n", c.Mode, c.TalosAnswer)
			if c.SecretsChanged {
				s += "  secret fields differ (redacted)\n"
			}
			s += indent(c.Diff)
			if cfgNodes[s] == nil {
				configs = append(configs, s)
			}
			cfgNodes[s] = append(cfgNodes[s], n.Name)
		}
	}
	for _, s := range upgrades {
		fmt.Fprintf(w, "\n%s: %s\n", strings.Join(upNodes[s], ", "), s)
	}
	for _, s := range configs {
		fmt.Fprintf(w, "\n%s: %s", strings.Join(cfgNodes[s], ", "), s)
	}
	for _, r := range p.Platform {
		if r.ValuesDiff != "" {
			fmt.Fprintf(w, "\n%s/%s values:\n%s", r.Namespace, r.Name, indent(r.ValuesDiff))
		}
	}
	if !p.Changes() && !p.Refused() {
		fmt.Fprintln(w, "\nNo changes: the cluster matches cluster.yaml.")
	}
	return nil
}

func indent(s string) string {
	if s == "" {
		return ""
	}
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = "  " + l
	}
	return strings.Join(lines, "\n") + "\n"
}
