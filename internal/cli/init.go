package cli

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/spf13/cobra"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/clusterdir"
	"github.com/dodai-dev/dodai/internal/fsutil"
	"github.com/dodai-dev/dodai/internal/machineconfig"
)

var nameCleanRe = regexp.MustCompile(`[^a-z0-9-]+`)

func newInitCmd(g *Globals) *cobra.Command {
	var name, endpoint string
	var example bool
	cmd := &cobra.Command{
		Use:   "init [DIR]",
		Short: "Create a cluster directory: a commented cluster.yaml and secrets.yaml (never replaced)",
		Long: `init creates the cluster directory with a commented cluster.yaml (--example: a
complete 3 control-plane + 2 worker cluster that validates and renders as-is) and
secrets.yaml, the cluster's PKI and tokens, generated with Talos machinery.

An existing cluster.yaml is kept. An existing secrets.yaml is NEVER replaced or
regenerated, by this or any other command, with any flag.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := g.ClusterDir
			if len(args) == 1 {
				dir = args[0]
			}
			return runInit(g, dir, name, endpoint, example)
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "cluster name (default: the directory name)")
	cmd.Flags().StringVar(&endpoint, "endpoint", "", "Kubernetes API endpoint URL (https://HOST:6443)")
	cmd.Flags().BoolVar(&example, "example", false, "write a complete example cluster (3 control-plane, 2 worker nodes)")
	return cmd
}

func runInit(g *Globals, dir, name, endpoint string, example bool) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating cluster directory: %w", err)
	}
	if name == "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return err
		}
		name = strings.Trim(nameCleanRe.ReplaceAllString(strings.ToLower(filepath.Base(abs)), "-"), "-")
		if name == "" {
			name = "dodai"
		}
	}
	if !cluster.ValidName(name) {
		return fmt.Errorf("--name %q is not a valid cluster name (lowercase letters, digits and '-')", name)
	}
	if endpoint == "" {
		endpoint = "https://192.168.100.10:6443"
		if !example {
			endpoint = "https://192.168.100.11:6443"
		}
	}
	if u, err := url.Parse(endpoint); err != nil || u.Scheme != "https" || u.Host == "" || strings.ContainsAny(endpoint, " #\"'") {
		return fmt.Errorf("--endpoint %q is not an https URL like https://192.168.100.10:6443", endpoint)
	}
	paths := cluster.At(dir)
	file := paths.ClusterFile()
	body, err := cluster.Template(example, cluster.TemplateParams{Name: name, Endpoint: endpoint})
	if err != nil {
		return err
	}
	switch err := fsutil.CreateExclusive(file, body, 0o644); {
	case err == nil:
		fmt.Fprintf(g.Out, "wrote %s\n", file)
	case errors.Is(err, fsutil.ErrExists):
		fmt.Fprintf(g.Out, "kept %s (it exists)\n", file)
	default:
		return err
	}
	// The Talos version decides the secrets' contract: read it from the
	// (possibly pre-existing) cluster file, through the one loader. A file
	// that can't be read is an error; one that does not decode yet still
	// gets its secrets, for the default version, and its problems shown.
	talosVersion := cluster.DefaultTalosVersion
	d, err := clusterdir.Open(dir)
	if err != nil {
		return err
	}
	if c := d.Cluster(); c != nil {
		talosVersion = c.Spec.TalosVersion
	} else {
		fmt.Fprintf(g.Err, "warning: %s does not parse yet (secrets use Talos %s):\n%v\n", file, talosVersion, d.Problems)
	}
	created, err := machineconfig.InitSecrets(dir, talosVersion)
	if err != nil {
		return err
	}
	secretsFile := paths.Secrets()
	if created {
		fmt.Fprintf(g.Out, "wrote %s (mode 0600; keep it safe, never regenerated)\n", secretsFile)
	} else {
		fmt.Fprintf(g.Out, "kept %s (it exists; secrets are never regenerated)\n", secretsFile)
	}
	return nil
}
