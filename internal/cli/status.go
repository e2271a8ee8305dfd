package cli

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/spf13/cobra"
)

// StatusSection prints one part of `dodai status` (nodes, platform
// components, ...), listed in statusSections (commands.go). It returns
// healthy=false when that part is not all ready, which makes the command
// exit non-zero.
type StatusSection struct {
	Name string
	Run  func(ctx context.Context, g *Globals, opts StatusOptions) (healthy bool, err error)
}

// StatusOptions are the flags of `dodai status`.
type StatusOptions struct {
	Kubeconfig string
	Tree       bool
}

func newStatusCmd(g *Globals) *cobra.Command {
	var opts StatusOptions
	cmd := &cobra.Command{
		Use:   "status [SECTION...]",
		Short: "Show the cluster: nodes, then platform components with root causes",
		Long: `status shows every section (netboot: the machines netboot saw; nodes; components:
the platform's HelmReleases with root causes) or only the named ones, e.g.
"dodai status components". It exits 1 when anything is not ready.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			sections, err := selectSections(statusSections, args)
			if err != nil {
				return err
			}
			healthy := true
			for i, s := range sections {
				if i > 0 && g.Output == "table" {
					fmt.Fprintln(g.Out)
				}
				ok, err := s.Run(cmd.Context(), g, opts)
				if err != nil {
					return fmt.Errorf("%s: %w", s.Name, err)
				}
				healthy = healthy && ok
			}
			if !healthy {
				return &ExitError{Code: 1}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&opts.Kubeconfig, "kubeconfig", "", "kubeconfig (default: the cluster directory's kubeconfig)")
	cmd.Flags().BoolVar(&opts.Tree, "tree", false, "show the component dependency graph with states")
	g.talosPortFlag(cmd)
	return cmd
}

// selectSections returns the sections named in names, in the order of all
// (all when names is empty).
func selectSections(all []StatusSection, names []string) ([]StatusSection, error) {
	if len(names) == 0 {
		return all, nil
	}
	id := func(s StatusSection) string { return strings.ReplaceAll(s.Name, " ", "-") }
	for _, n := range names {
		if !slices.ContainsFunc(all, func(s StatusSection) bool { return s.Name == n || id(s) == n }) {
			var known []string
			for _, s := range all {
				known = append(known, id(s))
			}
			sort.Strings(known)
			return nil, fmt.Errorf("unknown status section %q (known: %s)", n, strings.Join(known, ", "))
		}
	}
	var out []StatusSection
	for _, s := range all {
		if slices.Contains(names, s.Name) || slices.Contains(names, id(s)) {
			out = append(out, s)
		}
	}
	return out, nil
}
