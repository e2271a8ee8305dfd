package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/image"
)

// RenderStep is one part of `dodai render` (e.g. the platform manifests,
// the netboot plan), listed in renderSteps (commands.go). It writes under
// dir (the generated/ directory).
type RenderStep struct {
	Name string
	Run  func(ctx context.Context, g *Globals, src *cluster.Source, dir string) error
}

func newRenderCmd(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "render",
		Short: "Render everything derivable offline: configs, talosconfig, image profiles and schematic, and more",
		Long: `render is the offline main job: it validates cluster.yaml and writes, under
generated/, every artifact dodai derives from it: one machine config per node and
the talosconfig, the imager profiles and the Image Factory schematic, and what the
other stages add (see the list it prints).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := g.Open()
			if err != nil {
				return err
			}
			dir := d.Generated()
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return err
			}
			for _, s := range renderSteps {
				fmt.Fprintf(g.Out, "==> %s\n", s.Name)
				if err := s.Run(cmd.Context(), g, d.Source, dir); err != nil {
					return fmt.Errorf("rendering %s: %w", s.Name, err)
				}
			}
			return nil
		},
	}
}

func renderImage(_ context.Context, g *Globals, src *cluster.Source, dir string) error {
	imgDir := filepath.Join(dir, "image")
	if err := os.MkdirAll(imgDir, 0o755); err != nil {
		return err
	}
	info, err := image.Info(src.Cluster.Spec)
	if err != nil {
		return err
	}
	p := filepath.Join(imgDir, "schematic.yaml")
	verb, err := writeIfChanged(p, []byte(info.Schematic), 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(g.Out, "%s %s (Image Factory ID %s)\n", verb, p, info.ID)
	for _, kind := range image.OutputKinds {
		prof, warnings, err := image.NewProfileWarn(src.Cluster.Spec, kind)
		if err != nil {
			return err
		}
		if kind == image.OutputKinds[0] {
			for _, w := range warnings {
				fmt.Fprintln(g.Err, "warning:", w)
			}
		}
		body, err := prof.Marshal()
		if err != nil {
			return err
		}
		p := filepath.Join(imgDir, "profile-"+kind+".yaml")
		verb, err := writeIfChanged(p, body, 0o644)
		if err != nil {
			return err
		}
		fmt.Fprintf(g.Out, "%s %s\n", verb, p)
	}
	return nil
}
