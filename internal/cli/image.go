package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/dodai-dev/dodai/internal/image"
)

func newImageCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "The Talos boot image: imager profile, Image Factory schematic, build",
	}
	cmd.AddCommand(imageProfileCmd(g), imageSchematicCmd(g), imageBuildCmd(g), imageFetchCmd(g))
	return cmd
}

func kindFlag(cmd *cobra.Command, kind *string) {
	// --output here is the imager output kind, as in Talos' own tooling; it
	// shadows the global --output format flag for this command.
	cmd.Flags().StringVarP(kind, "output", "o", "installer", "imager output: "+strings.Join(image.OutputKinds, ", "))
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(image.OutputKinds, cobra.ShellCompDirectiveNoFileComp))
}

func imageProfileCmd(g *Globals) *cobra.Command {
	var kind string
	cmd := &cobra.Command{
		Use:   "profile",
		Short: "Print the Talos imager profile (what ghcr.io/siderolabs/imager reads on stdin)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			src, err := g.Load()
			if err != nil {
				return err
			}
			p, warnings, err := image.NewProfileWarn(src.Cluster.Spec, kind)
			if err != nil {
				return err
			}
			for _, w := range warnings {
				fmt.Fprintln(g.Err, "warning:", w)
			}
			body, err := p.Marshal()
			if err != nil {
				return err
			}
			_, err = g.Out.Write(body)
			return err
		},
	}
	kindFlag(cmd, &kind)
	return cmd
}

func imageSchematicCmd(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "schematic",
		Short: "Print the Image Factory schematic, its ID and the factory URLs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			src, err := g.Load()
			if err != nil {
				return err
			}
			info, err := image.Info(src.Cluster.Spec)
			if err != nil {
				return err
			}
			return g.Print(info, func(w io.Writer) error {
				fmt.Fprintf(g.Out, "# Image Factory schematic (POST it to %s/schematics)\n", src.Cluster.Spec.Image.Factory)
				fmt.Fprint(g.Out, info.Schematic)
				fmt.Fprintln(g.Out)
				fmt.Fprintf(g.Out, "ID:         %s\n", info.ID)
				fmt.Fprintf(g.Out, "kernel:     %s\n", info.Kernel)
				fmt.Fprintf(g.Out, "initramfs:  %s\n", info.Initramfs)
				fmt.Fprintf(g.Out, "iso:        %s\n", info.ISO)
				fmt.Fprintf(g.Out, "installer:  %s\n", info.Installer)
				fmt.Fprintf(g.Out, "pxe script: %s\n", info.PXE)
				return nil
			})
		},
	}
}

func imageBuildCmd(g *Globals) *cobra.Command {
	var kind, engine, out string
	cmd := &cobra.Command{
		Use:   "build",
		Short: "Run the Talos imager container with the cluster's profile (needs docker or podman)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			src, err := g.Load()
			if err != nil {
				return err
			}
			if out == "" {
				out = g.Paths().Generated("image")
			}
			return image.Build(cmd.Context(), engine, out, src.Cluster.Spec, kind, g.Out, g.Err)
		},
	}
	kindFlag(cmd, &kind)
	cmd.Flags().StringVar(&engine, "engine", "", "container engine: docker or podman (default: whichever is installed)")
	cmd.Flags().StringVar(&out, "out", "", "output directory (default: <cluster-dir>/generated/image)")
	return cmd
}
