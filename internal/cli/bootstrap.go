package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dodai-dev/dodai/internal/bootstrap"
	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/discover"
	"github.com/dodai-dev/dodai/internal/machineconfig"
	"github.com/dodai-dev/dodai/internal/phase"
	"github.com/dodai-dev/dodai/internal/talos"
	"github.com/dodai-dev/dodai/internal/tui"
)

// TalosPortEnv sets the Talos API port when --talos-port is not given
// (tests run many fake nodes per host, each set on its own port). Only the
// command line reads it; the libraries take the port as an option.
const TalosPortEnv = "DODAI_TALOS_PORT"

// talosPortFlag adds the hidden --talos-port flag to a command that talks
// to nodes (real nodes always use 50000).
func (g *Globals) talosPortFlag(cmd *cobra.Command) {
	cmd.Flags().IntVar(&g.talosPort, "talos-port", 0, "Talos API port (default $"+TalosPortEnv+", else 50000)")
	_ = cmd.Flags().MarkHidden("talos-port")
}

// TalosPort is --talos-port, else $DODAI_TALOS_PORT, else 50000.
func (g *Globals) TalosPort() (int, error) {
	if g.talosPort != 0 {
		if g.talosPort < 0 || g.talosPort > 65535 {
			return 0, fmt.Errorf("--talos-port %d is not a port", g.talosPort)
		}
		return g.talosPort, nil
	}
	if s := os.Getenv(TalosPortEnv); s != "" {
		p, err := strconv.Atoi(s)
		if err != nil || p <= 0 || p > 65535 {
			return 0, fmt.Errorf("$%s=%q is not a port", TalosPortEnv, s)
		}
		return p, nil
	}
	return talos.DefaultPort, nil
}

func newDiscoverCmd(g *Globals) *cobra.Command {
	var networks []string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "discover",
		Short: "Find Talos machines in maintenance mode and show their hardware",
		Long: `discover probes the Talos API port (50000) on the given networks (default: the
host's directly connected IPv4 networks, without docker/CNI bridges) and on the
addresses netboot recorded in state/machines.json, asks each open port for its
machine status over the maintenance API (only machines in maintenance mode answer
without a client certificate), deduplicates by MAC and reads each machine's
inventory: hostname, CPU, memory, disks, links, addresses, Talos version.
Machines are matched to the cluster file's nodes by MAC.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			nets, err := discover.ParseNetworks(networks)
			if err != nil {
				return fmt.Errorf("--network: %w", err)
			}
			// The cluster file is optional here: without it nothing matches.
			var c *cluster.Cluster
			if _, err := os.Stat(g.Paths().ClusterFile()); err == nil {
				src, err := g.Load()
				if err != nil {
					return err
				}
				c = src.Cluster
			}
			port, err := g.TalosPort()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			tg, ms, err := discover.Find(ctx, g.Paths(), c, nets, discover.Options{Port: port, Log: g.Log})
			if err != nil {
				return networkHint(err)
			}
			if ms == nil {
				ms = []*talos.Machine{}
			}
			return g.Print(ms, func(w io.Writer) error {
				if len(ms) == 0 {
					fmt.Fprintf(g.Err, "no machines in maintenance mode found on %v %v\n", tg.Networks, tg.Hosts)
				}
				rows := make([][]string, 0, len(ms))
				for _, m := range ms {
					var disks []string
					for _, d := range m.Disks {
						disks = append(disks, fmt.Sprintf("%s:%s:%s", d.Name, d.PrettySize, orDash(d.Transport)))
					}
					rows = append(rows, []string{m.Node, m.Address, m.MAC, m.Hostname, m.TalosVersion, m.CPUSummary(),
						fmt.Sprintf("%.1f GiB", float64(m.MemoryMiB)/1024), strings.Join(disks, ",")})
				}
				return Table(w, []string{"NODE", "ADDRESS", "MAC", "HOSTNAME", "TALOS", "CPU", "MEMORY", "DISKS"}, rows)
			})
		},
	}
	cmd.Flags().StringSliceVar(&networks, "network", nil, "IPv4 network to scan (CIDR; repeatable; default: directly connected networks)")
	cmd.Flags().DurationVar(&timeout, "timeout", time.Minute, "give up after this long")
	g.talosPortFlag(cmd)
	return cmd
}

// networkHint says which flag helps when the libraries found nothing to scan.
func networkHint(err error) error {
	if errors.Is(err, discover.ErrNoNetworks) {
		return fmt.Errorf("%w; pass --network CIDR", err)
	}
	return err
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newBootstrapCmd(g *Globals) *cobra.Command {
	var (
		nodes       []string
		networks    []string
		timeout     time.Duration
		interactive bool
		poll        time.Duration
		pw          bootPower
	)
	cmd := &cobra.Command{
		Use:   "bootstrap",
		Short: "Install every node from the cluster file, bootstrap etcd once, write kubeconfig",
		Long: `bootstrap brings the cluster file's nodes (or the --node ones) from Talos
maintenance mode to a working cluster, all nodes in parallel:

  find the machine by MAC (discovery) or, if installed, on its configured address;
  resolve its install disk (refusing none, several, USB or read-only disks, or a
  disk different from the one confirmed earlier); render its config for the Talos
  version it runs; dry-run, then apply; wait until it answers the authenticated
  API on its configured address; bootstrap etcd on the first control-plane node
  exactly once (recorded in state/bootstrap.json); wait for etcd and the
  Kubernetes API (/readyz); write kubeconfig (0600) and talosconfig.

A failing node does not stop the others; each failure is reported with its node
and cause, and the exit status is non-zero. Re-running resumes; re-running when
everything is done changes nothing. --interactive asks about each discovered
machine first (prefilled from its hardware), writes the answers into
cluster.yaml, and then runs the same declarative path.

--power first powers the nodes that are not installed yet through their BMCs
(see dodai power), each booting from the network once, at most --power-batch
at a time, follows them through dodai netboot's stages (DHCP, iPXE, kernel,
config) until their Talos API answers, and then takes the path above. dodai
netboot must be running for the cluster directory.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			nets, err := discover.ParseNetworks(networks)
			if err != nil {
				return fmt.Errorf("--network: %w", err)
			}
			port, err := g.TalosPort()
			if err != nil {
				return err
			}
			d, err := g.Open()
			if err != nil {
				return err
			}
			if interactive && pw.on {
				return fmt.Errorf("--power and --interactive do not go together: power the machines first (dodai power on --pxe-once), then bootstrap -i")
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			if interactive {
				// The session writes its answers into cluster.yaml and
				// reloads d from it.
				names, err := tui.Run(ctx, tui.Options{Dir: d, Networks: nets, Port: port, In: g.In, Out: g.Out, Log: g.Log})
				if err != nil {
					return networkHint(err)
				}
				if len(nodes) == 0 {
					// Bootstrap the machines just configured (other nodes of
					// the file may not be booted yet).
					nodes = names
				}
			}
			r, err := machineconfig.New(d.Source)
			if err != nil {
				return err
			}
			var powerErr error
			if pw.on {
				if powerErr = pw.run(ctx, g, d.Source, r, nodes, port); powerErr != nil {
					fmt.Fprintf(g.Err, "--power failed for some nodes (bootstrap goes on with the others):\n%v\n", powerErr)
				}
			}
			res, err := bootstrap.Run(ctx, bootstrap.Options{Source: d.Source, Renderer: r, Nodes: nodes, Networks: nets,
				Port: port, PollInterval: poll, Log: g.Log})
			if res != nil && len(res.Nodes) > 0 {
				perr := g.Print(res, func(w io.Writer) error {
					rows := make([][]string, 0, len(res.Nodes))
					for _, n := range res.Nodes {
						rows = append(rows, []string{n.Name, n.Role, orDash(n.Address), string(n.Action), orDash(n.Error)})
					}
					return Table(w, []string{"NODE", "ROLE", "ADDRESS", "RESULT", "ERROR"}, rows)
				})
				if perr != nil {
					return perr
				}
			}
			if err != nil {
				return &ExitError{Code: 1, Err: fmt.Errorf("bootstrap failed:\n%w", networkHint(err))}
			}
			if powerErr != nil {
				return &ExitError{Code: 1, Err: fmt.Errorf("bootstrap --power failed:\n%w", powerErr)}
			}
			if res.Kubeconfig != "" {
				fmt.Fprintf(g.Err, "kubeconfig written to %s\n", res.Kubeconfig)
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&nodes, "node", nil, "only these nodes (repeatable; default: all)")
	cmd.Flags().StringSliceVar(&networks, "network", nil, "IPv4 network to search for maintenance-mode machines (repeatable; default: directly connected networks)")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Minute, "give up after this long")
	cmd.Flags().BoolVarP(&interactive, "interactive", "i", false, "ask about each discovered machine and write the answers into cluster.yaml first")
	cmd.Flags().DurationVar(&poll, "poll-interval", time.Second, "interval between retries while waiting")
	_ = cmd.Flags().MarkHidden("poll-interval")
	g.talosPortFlag(cmd)
	pw.flags(cmd)
	return cmd
}

