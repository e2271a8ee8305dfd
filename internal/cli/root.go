// Package cli holds dodai's cobra commands. Commands stay thin: they parse
// flags, open the cluster directory (Globals.Open, through
// internal/clusterdir) and call the library packages. commands.go lists
// every command, render step and status section; flags and environment
// variables are read here and nowhere else.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/clusterdir"
)

// Globals are the flags every command shares.
type Globals struct {
	// ClusterDir is -C / --cluster-dir.
	ClusterDir string
	// Output is --output: table, json or yaml.
	Output string
	// Verbose turns on debug logs.
	Verbose bool
	// LogFormat is text or json.
	LogFormat string
	// talosPort is --talos-port of the commands that talk to nodes (see
	// TalosPort).
	talosPort int

	In       io.Reader
	Out, Err io.Writer
	Log      *slog.Logger
}

// Open opens the cluster directory (-C) through the one loader,
// internal/clusterdir, which runs every check. Warnings are printed to
// stderr; any error-level problem makes it fail with all of them.
func (g *Globals) Open() (*clusterdir.Dir, error) {
	d, err := clusterdir.Open(g.ClusterDir)
	if err != nil {
		return nil, err
	}
	if err := d.Err(); err != nil {
		return nil, err
	}
	for _, w := range d.Problems.Warnings() {
		fmt.Fprintln(g.Err, w.String())
	}
	return d, nil
}

// Load is Open for commands that need only the cluster file.
func (g *Globals) Load() (*cluster.Source, error) {
	d, err := g.Open()
	if err != nil {
		return nil, err
	}
	return d.Source, nil
}

// Paths are the paths of the cluster directory (-C).
func (g *Globals) Paths() cluster.Layout { return cluster.At(g.ClusterDir) }

// ExitError carries a specific exit code (e.g. validate's 1) with an
// optional message already printed.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

// NewRoot builds the dodai command tree.
func NewRoot(g *Globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "dodai",
		Short: "Turn bare-metal servers into a Kubernetes cloud from one declarative file",
		Long: `dodai (土台, "foundation") turns a rack of bare-metal servers into your own
Kubernetes-based cloud from one file, cluster.yaml: the Talos image, the netboot
server, the node configs and bootstrap, and the platform delivered by Flux.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			switch g.Output {
			case "table", "json", "yaml":
			default:
				return fmt.Errorf("--output must be table, json or yaml, got %q", g.Output)
			}
			level := slog.LevelInfo
			if g.Verbose {
				level = slog.LevelDebug
			}
			opts := &slog.HandlerOptions{Level: level}
			switch g.LogFormat {
			case "json":
				g.Log = slog.New(slog.NewJSONHandler(g.Err, opts))
			case "text":
				g.Log = slog.New(slog.NewTextHandler(g.Err, opts))
			default:
				return fmt.Errorf("--log-format must be text or json, got %q", g.LogFormat)
			}
			return nil
		},
	}
	root.SetIn(g.In)
	root.SetOut(g.Out)
	root.SetErr(g.Err)
	pf := root.PersistentFlags()
	pf.StringVarP(&g.ClusterDir, "cluster-dir", "C", ".", "cluster directory holding cluster.yaml")
	pf.StringVarP(&g.Output, "output", "o", "table", "output format where a command prints data: table, json or yaml")
	pf.BoolVarP(&g.Verbose, "verbose", "v", false, "verbose (debug) logging")
	pf.StringVar(&g.LogFormat, "log-format", "text", "log format: text or json")
	_ = root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"table", "json", "yaml"}, cobra.ShellCompDirectiveNoFileComp))
	root.AddCommand(commands(g)...)
	return root
}

// Main runs dodai with the given arguments and returns the exit code.
func Main(args []string, in io.Reader, out, errOut io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return Run(ctx, args, in, out, errOut)
}

// Run is Main with a caller-provided context (tests use it).
func Run(ctx context.Context, args []string, in io.Reader, out, errOut io.Writer) int {
	g := &Globals{In: in, Out: out, Err: errOut, Log: slog.New(slog.NewTextHandler(errOut, nil))}
	root := NewRoot(g)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		if ee.Err != nil {
			fmt.Fprintln(errOut, "error:", ee.Err)
		}
		return ee.Code
	}
	fmt.Fprintln(errOut, "error:", err)
	return 1
}
