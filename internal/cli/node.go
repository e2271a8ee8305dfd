package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"

	"github.com/dodai-dev/dodai/internal/bootstrap"
	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/discover"
	"github.com/dodai-dev/dodai/internal/macaddr"
	"github.com/dodai-dev/dodai/internal/netboot/registry"
	"github.com/dodai-dev/dodai/internal/node"
)

func newNodeCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Remove or reinstall a node of the cluster",
		Long: `node takes a machine out of the cluster (remove) or installs it again (reinstall).
Adding a node is "add it to cluster.yaml, then dodai bootstrap --node NAME".`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newNodeRemoveCmd(g), newNodeReinstallCmd(g))
	return cmd
}

// nodeOptions prepares node.Options for one node of the cluster file.
func (g *Globals) nodeOptions(d *day2, name string, needKube bool) (node.Options, error) {
	n := d.node(name)
	if n == nil {
		return node.Options{}, fmt.Errorf("no node %s in %s", name, d.src.File)
	}
	idx := 0
	for i := range d.src.Cluster.Spec.Nodes {
		if d.src.Cluster.Spec.Nodes[i].Name == name {
			idx = i
		}
	}
	o := node.Options{Target: node.Target{Node: n, Address: d.address(n), Index: idx}, Source: d.src,
		Talosconfig: d.tc, Port: d.port, Etcd: d.etcd(), Log: g.Log}
	cfg, err := restConfig(g.kubeconfig(""))
	if err != nil {
		if needKube {
			return o, err
		}
		g.Log.Warn("no Kubernetes API: the Node object is not touched", "error", err)
		return o, nil
	}
	if o.Kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return o, err
	}
	return o, nil
}

// parseMACs are the node's MACs as the netboot registry keys them.
func parseMACs(macs []string) []macaddr.MAC {
	var out []macaddr.MAC
	for _, m := range macs {
		if c, err := macaddr.Parse(m); err == nil {
			out = append(out, c)
		}
	}
	return out
}

// netbootForget updates the netboot registry for the node's machine:
// dropped (removed from the cluster) or marked to boot Talos again
// (reinstall).
func netbootForget(l cluster.Layout, macs []string, drop bool) error {
	reg, err := registry.New(registry.Options{Path: l.MachinesState()})
	if err != nil {
		return err
	}
	for _, mac := range parseMACs(macs) {
		if drop {
			reg.Forget(mac)
		} else if _, ok := reg.Get(mac); ok {
			reg.SetInstalled(mac, false)
		}
	}
	return reg.Save()
}

func printSteps(g *Globals, res *node.Result) error {
	return g.Print(res, func(w io.Writer) error {
		rows := make([][]string, 0, len(res.Steps))
		for _, s := range res.Steps {
			rows = append(rows, []string{s.Name, orDash(s.Detail)})
		}
		return Table(w, []string{"STEP", "DETAIL"}, rows)
	})
}

