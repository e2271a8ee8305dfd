package cli

import (
	"github.com/spf13/cobra"

	"github.com/dodai-dev/dodai/internal/lab"
)

func newLabCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "A virtual rack on this machine: QEMU machines with IPMI BMCs in a network namespace",
	}
	cmd.AddCommand(&cobra.Command{
		Use:    "bmc-hook MACHINE-DIR MC get|set PARM [VALUE]...",
		Short:  "ipmi_sim's chassis_control program for a lab machine (internal)",
		Hidden: true,
		Args:   cobra.MinimumNArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			return lab.Hook(args[0], args[1:], g.Out)
		},
	})
	return cmd
}
