package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/dodai-dev/dodai/internal/fetch"
	"github.com/dodai-dev/dodai/internal/image"
)

func imageFetchCmd(g *Globals) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "fetch [--out DIR]",
		Short: "Download the schematic's Talos kernel and initramfs from the Image Factory (resumable) into the netboot assets",
		Long: `Registers the cluster's schematic with the Image Factory (spec.image.factory;
POST /schematics, idempotent) and downloads its kernel and initramfs for
spec.talosVersion and spec.image.arch into DIR/<arch>/vmlinuz and
DIR/<arch>/initramfs.xz (default DIR: <cluster dir>/assets, what dodai netboot
serves). An interrupted download is resumed by running it again (Range
requests); finished files the factory reports with the same size are kept.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			src, err := g.Load()
			if err != nil {
				return err
			}
			spec := src.Cluster.Spec
			info, err := image.Info(spec)
			if err != nil {
				return err
			}
			if out == "" {
				out = g.Paths().Assets()
			}
			ctx := cmd.Context()
			factory := strings.TrimSuffix(spec.Image.Factory, "/")
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, factory+"/schematics", bytes.NewReader([]byte(info.Schematic)))
			if err != nil {
				return err
			}
			req.Header.Set("Content-Type", "application/yaml")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return fmt.Errorf("registering the schematic with %s: %w", factory, err)
			}
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			var reg struct {
				ID string `json:"id"`
			}
			if resp.StatusCode/100 != 2 || json.Unmarshal(body, &reg) != nil {
				return fmt.Errorf("registering the schematic with %s: HTTP %s: %s", factory, resp.Status, strings.TrimSpace(string(body)))
			}
			if reg.ID != info.ID {
				return fmt.Errorf("the Image Factory computed schematic %s, dodai %s: refusing to download a different image", reg.ID, info.ID)
			}
			fmt.Fprintf(g.Err, "schematic %s (Talos %s, %s)\n", info.ID, spec.TalosVersion, spec.Image.Arch)
			dir := filepath.Join(out, spec.Image.Arch)
			for _, f := range []struct{ url, name string }{{info.Kernel, "vmlinuz"}, {info.Initramfs, "initramfs.xz"}} {
				if _, err := fetch.File(ctx, f.url, filepath.Join(dir, f.name), fetch.Options{Progress: func(p fetch.Progress) {
					printProgress(g.Err, p)
				}}); err != nil {
					return err
				}
			}
			fmt.Fprintf(g.Out, "%s\n%s\n", filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initramfs.xz"))
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "assets directory (default <cluster dir>/assets)")
	return cmd
}

func printProgress(w io.Writer, p fetch.Progress) {
	mib := func(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
	total := "?"
	if p.Total >= 0 {
		total = mib(p.Total)
	}
	resumed := ""
	if p.Resumed > 0 {
		resumed = ", resumed at " + mib(p.Resumed)
	}
	state := "downloading"
	if p.Final {
		state = "done"
	}
	fmt.Fprintf(w, "%-13s %s %s / %s  %.1f MiB/s%s\n", p.Name, state, mib(p.Done), total, p.Rate/(1<<20), resumed)
}
