package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/clusterdir"
	"github.com/dodai-dev/dodai/internal/fsutil"
	"github.com/dodai-dev/dodai/internal/machineconfig"
)

func newConfigCmd(g *Globals) *cobra.Command {
	var nodes []string
	var out string
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Render one Talos machine config per node (generated/<node>.yaml) and the talosconfig",
		Long: `config renders, with Talos pkg/machinery, one machine config per node into
generated/<node>.yaml (mode 0600: configs hold secrets) and the talosconfig. Every
config is validated by machinery for metal before it is written. Rendering twice
gives byte-identical files; an existing talosconfig that matches is kept.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			src, err := g.Load()
			if err != nil {
				return err
			}
			if out == "" {
				out = g.Paths().Generated()
			}
			_, err = renderConfigs(g, src, nodes, out)
			return err
		},
	}
	cmd.Flags().StringSliceVar(&nodes, "node", nil, "render only these nodes (repeatable)")
	cmd.Flags().StringVar(&out, "out", "", "output directory for node configs (default: <cluster-dir>/generated)")
	_ = cmd.RegisterFlagCompletionFunc("node", completeNodes(g))
	return cmd
}

// renderMachineConfigs is the render step of the node configs.
func renderMachineConfigs(_ context.Context, g *Globals, src *cluster.Source, dir string) error {
	_, err := renderConfigs(g, src, nil, dir)
	return err
}

// renderConfigs writes the node configs and the talosconfig and returns the
// paths written.
func renderConfigs(g *Globals, src *cluster.Source, only []string, out string) ([]string, error) {
	r, err := machineconfig.New(src)
	if err != nil {
		return nil, err
	}
	names := only
	if len(names) == 0 {
		for _, n := range src.Cluster.Spec.Nodes {
			names = append(names, n.Name)
		}
	}
	if err := os.MkdirAll(out, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", out, err)
	}
	var written []string
	for _, name := range names {
		body, err := r.NodeConfig(name)
		if err != nil {
			return written, err
		}
		path := filepath.Join(out, name+".yaml")
		verb, err := writeIfChanged(path, body, 0o600)
		if err != nil {
			return written, err
		}
		fmt.Fprintf(g.Out, "%s %s\n", verb, path)
		written = append(written, path)
	}
	tcPath := src.Layout().Talosconfig()
	_, wrote, err := r.EnsureTalosconfig(tcPath)
	if err != nil {
		return written, err
	}
	if !wrote {
		fmt.Fprintf(g.Out, "kept %s (up to date)\n", tcPath)
		return written, nil
	}
	fmt.Fprintf(g.Out, "wrote %s\n", tcPath)
	return append(written, tcPath), nil
}

// writeIfChanged writes atomically unless the file already has this content
// and mode (so re-running leaves files, and their mtimes, alone).
func writeIfChanged(path string, body []byte, mode os.FileMode) (string, error) {
	if st, err := os.Stat(path); err == nil && st.Mode().Perm() == mode {
		if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, body) {
			return "unchanged", nil
		}
	}
	return "wrote", fsutil.WriteFileAtomic(path, body, mode)
}

func completeNodes(g *Globals) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		// Completion works on a file with problems, as long as it decodes.
		d, err := clusterdir.Open(g.ClusterDir)
		if err != nil || d.Cluster() == nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var names []string
		for _, n := range d.Cluster().Spec.Nodes {
			names = append(names, n.Name)
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}
