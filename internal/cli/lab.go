package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/dodai-dev/dodai/internal/lab"
)

func newLabCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "A virtual rack on this machine: QEMU machines with IPMI BMCs in a network namespace",
		Long: `dodai lab up builds a virtual rack for trying dodai without hardware: a network
namespace with a boot bridge (br0, 10.99.0.1/24) and a BMC network (10.99.1.0/24),
QEMU machines (UEFI or BIOS) with blank disks, one OpenIPMI ipmi_sim BMC per
machine (IPMI v2.0 over LAN) that starts and stops the machine's QEMU process,
and a cluster.yaml, bmc-credentials.yaml and secrets.yaml describing them.
Machines start powered off. dodai netboot, power and bootstrap then run against
it inside the namespace (ip netns exec NS dodai …), exactly as against a rack.
lab down stops and removes exactly what lab up made. Needs root.`,
	}
	var o lab.Options
	up := &cobra.Command{
		Use:   "up",
		Short: "Create the namespace, machines and BMCs, and write the lab's cluster.yaml",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Dir, o.Log = g.ClusterDir, g.Err
			st, err := lab.Up(o)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.Out, "lab up in %s: %d machine(s), powered off, in namespace %s (%s)\n\n", g.ClusterDir, len(st.Machines), st.Netns, st.Accel)
			if err := printLab(g, st); err != nil {
				return err
			}
			fmt.Fprintf(g.Out, `
next:
  ip netns exec %[1]s dodai netboot -C %[2]s --log-format json &      # boot server on br0 (assets: %[2]s/assets)
  ip netns exec %[1]s dodai power on --pxe-once -C %[2]s              # netboot every machine once
  dodai lab status -C %[2]s ;  dodai lab down -C %[2]s
`, st.Netns, g.ClusterDir)
			return nil
		},
	}
	f := up.Flags()
	f.IntVar(&o.ControlPlanes, "controlplanes", 1, "control-plane machines")
	f.IntVar(&o.Workers, "workers", 0, "worker machines")
	f.StringVar(&o.Firmware, "firmware", "uefi", "uefi, bios or mixed (alternating)")
	f.IntVar(&o.MemoryMiB, "memory", 2048, "memory per machine in MiB (Talos wants 2048+; the probe needs 256)")
	f.IntVar(&o.DiskGiB, "disk", 10, "disk per machine in GiB (sparse)")
	f.StringVar(&o.Accel, "accel", "", "kvm or tcg (default: kvm when /dev/kvm is usable)")
	f.BoolVar(&o.Probe, "probe", false, "without Talos assets: write a small probe system (host kernel + busybox initramfs) to DIR/assets")

	down := &cobra.Command{
		Use:   "down",
		Short: "Stop the lab's machines and BMCs and remove everything lab up made",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return lab.Down(g.ClusterDir, g.Err)
		},
	}
	status := &cobra.Command{
		Use:   "status",
		Short: "Show the lab's machines: power (QEMU process), BMC, boots",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, ms, err := lab.Status(g.ClusterDir)
			if err != nil {
				return err
			}
			return g.Print(map[string]any{"netns": st.Netns, "accel": st.Accel, "machines": ms}, func(w io.Writer) error {
				fmt.Fprintf(w, "namespace %s (%s)\n", st.Netns, st.Accel)
				var rows [][]string
				for _, m := range ms {
					bmc := "up"
					if !m.BMCUp {
						bmc = "DOWN"
					}
					pid := "-"
					if m.PID != 0 {
						pid = fmt.Sprint(m.PID)
					}
					boots := strings.Join(m.Boots, ",")
					if boots == "" {
						boots = "-"
					}
					rows = append(rows, []string{m.Name, m.Role, m.Firmware, m.MAC, m.Address, m.BMCAddr, bmc, m.Power, pid, boots})
				}
				return Table(w, []string{"NAME", "ROLE", "FIRMWARE", "MAC", "ADDRESS", "BMC", "BMC-SIM", "POWER", "PID", "BOOTS"}, rows)
			})
		},
	}
	cmd.AddCommand(up, down, status)
	return cmd
}

func printLab(g *Globals, st *lab.State) error {
	return g.Print(st, func(w io.Writer) error {
		var rows [][]string
		for _, m := range st.Machines {
			rows = append(rows, []string{m.Name, m.Role, m.Firmware, m.MAC, m.Address, m.BMCAddr + ":623"})
		}
		return Table(w, []string{"NAME", "ROLE", "FIRMWARE", "MAC", "ADDRESS", "BMC"}, rows)
	})
}