func newKubeconfigCmd(g *Globals) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "kubeconfig",
		Short: "(Re)fetch the admin kubeconfig from a control-plane node into the cluster directory",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			port, err := g.TalosPort()
			if err != nil {
				return err
			}
			src, err := g.Load()
			if err != nil {
				return err
			}
			r, err := machineconfig.New(src)
			if err != nil {
				return err
			}
			tc, err := r.Talosconfig()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			path, changed, err := bootstrap.FetchKubeconfig(ctx, src, tc, port)
			if err != nil {
				return err
			}
			if changed {
				fmt.Fprintf(g.Out, "kubeconfig written to %s\n", path)
			} else {
				fmt.Fprintf(g.Out, "kubeconfig at %s is up to date\n", path)
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", time.Minute, "give up after this long")
	g.talosPortFlag(cmd)
	return cmd
}

// statusNodes is `dodai status`' section of the nodes.
func statusNodes(ctx context.Context, g *Globals, _ StatusOptions) (bool, error) {
	port, err := g.TalosPort()
	if err != nil {
		return false, err
	}
	src, err := g.Load()
	if err != nil {
		return false, err
	}
	r, err := machineconfig.New(src)
	if err != nil {
		return false, err
	}
	tc, err := r.Talosconfig()
	if err != nil {
		return false, err
	}
	sts, err := bootstrap.Statuses(ctx, src, tc, port)
	if err != nil {
		return false, err
	}
	healthy := true
	for _, s := range sts {
		healthy = healthy && phase.Healthy(s.Stage, s.Ready)
	}
	return healthy, g.Print(map[string]any{"nodes": sts}, func(w io.Writer) error {
		rows := make([][]string, 0, len(sts))
		for _, s := range sts {
			ready := "no"
			if s.Ready {
				ready = "yes"
			}
			rows = append(rows, []string{s.Name, s.Role, orDash(s.Address), orDash(s.TalosVersion), string(s.Stage), ready})
		}
		return Table(w, []string{"NODE", "ROLE", "ADDRESS", "TALOS", "STAGE", "READY"}, rows)
	})
}
