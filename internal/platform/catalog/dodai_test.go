package catalog

import (
	"io/fs"
	"slices"
	"testing"

	"github.com/dodai-dev/dodai/charts"
)

// The dodai component (dodai itself in the cluster) is dodai's own chart,
// in a privileged namespace (host-network DaemonSet), and in no bundle: it
// is enabled after `dodai pivot` wrote the ConfigMap and Secret it mounts.
func TestDodaiComponent(t *testing.T) {
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	comp, ok := c.Component("dodai")
	if !ok {
		t.Fatal("no dodai component")
	}
	if comp.Source.Dodai != "dodai" || !comp.Privileged || comp.Namespace != "dodai-system" {
		t.Errorf("dodai component: %+v", comp)
	}
	if _, err := fs.Stat(charts.FS, "dodai/Chart.yaml"); err != nil {
		t.Errorf("charts/dodai: %v", err)
	}
	for name, b := range c.Bundles {
		if slices.Contains(b, "dodai") {
			t.Errorf("bundle %s enables dodai by default", name)
		}
	}
}
