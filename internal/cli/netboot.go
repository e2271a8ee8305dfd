package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/incluster/handover"
	"github.com/dodai-dev/dodai/internal/incluster/netbootstore"
	"github.com/dodai-dev/dodai/internal/incluster/replicas"
	"github.com/dodai-dev/dodai/internal/netboot"
	"github.com/dodai-dev/dodai/internal/netboot/dhcp"
	"github.com/dodai-dev/dodai/internal/state"
)

// statusNetboot is `dodai status`' section of the machines netboot has seen
// (state/machines.json). After `dodai pivot` they are the cluster's
// Machines, preceded by the in-cluster boot server replicas (their
// heartbeats).
func statusNetboot(ctx context.Context, g *Globals, opts StatusOptions) (bool, error) {
	st, pivoted, err := pivotedNetboot(ctx, g, opts.Kubeconfig)
	if err != nil {
		return false, err
	}
	if !pivoted {
		read, err := state.ReadMachines(g.Paths().MachinesState())
		if err != nil {
			return false, err
		}
		st.Machines = read.Machines
	}
	var v any = state.Machines{Machines: st.Machines}
	if pivoted {
		v = st
	}
	return true, g.Print(v, func(w io.Writer) error {
		if pivoted {
			if err := replicaTable(w, st); err != nil {
				return err
			}
		}
		if len(st.Machines) == 0 {
			fmt.Fprintln(w, "No machines seen by dodai netboot yet.")
			return nil
		}
		rows := make([][]string, 0, len(st.Machines))
		for _, m := range st.Machines {
			rows = append(rows, []string{m.MAC, netbootDash(m.Node), netbootDash(m.Arch), netbootDash(m.IP), m.Stage, m.LastSeen.Local().Format(time.DateTime)})
		}
		return Table(w, []string{"MAC", "NODE", "ARCH", "IP", "STAGE", "LAST SEEN"}, rows)
	})
}

// netbootStatus is the netboot section after a pivot.
type netbootStatus struct {
	Namespace string             `json:"namespace"`
	Replicas  []replicas.Replica `json:"replicas"`
	Machines  []state.Machine    `json:"machines"`
}

// replicaTable lists the in-cluster boot servers by their heartbeats.
func replicaTable(w io.Writer, st netbootStatus) error {
	if len(st.Replicas) == 0 {
		fmt.Fprintf(w, "No dodai netboot --in-cluster runs (no heartbeat in namespace %s): enable the dodai component and label the boot nodes dodai.dev/netboot=true.\n\n", st.Namespace)
		return nil
	}
	fmt.Fprintf(w, "Boot servers in the cluster (namespace %s):\n", st.Namespace)
	rows := make([][]string, 0, len(st.Replicas))
	for _, r := range st.Replicas {
		how := "running"
		if !r.Running {
			how = "not running (no heartbeat since " + r.Renewed.Local().Format(time.DateTime) + ")"
		}
		rows = append(rows, []string{r.Name, netbootDash(r.Address), netbootDash(r.Mode), netbootDash(r.URL), how})
	}
	if err := Table(w, []string{"SERVER", "ADDRESS", "MODE", "HTTP", "STATE"}, rows); err != nil {
		return err
	}
	fmt.Fprintln(w)
	return nil
}

func netbootDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newNetbootCmd(g *Globals) *cobra.Command {
	var o netboot.Options
	var serveConfigs, force, inCluster bool
	var durability string
	var k inClusterFlags
	cmd := &cobra.Command{
		Use:   "netboot",
		Short: "Run the DHCP/proxyDHCP + TFTP + HTTP/iPXE server that boots machines into the cluster's Talos image",
		Long: `netboot serves the boot network until interrupted (Ctrl-C / SIGTERM):

  proxy mode (default)  answers PXE/HTTP-boot clients beside the site's DHCP
                        server (never hands out addresses), incl. port 4011
  dhcp mode             full DHCP server for an isolated provisioning network
                        (spec.boot.subnet/range/router/dns, reservations from
                        node addresses, leases kept in state/leases.json)

Firmware loads iPXE over TFTP (or HTTP for UEFI HTTP boot), iPXE loads its
per-machine script from HTTP, then the Talos kernel and initramfs.

Machine configs hold the cluster's secrets. In dhcp mode machines listed in
cluster.yaml get talos.config=, served only to the address dodai leased to
them. In proxy mode dodai cannot know who holds an address, so by default
every machine boots into Talos maintenance mode and dodai bootstrap applies
the configs over the Talos API; --serve-configs serves them over HTTP
anyway (trusted boot networks only; the risk is printed at startup).

A machine that installed Talos (it fetched its config, or dodai bootstrap
applied it) boots from disk on its next netboot (POST /reinstall?mac=… from
the netboot host undoes that). Flags override spec.boot of cluster.yaml.

--in-cluster keeps the machine registry and the dhcp-mode leases in the
cluster (Machines and DHCPLeases, after dodai pivot) instead of the state
directory, which is then neither read nor written: several replicas on one
boot network answer together, the apiserver decides which one binds an
address. It refuses to start while a local dodai netboot holds this cluster
directory's lock. The dodai chart runs it as a DaemonSet.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if inCluster {
				for _, name := range []string{"force", "lease-durability"} {
					if cmd.Flags().Changed(name) {
						return fmt.Errorf("--%s does not apply with --in-cluster (it concerns the local state directory)", name)
					}
				}
				if holder, held, err := handover.Held(g.ClusterDir); err != nil {
					return err
				} else if held {
					return fmt.Errorf("refusing to run in-cluster: %s is running for this cluster directory; two boot servers on one network can reinstall machines, stop it first", holder)
				}
			} else {
				for _, name := range []string{"kubeconfig", "namespace", "server-name"} {
					if cmd.Flags().Changed(name) {
						return fmt.Errorf("--%s needs --in-cluster", name)
					}
				}
				if err := refusePivoted(g.ClusterDir, force); err != nil {
					return err
				}
			}
			src, err := g.Load()
			if err != nil {
				return err
			}
			o.ClusterDir = g.ClusterDir
			o.Cluster = src.Cluster
			o.Log = g.Log
			if o.Config, err = nodeConfigFunc(src); err != nil {
				return err
			}
			if f, ok := g.Out.(*os.File); ok {
				if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 && g.LogFormat != "json" {
					o.View, o.ViewTTY = g.Out, true
					if !g.Verbose {
						// The table redrawn in place replaces the info
						// lines; warnings and errors still print.
						o.Log = slog.New(slog.NewTextHandler(g.Err, &slog.HandlerOptions{Level: slog.LevelWarn}))
					}
				}
			}
			if o.View == nil && g.LogFormat != "json" {
				o.View = g.Out
			}
			if cmd.Flags().Changed("serve-configs") {
				o.ServeConfigs = &serveConfigs
			}
			var shared *netbootstore.Store
			if inCluster {
				// DHCP bursts must not queue behind client-side rate limits.
				cfg, err := k.rest(-1, 0)
				if err != nil {
					return err
				}
				store, err := netbootstore.Open(cmd.Context(), netbootstore.Options{REST: cfg, Namespace: k.ns(),
					Server: k.serverName(), Cluster: src.Cluster, Log: g.Log})
				if err != nil {
					return err
				}
				o.Shared, o.ConfigApplied, shared = store, store.ConfigApplied, store
			} else {
				o.ConfigApplied = bootstrapApplied(g.ClusterDir)
				if o.LeaseDurability, err = dhcp.ParseDurability(durability); err != nil {
					return fmt.Errorf("--lease-durability: %w", err)
				}
				// The lock is taken by New once the input is checked (a bad
				// flag is reported as such while another server runs) and
				// before the lease journal is opened; Run releases it.
				o.Lock = func() (func(), error) { return handover.Lock(g.ClusterDir, "dodai netboot") }
			}
			srv, err := netboot.New(o)
			if err != nil {
				return err
			}
			if shared != nil {
				// Its heartbeat: dodai status netboot lists the replicas.
				shared.Announce(srv.ServerIP().String(), srv.BaseURL(), srv.Mode())
			}
			// For dodai health: which server runs and where it answers.
			done, err := state.RecordNetbootRun(src.Layout().NetbootRun(), srv.BaseURL())
			if err != nil {
				return err
			}
			defer done()
			return srv.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Interface, "interface", "", "boot network interface (default spec.boot.interface)")
	f.StringVar(&o.Mode, "mode", "", "proxy (beside the site's DHCP server) or dhcp (full server); default spec.boot.mode, else proxy")
	f.StringVar(&o.AssetsDir, "assets", "", "Talos kernel/initramfs directory: <arch>/vmlinuz + <arch>/initramfs.xz, or kernel-<arch> + initramfs-<arch>.xz (default <cluster dir>/assets)")
	f.StringVar(&o.IPXEDir, "ipxe-dir", "", "iPXE binaries: undionly.kpxe, snponly.efi/ipxe.efi, arm64/snp.efi (default "+netboot.DefaultIPXEDir+", Debian package ipxe)")
	f.StringVar(&o.HTTPAddr, "http-addr", "", "HTTP listen address (default :8080)")
	f.BoolVar(&o.OnlyKnown, "only-known", false, "answer only MACs listed in cluster.yaml")
	f.BoolVar(&o.NoTFTP, "no-tftp", false, "don't serve TFTP on port 69 (another TFTP server serves the iPXE directory, or only iPXE ROMs and UEFI HTTP boot are used)")
	f.BoolVar(&serveConfigs, "serve-configs", false, "serve machine configs over HTTP (talos.config=); default: on in dhcp mode, off in proxy mode, where anyone on the boot network could claim a node's address")
	f.StringVar(&durability, "lease-durability", "write", "dhcp mode: when a lease counts as recorded before its ACK: write (in the journal; survives any crash of dodai) or sync (fdatasync'd, group commit; also survives a power loss)")
	f.BoolVar(&force, "force", false, "run even though the cluster was pivoted (dodai pivot) and its boot server runs in the cluster")
	f.BoolVar(&inCluster, "in-cluster", false, "keep the machine registry and dhcp-mode leases in the cluster (Machines, DHCPLeases) instead of the state directory; several replicas answer together")
	k.register(f, true)
	f.StringVar(&o.EFIBinary, "efi-binary", "", "x86-64 UEFI iPXE: snponly.efi (default, firmware's NIC driver) or ipxe.efi (iPXE's drivers)")
	_ = cmd.RegisterFlagCompletionFunc("mode", cobra.FixedCompletions([]string{"proxy", "dhcp"}, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("efi-binary", cobra.FixedCompletions([]string{"snponly.efi", "ipxe.efi"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// bootstrapApplied tells netboot when dodai bootstrap applied a node's
// config (state/bootstrap.json), so a machine that installed Talos from
// maintenance mode boots from disk on its next netboot.
func bootstrapApplied(clusterDir string) func(node string) (time.Time, bool) {
	return func(node string) (time.Time, bool) {
		st, err := state.ReadBootstrap(cluster.At(clusterDir).BootstrapState())
		if err != nil {
			return time.Time{}, false
		}
		if n := st.Nodes[node]; n != nil && n.Applied != nil {
			return *n.Applied, true
		}
		return time.Time{}, false
	}
}

var _ netboot.Shared = (*netbootstore.Store)(nil)
