package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/dodai-dev/dodai/internal/netboot"
	"github.com/dodai-dev/dodai/internal/state"
)

// statusNetboot is `dodai status`' section of the machines netboot has seen
// (state/machines.json).
func statusNetboot(_ context.Context, g *Globals, _ StatusOptions) (bool, error) {
	ms, err := state.ReadMachines(g.Paths().MachinesState())
	if err != nil {
		return false, err
	}
	return true, g.Print(ms, func(w io.Writer) error {
		if len(ms.Machines) == 0 {
			fmt.Fprintln(w, "No machines seen by dodai netboot yet.")
			return nil
		}
		rows := make([][]string, 0, len(ms.Machines))
		for _, m := range ms.Machines {
			rows = append(rows, []string{m.MAC, netbootDash(m.Node), netbootDash(m.Arch), netbootDash(m.IP), m.Stage, m.LastSeen.Local().Format(time.DateTime)})
		}
		return Table(w, []string{"MAC", "NODE", "ARCH", "IP", "STAGE", "LAST SEEN"}, rows)
	})
}

func netbootDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newNetbootCmd(g *Globals) *cobra.Command {
	var o netboot.Options
	var noTFTP bool
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
per-machine script from HTTP, then the Talos kernel and initramfs. Machines
listed in cluster.yaml also get talos.config=, served only to the address
the machine got; others boot into maintenance mode. After a machine fetched
its config and netboots again it is considered installed and boots from
disk (POST /reinstall?mac=… from the netboot host undoes that).
Flags override spec.boot of cluster.yaml.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
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
			var srv *netboot.Server
			if !noTFTP {
				o.TFTP = newTFTPServer(o.IPXEDirOrDefault(), o.Log, func(client netip.AddrPort, file string, n int64, aborted bool, err error) {
					if srv != nil {
						srv.TFTPDone(client, file, n, aborted, err)
					}
				})
			}
			srv, err = netboot.New(o)
			if err != nil {
				return err
			}
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
	f.BoolVar(&noTFTP, "no-tftp", false, "don't serve TFTP on port 69 (another TFTP server serves the iPXE directory, or only iPXE ROMs and UEFI HTTP boot are used)")
	f.StringVar(&o.EFIBinary, "efi-binary", "", "x86-64 UEFI iPXE: snponly.efi (default, firmware's NIC driver) or ipxe.efi (iPXE's drivers)")
	_ = cmd.RegisterFlagCompletionFunc("mode", cobra.FixedCompletions([]string{"proxy", "dhcp"}, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("efi-binary", cobra.FixedCompletions([]string{"snponly.efi", "ipxe.efi"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}
