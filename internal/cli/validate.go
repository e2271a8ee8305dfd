package cli

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/clusterdir"
)

func newValidateCmd(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "validate",
		Short: "Check the cluster directory and print every problem with its file, line, column and field path",
		Long: `validate runs every check dodai has on the cluster directory: the cluster file's
fields and values, the platform's component graph, and the traps of Talos
clusters (a link selected by its kernel name, a talosconfig that uses the VIP).
Every command runs the same checks; validate prints the warnings too, and also
checks files only some commands read (the BMC credentials of dodai power).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := clusterdir.Open(g.ClusterDir)
			if err != nil {
				return err
			}
			probs := append(cluster.Problems{}, d.Problems...)
			if d.Source != nil {
				for _, c := range validateChecks {
					probs = append(probs, c(d.Source)...)
				}
				probs.Sort()
			}
			type row struct {
				cluster.Problem
				Severity string `json:"severity" yaml:"severity"`
			}
			rows := make([]row, 0, len(probs))
			for _, p := range probs {
				rows = append(rows, row{p, p.Severity.String()})
			}
			if err := g.Print(rows, func(w io.Writer) error {
				for _, p := range probs {
					fmt.Fprintln(g.Out, p.String())
				}
				if len(probs.Errors()) == 0 {
					fmt.Fprintf(g.Out, "%s is valid (%d warning(s))\n", d.ClusterFile(), len(probs.Warnings()))
				}
				return nil
			}); err != nil {
				return err
			}
			if n := len(probs.Errors()); n > 0 {
				return &ExitError{Code: 1, Err: errors.New(plural(n, "error") + " in " + d.ClusterFile())}
			}
			return nil
		},
	}
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