func newNodeRemoveCmd(g *Globals) *cobra.Command {
	var force bool
	var timeout, drainTimeout, poll time.Duration
	cmd := &cobra.Command{
		Use:   "remove NAME",
		Short: "Take a node out of the cluster: drain, leave etcd, reset, delete the Node",
		Long: `remove takes a node out of the cluster, in this order:

  cordon and drain it (PodDisruptionBudgets respected, bounded by --drain-timeout);
  for a control-plane node, hand etcd leadership over and leave etcd;
  reset it through Talos (graceful; STATE and EPHEMERAL wiped; powered off);
  delete its Kubernetes Node; forget the machine in state/ (netboot registry,
  bootstrap record).

It refuses, before changing anything, to remove the only control-plane node, a
control plane whose removal would break etcd's quorum, or one that would leave
etcd unable to survive a failure it survives now (3 → 2 members: an even
membership that needs both; --force overrides this one; 5 → 4 → 3 is allowed).

--force is for a dead machine: no drain and no reset; its etcd member is removed
by ID through a healthy member, and its Node deleted.

The node stays in cluster.yaml until you delete it there: the command says where.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := g.openDay2()
			if err != nil {
				return err
			}
			o, err := g.nodeOptions(d, args[0], !force)
			if err != nil {
				return err
			}
			defer o.Etcd.Close()
			o.Force, o.DrainTimeout, o.Poll = force, drainTimeout, poll
			macs := o.Target.Node.MACs
			o.Forget = func(context.Context) error {
				if err := netbootForget(d.layout, macs, true); err != nil {
					return err
				}
				return bootstrap.ForgetNode(d.layout, args[0], false)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			res, err := node.Remove(ctx, o)
			if len(res.Steps) > 0 {
				if perr := printSteps(g, res); perr != nil {
					return perr
				}
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(g.Err, "node %s removed; now %s\n", res.Node, res.Hint)
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "the machine is dead: no drain or reset; remove its etcd member by ID and its Node (also overrides the 3 → 2 refusal)")
	cmd.Flags().DurationVar(&drainTimeout, "drain-timeout", 5*time.Minute, "give up draining after this long")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Minute, "give up after this long")
	cmd.Flags().DurationVar(&poll, "poll-interval", time.Second, "interval between checks while waiting")
	_ = cmd.Flags().MarkHidden("poll-interval")
	g.talosPortFlag(cmd)
	return cmd
}

func newNodeReinstallCmd(g *Globals) *cobra.Command {
	var networks []string
	var timeout, drainTimeout, poll time.Duration
	var pw reinstallPower
	cmd := &cobra.Command{
		Use:   "reinstall NAME",
		Short: "Reset a node to maintenance mode and install it again with the current config",
		Long: `reinstall drains the node, makes a control plane leave etcd (refused when that
would break quorum), resets it through Talos (graceful; STATE and EPHEMERAL
wiped; it reboots into maintenance mode), deletes its Kubernetes Node, waits
(up to 10 minutes) until the machine answers in maintenance mode again, and
installs it again exactly as "dodai bootstrap --node NAME" does: found by MAC,
the install disk resolved and held to the disk confirmed before, the config of
the current cluster.yaml applied; a control plane's new etcd member must be
healthy before the command returns.

--power makes it hands-free through the node's BMC (spec.nodes[].bmc): the
reset powers the machine off instead of rebooting it from its disk; once the
BMC reports it off, it is powered on booting from the network once and
followed through dodai netboot (which must be running on its boot network)
until it fetched its kernel, so it comes back with the image the cluster file
names today. Without a usable BMC (or its credentials) the command refuses
before it changes anything.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			nets, err := discover.ParseNetworks(networks)
			if err != nil {
				return err
			}
			d, err := g.openDay2()
			if err != nil {
				return err
			}
			o, err := g.nodeOptions(d, args[0], true)
			if err != nil {
				return err
			}
			defer o.Etcd.Close()
			o.DrainTimeout, o.Poll = drainTimeout, poll
			macs := o.Target.Node.MACs
			if pw.on {
				if o.PowerOn, err = pw.powerOn(g, d, args[0], macs, poll); err != nil {
					return err
				}
			}
			o.Forget = func(context.Context) error {
				if err := netbootForget(d.layout, macs, false); err != nil {
					return err
				}
				return bootstrap.ForgetNode(d.layout, args[0], true)
			}
			o.InMaintenance = func(ctx context.Context) (string, error) {
				tg, err := discover.TargetsFor(d.layout, nets)
				if err != nil {
					return "", err
				}
				ms, err := discover.Scan(ctx, discover.Options{Networks: tg.Networks, Hosts: tg.Hosts, Port: d.port})
				if err != nil {
					return "", err
				}
				for _, m := range ms {
					if n := discover.NodeFor(m, d.src.Cluster); n != nil && n.Name == args[0] {
						return m.Address, nil
					}
				}
				return "", nil
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			res, err := node.Reinstall(ctx, o, func(ctx context.Context) error {
				_, err := bootstrap.Run(ctx, bootstrap.Options{Source: d.src, Renderer: d.renderer, Nodes: []string{args[0]},
					Networks: nets, Port: d.port, PollInterval: poll, Log: g.Log})
				return err
			})
			if len(res.Steps) > 0 {
				if perr := printSteps(g, res); perr != nil {
					return perr
				}
			}
			return err
		},
	}
	cmd.Flags().StringSliceVar(&networks, "network", nil, "IPv4 network to search for the machine in maintenance mode (repeatable; default: directly connected networks)")
	cmd.Flags().DurationVar(&drainTimeout, "drain-timeout", 5*time.Minute, "give up draining after this long")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Minute, "give up after this long")
	cmd.Flags().DurationVar(&poll, "poll-interval", time.Second, "interval between checks while waiting")
	_ = cmd.Flags().MarkHidden("poll-interval")
	pw.flags(cmd)
	g.talosPortFlag(cmd)
	return cmd
}
