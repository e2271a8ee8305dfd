package talos

import (
	"fmt"

	"github.com/siderolabs/talos/pkg/machinery/config"

	"github.com/dodai-dev/dodai/internal/cluster"
)

// Contract returns the machine config version contract for a node running
// the given Talos version, refusing versions dodai can't configure: older
// than v1.MinTalosMinor (block.Disk resources appeared in 1.8; older nodes
// answer `resource "disks" is not registered`) or newer than the machinery
// library dodai renders configs with.
func Contract(version string) (*config.VersionContract, error) {
	if version == "" {
		return nil, fmt.Errorf("node did not report its Talos version")
	}
	major, minor, err := cluster.TalosMinor(version)
	if err != nil {
		return nil, fmt.Errorf("node reports Talos version %q: %w", version, err)
	}
	if major > 1 {
		minor = cluster.MaxTalosMinor + 1
	}
	if major < 1 || (major == 1 && minor < cluster.MinTalosMinor) {
		return nil, fmt.Errorf("node runs Talos %s, older than the oldest supported v1.%d: boot a newer Talos image (dodai image) and retry", version, cluster.MinTalosMinor)
	}
	if minor > cluster.MaxTalosMinor {
		return nil, fmt.Errorf("node runs Talos %s, newer than this dodai supports (configs for v1.%d.x at most): its config format may differ; boot a v1.%d image or use a newer dodai", version, cluster.MaxTalosMinor, cluster.MaxTalosMinor)
	}
	return config.ParseContractFromVersion(version)
}

// SameMinor reports whether two Talos versions share major.minor.
func SameMinor(a, b string) bool {
	ma, na, err1 := cluster.TalosMinor(a)
	mb, nb, err2 := cluster.TalosMinor(b)
	return err1 == nil && err2 == nil && ma == mb && na == nb
}
