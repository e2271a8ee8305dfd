package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/dodai-dev/dodai/internal/bootstrap"
	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/discover"
	"github.com/dodai-dev/dodai/internal/etcd"
	"github.com/dodai-dev/dodai/internal/machineconfig"
	"github.com/dodai-dev/dodai/internal/plan"
	"github.com/dodai-dev/dodai/internal/platform"
	"github.com/dodai-dev/dodai/internal/platform/install"
	"github.com/dodai-dev/dodai/internal/rollout"
	"github.com/dodai-dev/dodai/internal/state"
)

// RolloutStateFile is the rollout's state file in the state directory.
const RolloutStateFile = "rollout.json"

func init() {
	register(newPlanCmd)
	register(newApplyCmd)
}

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

func (g *Globals) openRollout(kubeconfig string, nodes []string, port int) (*rolloutEnv, error) {
	src, err := g.Load()
	if err != nil {
		return nil, err
	}
	r, err := machineconfig.New(src)
	if err != nil {
		return nil, err
	}
	tc, err := r.Talosconfig()
	if err != nil {
		return nil, err
	}
	d := &rolloutEnv{src: src, r: r}
	kc := g.kubeconfig(kubeconfig)
	if _, err := os.Stat(kc); err == nil {
		cfg, err := clientcmd.BuildConfigFromFlags("", kc)
		if err != nil {
			return nil, fmt.Errorf("loading kubeconfig %s: %w", kc, err)
		}
		cfg.QPS, cfg.Burst = 50, 100
		if d.kube, err = kubernetes.NewForConfig(cfg); err != nil {
			return nil, fmt.Errorf("kubeconfig %s: %w", kc, err)
		}
		d.rest, d.kubeconfig = cfg, kc
	}
	d.opts = plan.Options{Source: src, Renderer: r, Talosconfig: tc, Kube: d.kube, Port: resolvePort(port), Nodes: nodes, Log: g.Log}
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

// applyPlatform applies the platform's objects (Flux is there already) and
// waits until every release is Ready at its new generation.
func (d *rolloutEnv) applyPlatform(g *Globals, timeout time.Duration) func(context.Context) error {
	return func(ctx context.Context) error {
		gr, err := platform.Resolve(d.src.Cluster.Spec.Platform)
		if err != nil {
			return err
		}
		_, err = install.Install(ctx, gr, install.Options{Kubeconfig: d.kubeconfig, RESTConfig: d.rest, SkipFlux: true, SkipCNI: true,
			Timeout: timeout, Log: g.Log})
		return err
	}
}

func newPlanCmd(g *Globals) *cobra.Command {
	var (
		nodes      []string
		kubeconfig string
		port       int
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

Refused plans (an upgrade that would drop an extension the node runs and the
file still lists, a Kubernetes skip of more than one minor, unhealthy etcd)
exit 1. Otherwise the exit status is 0 when nothing would change and 2 when
something would. -o json|yaml prints the plan as data.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := g.openRollout(kubeconfig, nodes, port)
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
	talosPortFlag(cmd, &port)
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
	for _, n := range p.Nodes {
		if n.Upgrade != nil {
			u := n.Upgrade
			fmt.Fprintf(w, "\n%s: Talos %s → %s with %s", n.Name, u.FromVersion, u.ToVersion, u.Image)
			if u.Extensions != nil {
				fmt.Fprintf(w, " (extensions: %s)", orDash(strings.Join(u.Extensions, " ")))
			}
			fmt.Fprintln(w)
		}
		if c := n.Config; c != nil {
			fmt.Fprintf(w, "\n%s: machine config, %s (Talos: %q)\n", n.Name, c.Mode, c.TalosAnswer)
			if c.SecretsChanged {
				fmt.Fprintln(w, "  secret fields differ (redacted)")
			}
			fmt.Fprint(w, indent(c.Diff))
		}
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

func isTerminal(f any) bool {
	file, ok := f.(*os.File)
	return ok && term.IsTerminal(int(file.Fd()))
}

func newApplyCmd(g *Globals) *cobra.Command {
	var (
		nodes           []string
		networks        []string
		kubeconfig      string
		maxUnavailable  string
		dryRun, yes     bool
		port            int
		timeout         time.Duration
		nodeTimeout     time.Duration
		drainTimeout    time.Duration
		poll            time.Duration
		platformTimeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "apply",
		Short: "Roll out cluster.yaml to the running cluster: configs, Talos, Kubernetes, platform",
		Long: `apply executes the plan (see dodai plan) as a rollout:

  nodes not installed yet are installed by the bootstrap path;
  control-plane nodes one at a time, the etcd leader last (it forfeits
  leadership first); before each disruptive control-plane step every etcd member
  must be healthy, the step must keep quorum, and an etcd snapshot is saved
  under state/etcd/ (0600, rotated);
  workers with at most --max-unavailable of them at once (a count or a
  percentage of the workers; default 1);
  per node: cordon and drain (evictions respect PodDisruptionBudgets, bounded by
  --drain-timeout) when the node will reboot, apply the config (Talos' own mode)
  and/or run the Talos upgrade, wait until the node is back with the expected
  Talos version and extensions (read from its resources), its Node Ready with
  the expected kubelet, uncordon;
  Kubernetes upgrades in Talos' order: the control-plane components node by
  node, then the kubelets;
  the platform's HelmReleases, waited for at their new generation.

The first failure stops the rollout: the other nodes are left untouched, and
the error says which node, which step and why. Fix the cause and run apply
again: it resumes (state/rollout.json). Re-running on a converged cluster
changes nothing. Without --yes apply asks for confirmation on a terminal and
refuses otherwise; --dry-run prints the plan and the order and stops.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			nets, err := discover.ParseNetworks(networks)
			if err != nil {
				return err
			}
			d, err := g.openRollout(kubeconfig, nodes, port)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			p, err := plan.Build(ctx, d.opts)
			if err != nil {
				return err
			}
			statePath := state.Path(g.ClusterDir, RolloutStateFile)
			pending, err := rolloutPending(statePath)
			if err != nil {
				return err
			}
			if p.Refused() {
				if err := writePlan(g.Out, p, false); err != nil {
					return err
				}
				return &ExitError{Code: 1, Err: fmt.Errorf("the plan is refused:\n  %s", strings.Join(p.AllRefusals(), "\n  "))}
			}
			if !p.Changes() && !pending {
				fmt.Fprintln(g.Out, "Nothing to do: the cluster matches cluster.yaml.")
				return nil
			}
			if g.Output == "table" {
				if err := writePlan(g.Out, p, dryRun); err != nil {
					return err
				}
				if err := writeOrder(g, d, p, maxUnavailable); err != nil {
					return err
				}
			}
			if dryRun {
				return nil
			}
			if !yes {
				if !isTerminal(g.In) {
					return errors.New("apply changes a running cluster: confirm with --yes (stdin is not a terminal)")
				}
				fmt.Fprint(g.Out, "\nApply these changes? [y/N] ")
				line, _ := bufio.NewReader(g.In).ReadString('\n')
				if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
					return errors.New("apply cancelled")
				}
			}
			prog := rollout.NewProgress(g.Err, isTerminal(g.Err), g.Log)
			o := rollout.Options{
				Source: d.src, Renderer: d.r, Talosconfig: d.opts.Talosconfig, Kube: d.kube, Port: d.opts.Port,
				Nodes: nodes, MaxUnavailable: maxUnavailable, StatePath: statePath,
				SnapshotDir: state.Path(g.ClusterDir, etcd.SnapshotDir), DrainTimeout: drainTimeout,
				NodeTimeout: nodeTimeout, PollInterval: poll, Progress: prog, Log: g.Log,
				Platform: d.applyPlatform(g, platformTimeout),
				Install: func(ctx context.Context, names []string) error {
					_, err := bootstrap.Run(ctx, bootstrap.Options{Source: d.src, Renderer: d.r, Nodes: names, Networks: nets,
						Port: d.opts.Port, PollInterval: poll, Log: g.Log})
					return err
				},
			}
			res, err := rollout.Run(ctx, o, p)
			prog.Close()
			if res != nil && res.Resumed != nil {
				fmt.Fprintf(g.Err, "resumed after: node %s, step %s: %s\n", orDash(res.Resumed.Node), res.Resumed.Step, res.Resumed.Error)
			}
			if res != nil && len(res.Nodes) > 0 {
				if perr := g.Print(res, func(w io.Writer) error { return writeResult(w, res) }); perr != nil {
					return perr
				}
			}
			if err != nil {
				return &ExitError{Code: 1, Err: fmt.Errorf("apply stopped: %w\nthe other nodes were not touched; fix the cause and run `dodai apply` again: it resumes from there", err)}
			}
			fmt.Fprintf(g.Err, "applied in %s\n", res.Elapsed.Round(100*time.Millisecond))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&nodes, "node", nil, "only these nodes (repeatable; default: all)")
	f.StringVar(&maxUnavailable, "max-unavailable", "1", "workers worked on at once: a count or a percentage of the workers (e.g. 10%)")
	f.BoolVar(&dryRun, "dry-run", false, "print the plan and the rollout order, change nothing")
	f.BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	f.StringSliceVar(&networks, "network", nil, "IPv4 network to search for new nodes in maintenance mode (repeatable; default: directly connected networks)")
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig (default: the cluster directory's kubeconfig)")
	f.DurationVar(&timeout, "timeout", 6*time.Hour, "give up after this long")
	f.DurationVar(&nodeTimeout, "node-timeout", 15*time.Minute, "bound of each wait for a node (reboot, Ready, static pods)")
	f.DurationVar(&drainTimeout, "drain-timeout", 5*time.Minute, "bound of each node's drain")
	f.DurationVar(&platformTimeout, "platform-timeout", 30*time.Minute, "bound of the wait for the platform's releases")
	f.DurationVar(&poll, "poll-interval", 250*time.Millisecond, "interval between checks while waiting")
	_ = f.MarkHidden("poll-interval")
	talosPortFlag(cmd, &port)
	return cmd
}

// rolloutPending reports whether an earlier rollout left work behind
// (a cordoned node, a reboot in flight).
func rolloutPending(path string) (bool, error) {
	var st rollout.State
	if err := state.ReadJSON(path, &st); err != nil {
		return false, err
	}
	for _, n := range st.Nodes {
		if n.Cordoned || n.Inflight != nil {
			return true, nil
		}
	}
	return false, nil
}

// writeOrder prints the order the rollout will take.
func writeOrder(g *Globals, d *rolloutEnv, p *plan.Plan, maxUnavailable string) error {
	leader := ""
	ec := plan.EtcdClient(d.src, d.opts.Talosconfig, d.opts.Port)
	defer ec.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if st, err := ec.Status(ctx); err == nil {
		leader = st.Leader
	}
	cps, workers := rollout.Order(p, leader, d.opts.Nodes)
	n, err := rollout.MaxUnavailable(maxUnavailable, len(workers))
	if err != nil {
		return err
	}
	fmt.Fprintln(g.Out)
	if len(cps) > 0 {
		note := ""
		if slices.Contains(cps, leader) {
			note = " (etcd leader " + leader + " last)"
		}
		fmt.Fprintf(g.Out, "Order: control planes one at a time%s: %s\n", note, strings.Join(cps, ", "))
	}
	if len(workers) > 0 {
		fmt.Fprintf(g.Out, "Order: workers, %d at a time: %s\n", n, strings.Join(workers, ", "))
	}
	return nil
}

func writeResult(w io.Writer, res *rollout.Result) error {
	rows := make([][]string, 0, len(res.Nodes))
	for _, n := range res.Nodes {
		var steps []string
		for _, s := range n.Steps {
			steps = append(steps, s.Step)
		}
		rows = append(rows, []string{n.Name, strings.Join(steps, ","), n.Took.Round(100 * time.Millisecond).String()})
	}
	return Table(w, []string{"NODE", "STEPS", "TOOK"}, rows)
}
