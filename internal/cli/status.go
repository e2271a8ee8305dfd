package cli

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"
)

// StatusSection prints one part of `dodai status` (nodes, platform
// components, ...). It returns healthy=false when that part is not all
// ready, which makes the command exit non-zero.
type StatusSection struct {
	Name string
	// Order sorts sections: nodes (10) before components (20).
	Order int
	Run   func(ctx context.Context, g *Globals, opts StatusOptions) (healthy bool, err error)
}

// StatusOptions are the flags of `dodai status`.
type StatusOptions struct {
	Kubeconfig string
	Tree       bool
}

var statusSections []StatusSection

func registerStatus(s StatusSection) { statusSections = append(statusSections, s) }

func init() {
	register(func(g *Globals) *cobra.Command {
		var opts StatusOptions
		cmd := &cobra.Command{
			Use:   "status [SECTION...]",
			Short: "Show the cluster: nodes, then platform components with root causes",
			Long: `status shows every section (netboot: the machines netboot saw; nodes; components:
the platform's HelmReleases with root causes) or only the named ones, e.g.
"dodai status components". It exits 1 when anything is not ready.`,
			Args: cobra.ArbitraryArgs,
			RunE: func(cmd *cobra.Command, args []string) error {
				if len(statusSections) == 0 {
					return fmt.Errorf("no status sections available")
				}
				sections, err := selectSections(statusSections, args)
				if err != nil {
					return err
				}
				sortSections(sections)
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
		return cmd
	})
}

func sortSections(s []StatusSection) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j].Order < s[j-1].Order; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// selectSections returns the sections named in names (all when empty).
func selectSections(all []StatusSection, names []string) ([]StatusSection, error) {
	if len(names) == 0 {
		return append([]StatusSection(nil), all...), nil
	}
	var out []StatusSection
	for _, n := range names {
		found := false
		for _, s := range all {
			if s.Name == n || strings.ReplaceAll(s.Name, " ", "-") == n {
				out = append(out, s)
				found = true
				break
			}
		}
		if !found {
			var known []string
			for _, s := range all {
				known = append(known, strings.ReplaceAll(s.Name, " ", "-"))
			}
			sort.Strings(known)
			return nil, fmt.Errorf("unknown status section %q (known: %s)", n, strings.Join(known, ", "))
		}
	}
	return out, nil
}
