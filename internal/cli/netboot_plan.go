package cli

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/netboot"
)

// renderNetbootPlan is the render step of the netboot plan.
func renderNetbootPlan(_ context.Context, g *Globals, src *cluster.Source, dir string) error {
	plan, err := netboot.Plan(src.Cluster.Spec)
	if err != nil {
		return err
	}
	p := filepath.Join(dir, "netboot-plan.txt")
	verb, err := writeIfChanged(p, []byte(plan), 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(g.Out, "%s %s\n", verb, p)
	return nil
}
