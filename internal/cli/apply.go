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

	"github.com/dodai-dev/dodai/internal/bootstrap"
	"github.com/dodai-dev/dodai/internal/discover"
	"github.com/dodai-dev/dodai/internal/plan"
	"github.com/dodai-dev/dodai/internal/platform"
	"github.com/dodai-dev/dodai/internal/platform/install"
	"github.com/dodai-dev/dodai/internal/rollout"
)

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
  and/or run the Talos upgrade through the API of the release the node runs
  (LifecycleService on 1.13+, MachineService.Upgrade before), wait until the
  node is back with the expected Talos version and extensions (read from its
  resources), apply its config in the new release's form, wait for its Node
  Ready with the expected kubelet, uncordon;
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
			statePath := g.Paths().RolloutState()
			prev, err := rollout.ReadState(statePath)
			if err != nil {
				return err
			}
			rollout.Adopt(p, prev)
			pending := prev.Pending()
			if p.Refused() {
				if err := g.Print(p, func(w io.Writer) error { return writePlan(w, p, false) }); err != nil {
					return err
				}
				return &ExitError{Code: 1, Err: fmt.Errorf("the plan is refused:\n  %s", strings.Join(p.AllRefusals(), "\n  "))}
			}
			if !p.Changes() && !pending {
				fmt.Fprintln(g.Out, "Nothing to do: the cluster matches cluster.yaml.")
				return nil
			}
			if g.Output == "table" {
				if err := g.Print(p, func(w io.Writer) error { return writePlan(w, p, dryRun) }); err != nil {
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
				SnapshotDir: g.Paths().EtcdSnapshots(), DrainTimeout: drainTimeout,
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
	g.talosPortFlag(cmd)
	return cmd
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
