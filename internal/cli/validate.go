package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/dodai-dev/dodai/internal/cluster"
)

// Validators registered by other areas (e.g. the platform catalog) run after
// the cluster file's own checks.
var validators []func(src *cluster.Source) cluster.Problems

func registerValidator(f func(src *cluster.Source) cluster.Problems) {
	validators = append(validators, f)
}

// validateChecks run only in `dodai validate`, not on every load: checks of
// files other commands don't need (e.g. BMC credentials, which netboot or
// bootstrap must not fail on).
var validateChecks []func(src *cluster.Source) cluster.Problems

func registerValidateCheck(f func(src *cluster.Source) cluster.Problems) {
	validateChecks = append(validateChecks, f)
}

// validateAll parses and validates a cluster file with every registered
// validator; src is nil when the file can't be decoded.
func validateAll(file string) (*cluster.Source, cluster.Problems, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, fmt.Errorf("reading cluster file: %w", err)
	}
	src, probs := cluster.Parse(file, raw)
	if src == nil {
		return nil, probs, nil
	}
	probs = append(probs, cluster.Validate(src)...)
	for _, v := range validators {
		probs = append(probs, v(src)...)
	}
	probs.Sort()
	return src, probs, nil
}

func init() {
	register(func(g *Globals) *cobra.Command {
		return &cobra.Command{
			Use:   "validate",
			Short: "Check cluster.yaml and print every problem with its line, column and field path",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				file := filepath.Join(g.ClusterDir, cluster.FileName)
				src, probs, err := validateAll(file)
				if err != nil {
					return err
				}
				if src != nil {
					for _, c := range validateChecks {
						probs = append(probs, c(src)...)
					}
				}
				if probs == nil {
					probs = cluster.Problems{}
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
						fmt.Fprintf(g.Out, "%s is valid (%d warning(s))\n", file, len(probs.Warnings()))
					}
					return nil
				}); err != nil {
					return err
				}
				if n := len(probs.Errors()); n > 0 {
					return &ExitError{Code: 1, Err: errors.New(plural(n, "error") + " in " + file)}
				}
				return nil
			},
		}
	})
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
