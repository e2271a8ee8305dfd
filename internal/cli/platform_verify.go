package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/dodai-dev/dodai/internal/platform/verify"
)

// platformCheckCommands are `dodai platform verify|images|mirror`: thin
// wrappers over package verify.
func platformCheckCommands(g *Globals) []*cobra.Command {
	var charts, kubeconfig, kubeVersion string
	run := func(cmd *cobra.Command, withCluster bool) (*verify.Report, error) {
		src, gr, err := platformGraph(g)
		if err != nil {
			return nil, err
		}
		o := verify.Options{Fetcher: &verify.Fetcher{Charts: charts}, KubeVersion: kubeVersion, Log: g.Log}
		if o.KubeVersion == "" {
			o.KubeVersion = src.Cluster.Spec.KubernetesVersion
		}
		if withCluster && kubeconfig != "" {
			cfg, err := restConfig(kubeconfig)
			if err != nil {
				return nil, err
			}
			o.RESTConfig = cfg
		}
		return verify.Verify(cmd.Context(), gr, o)
	}
	chartsFlag := func(c *cobra.Command) {
		c.Flags().StringVar(&charts, "charts", "", "one Helm repository holding every chart (a directory with an index.yaml, or its URL), instead of each release's source")
		c.Flags().StringVar(&kubeVersion, "kube-version", "", "Kubernetes version to render for (default: spec.kubernetesVersion; with --kubeconfig the cluster's)")
	}

	verifyCmd := &cobra.Command{
		Use:   "verify",
		Short: "Fetch and render every chart of the platform and report what would fail (with --kubeconfig: server-side dry-run)",
		Long: `verify is the preflight before the releases are handed to Flux. For every
release it fetches the chart (from its source, or from --charts), renders it
with the Helm SDK and the release's values, and reports: render errors,
objects in namespaces nothing creates, objects owned by two releases (or by a
release and dodai), custom resources whose CRD no release it depends on
installs. With --kubeconfig, templates' lookup reads the cluster and every
object is server-side dry-run against it, layer by layer in dependency
order; to make that possible verify creates the platform's Namespaces and
the charts' CRDs and Namespaces (what install and Helm create first anyway),
nothing else.
Exit code 1 when any release fails.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rep, err := run(cmd, true)
			if err != nil {
				return err
			}
			if err := g.Print(rep, func(w io.Writer) error { return Table(w, verify.Header, rep.Rows()) }); err != nil {
				return err
			}
			if g.Output == "table" {
				var b strings.Builder
				rep.WriteFindings(&b)
				if b.Len() > 0 {
					fmt.Fprintf(g.Out, "\n%s", b.String())
				}
				failed := 0
				for _, r := range rep.Releases {
					if !r.OK() {
						failed++
					}
				}
				dry := "no (offline; --kubeconfig to dry-run)"
				if rep.DryRun {
					dry = "yes"
				}
				fmt.Fprintf(g.Out, "\n%d releases, %d failed; Kubernetes %s; server-side dry-run: %s\n", len(rep.Releases), failed, rep.KubeVersion, dry)
			}
			if !rep.OK() {
				return &ExitError{Code: 1}
			}
			return nil
		},
	}
	chartsFlag(verifyCmd)
	verifyCmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "dry-run against this cluster (lookup, CRDs, admission); without it verify stays offline")

	imagesCmd := &cobra.Command{
		Use:   "images",
		Short: "List every container image the rendered platform references (what an air-gapped site must mirror)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rep, err := run(cmd, false)
			if err != nil {
				return err
			}
			imgs := rep.Images()
			if err := g.Print(imgs, func(w io.Writer) error {
				var rows [][]string
				for _, im := range imgs {
					rows = append(rows, []string{im.Ref, strings.Join(im.Releases, ",")})
				}
				return Table(w, []string{"IMAGE", "RELEASES"}, rows)
			}); err != nil {
				return err
			}
			if g.Output == "table" {
				for _, im := range imgs {
					if im.Warning != "" {
						fmt.Fprintf(g.Err, "warning: %s: %s\n", im.Ref, im.Warning)
					}
				}
			}
			if !rep.OK() {
				var b strings.Builder
				rep.WriteFindings(&b)
				return fmt.Errorf("some charts did not render, their images are missing from the list:\n%s", b.String())
			}
			return nil
		},
	}
	chartsFlag(imagesCmd)

	var out string
	mirrorCmd := &cobra.Command{
		Use:   "mirror --out DIR",
		Short: "Download every chart of the platform into DIR, one Helm repository (for --charts and spec.platform.mirror.helm)",
		Long: `mirror pulls the chart of every release (HTTP and OCI repositories, through
the Helm SDK) and dodai's own charts, with their dependencies vendored in,
into DIR as one Helm repository: <chart>-<version>.tgz files and an
index.yaml with relative URLs. Use it as "dodai platform verify --charts DIR",
or serve it over HTTP on a site without internet and set
spec.platform.mirror.helm to its URL. Re-running keeps what is there.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return fmt.Errorf("--out DIR is required")
			}
			_, gr, err := platformGraph(g)
			if err != nil {
				return err
			}
			ms, err := verify.Mirror(cmd.Context(), gr, &verify.Fetcher{Charts: charts}, out)
			for _, m := range ms {
				state := "wrote"
				if m.Kept {
					state = "kept "
				}
				fmt.Fprintf(g.Out, "%s %s (from %s)\n", state, m.File, m.From)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(g.Out, "%d charts in %s, index.yaml written\n", len(ms), out)
			return nil
		},
	}
	mirrorCmd.Flags().StringVar(&out, "out", "", "directory to write the Helm repository into")
	mirrorCmd.Flags().StringVar(&charts, "charts", "", "read the charts from this Helm repository (directory or URL) instead of their sources")
	return []*cobra.Command{verifyCmd, imagesCmd, mirrorCmd}
}
