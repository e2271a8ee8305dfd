package cli

import (
	"github.com/spf13/cobra"

	"github.com/dodai-dev/dodai/internal/cluster"
)

func newSchemaCmd(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "schema",
		Short: "Print the JSON Schema of cluster.yaml (for editors: yaml-language-server)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := g.Out.Write(cluster.JSONSchema())
			return err
		},
	}
}
