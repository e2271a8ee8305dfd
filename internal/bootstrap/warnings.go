package bootstrap

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"

	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"

	"github.com/dodai-dev/dodai/internal/cluster"
)

func httpGet(ctx context.Context, u string) (*http.Request, error) {
	return http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
}

// Warnings lists the traps users hit when bootstrapping Talos that the
// cluster directory falls into, beyond those cluster validation already
// reports (even number of control planes, unreachable endpoint).
func Warnings(src *cluster.Source) []string {
	spec := &src.Cluster.Spec
	var out []string
	if spec.VIP != "" {
		if b, err := os.ReadFile(filepath.Join(src.Dir, cluster.TalosconfigFile)); err == nil {
			if cfg, err := clientconfig.FromBytes(b); err == nil {
				for name, ctx := range cfg.Contexts {
					if slices.Contains(ctx.Endpoints, spec.VIP) {
						out = append(out, fmt.Sprintf("talosconfig context %q uses the VIP %s as an endpoint: the VIP only exists once etcd is up, so the Talos API is unreachable exactly when you need it; use node addresses (dodai rewrites its own talosconfig that way)", name, spec.VIP))
					}
				}
			}
		}
	}
	check := func(where string, ps []cluster.Patch) {
		for i, p := range ps {
			if usesInterfaceName(p.Value) {
				out = append(out, fmt.Sprintf("%s:%d: %s[%d] selects a network interface by name (machine.network.interfaces[].interface): kernel names differ between machines and Talos versions (eth0, ens18, enp1s0); select it by MAC (node interface.mac / deviceSelector.hardwareAddr)", src.File, p.Line, where, i))
			}
		}
	}
	check("spec.patches.all", spec.Patches.All)
	check("spec.patches.controlplane", spec.Patches.ControlPlane)
	check("spec.patches.worker", spec.Patches.Worker)
	for i := range spec.Nodes {
		check(fmt.Sprintf("spec.nodes[%d].patches", i), spec.Nodes[i].Patches)
	}
	return out
}

// usesInterfaceName finds machine.network.interfaces[].interface in a
// strategic-merge patch.
func usesInterfaceName(v any) bool {
	m, ok := v.(map[string]any)
	if !ok {
		return false
	}
	mach, _ := m["machine"].(map[string]any)
	nw, _ := mach["network"].(map[string]any)
	ifs, _ := nw["interfaces"].([]any)
	for _, i := range ifs {
		if im, ok := i.(map[string]any); ok {
			if name, ok := im["interface"].(string); ok && name != "" {
				return true
			}
		}
	}
	return false
}
