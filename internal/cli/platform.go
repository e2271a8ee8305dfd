package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/platform"
	"github.com/dodai-dev/dodai/internal/platform/graph"
	"github.com/dodai-dev/dodai/internal/platform/install"
	"github.com/dodai-dev/dodai/internal/platform/render"
	"github.com/dodai-dev/dodai/internal/platform/status"
)

// platformGraph loads the cluster file and resolves spec.platform.
func platformGraph(g *Globals) (*cluster.Source, *graph.Graph, error) {
	src, err := g.Load()
	if err != nil {
		return nil, nil, err
	}
	gr, err := platform.Resolve(src.Cluster.Spec.Platform)
	if err != nil {
		return nil, nil, err
	}
	return src, gr, nil
}

func restConfig(path string) (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig %s: %w", path, err)
	}
	cfg.QPS, cfg.Burst = 50, 100
	return cfg, nil
}

func (g *Globals) kubeconfig(flag string) string {
	if flag != "" {
		return flag
	}
	return g.Paths().Kubeconfig()
}

// renderPlatform is the render step of the platform's GitOps directory.
func renderPlatform(_ context.Context, g *Globals, src *cluster.Source, dir string) error {
	gr, err := platform.Resolve(src.Cluster.Spec.Platform)
	if err != nil {
		return err
	}
	objs, err := render.Objects(gr)
	if err != nil {
		return err
	}
	out := filepath.Join(dir, "platform")
	if _, err := render.WriteDir(out, objs); err != nil {
		return err
	}
	fmt.Fprintf(g.Out, "wrote %s (%d HelmReleases, kustomization.yaml)\n", out, len(gr.Releases))
	return nil
}

func newPlatformCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "platform",
		Short: "Deliver the system components with Flux: render or install the HelmReleases",
	}
	var out string
	renderCmd := &cobra.Command{
		Use:   "render",
		Short: "Print the Namespaces, Flux sources and HelmReleases (or write a GitOps directory with --out)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, gr, err := platformGraph(g)
			if err != nil {
				return err
			}
			objs, err := render.Objects(gr)
			if err != nil {
				return err
			}
			if out != "" {
				files, err := render.WriteDir(out, objs)
				if err != nil {
					return err
				}
				for _, f := range files {
					fmt.Fprintln(g.Out, filepath.Join(out, f))
				}
				return nil
			}
			b, err := render.YAML(objs)
			if err != nil {
				return err
			}
			_, err = g.Out.Write(b)
			return err
		},
	}
	renderCmd.Flags().StringVar(&out, "out", "", "write a GitOps directory (namespaces.yaml, sources.yaml, releases/, kustomization.yaml) instead of printing")

	var (
		kubeconfig, fluxManifests string
		timeout                   time.Duration
		skipFlux, skipCNI, noKick bool
	)
	installCmd := &cobra.Command{
		Use:   "install",
		Short: "Install Flux, pre-install the CNI, apply the HelmReleases and wait until all are Ready",
		Long: `install brings the platform to a fresh cluster (no CNI yet):
  1. Flux's source-controller and helm-controller from Flux's release manifests
     (spec.platform.flux.manifests or --flux-manifests), patched to run on the host
     network, tolerate not-ready nodes, reach the API at localhost:7445 (KubePrism),
     with --requeue-dependency=5s --concurrent=20;
  2. the CNI releases with the Helm SDK (same name, namespace and values as their
     HelmReleases, so Flux adopts them);
  3. server-side apply (field manager "dodai") of Namespaces, sources and
     HelmReleases, pruning what the previous install created and this one has not;
  4. a live wait until all releases are Ready; when one becomes Ready, its
     dependents are asked to reconcile at once.
Re-running is an upgrade; on a healthy, unchanged platform it changes nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			src, gr, err := platformGraph(g)
			if err != nil {
				return err
			}
			kc := g.kubeconfig(kubeconfig)
			cfg, err := restConfig(kc)
			if err != nil {
				return err
			}
			fm := platform.FluxManifests(fluxManifests, src.Cluster.Spec.Platform.Flux, g.ClusterDir)
			res, err := install.Install(cmd.Context(), gr, install.Options{
				Kubeconfig: kc, RESTConfig: cfg, FluxManifests: fm, SkipFlux: skipFlux, SkipCNI: skipCNI,
				Timeout: timeout, NoKick: noKick, Progress: g.Err, Log: g.Log,
			})
			if res != nil {
				fmt.Fprintf(g.Out, "applied %d objects (%d changed), pruned %d, pre-installed CNI %v, kicks %d\n",
					len(res.Applied), res.Changed(), len(res.Pruned), res.PreinstalledCNI, res.Kicks)
				for _, a := range res.Applied {
					if a.Changed {
						g.Log.Debug("changed", "object", a.Object)
					}
				}
			}
			if err != nil {
				return err
			}
			if timeout > 0 {
				fmt.Fprintf(g.Out, "all %d releases Ready in %s\n", len(gr.Releases), res.Elapsed.Round(100*time.Millisecond))
			}
			return nil
		},
	}
	f := installCmd.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig (default: the cluster directory's kubeconfig)")
	f.DurationVar(&timeout, "timeout", 20*time.Minute, "wait this long for all releases to be Ready (0: don't wait)")
	f.StringVar(&fluxManifests, "flux-manifests", "", "Flux install manifests: URL, install.yaml or a directory (default: spec.platform.flux.manifests, else Flux's release install.yaml)")
	f.BoolVar(&skipFlux, "skip-flux", false, "don't install Flux (it is already running)")
	f.BoolVar(&skipCNI, "skip-cni", false, "don't pre-install the CNI releases with Helm")
	f.BoolVar(&noKick, "no-kick", false, "don't ask Flux to reconcile dependents when a release becomes Ready")
	cmd.AddCommand(renderCmd, installCmd)
	cmd.AddCommand(platformCheckCommands(g)...)
	return cmd
}

// statusComponents is `dodai status`' section of the platform's HelmReleases.
func statusComponents(ctx context.Context, g *Globals, opts StatusOptions) (bool, error) {
	kc := g.kubeconfig(opts.Kubeconfig)
	if _, err := os.Stat(kc); errors.Is(err, os.ErrNotExist) {
		// Not an error of the command: the cluster isn't bootstrapped yet.
		fmt.Fprintf(g.Out, "Components: no kubeconfig at %s yet (run `dodai bootstrap` or `dodai kubeconfig`).\n", kc)
		return false, nil
	}
	cfg, err := restConfig(kc)
	if err != nil {
		return false, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return false, err
	}
	rep, err := status.Collect(ctx, dyn, time.Now())
	if errors.Is(err, status.ErrNoFlux) {
		fmt.Fprintf(g.Out, "Components: %v.\n", err)
		return false, nil
	}
	if err != nil {
		return false, err
	}
	err = g.Print(rep, func(w io.Writer) error {
		if len(rep.Releases) == 0 {
			fmt.Fprintln(w, "No HelmReleases (run `dodai platform install`).")
			return nil
		}
		return Table(w, status.Header, rep.Rows())
	})
	if err != nil {
		return false, err
	}
	if g.Output == "table" {
		var b = g.Out
		if !rep.AllReady() && len(rep.Releases) > 0 {
			fmt.Fprintln(b)
			rep.WriteRootCauses(b)
		}
		if opts.Tree && len(rep.Releases) > 0 {
			fmt.Fprintln(b)
			rep.WriteTree(b)
		}
	}
	return rep.AllReady(), nil
}
