package talos

import (
	"fmt"
	"strings"

	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/gendata"
)

// Supported Talos minor versions: the oldest one whose API dodai can read
// (block.Disk resources appeared in 1.8; older nodes answer `resource
// "disks" is not registered`) and the newest one dodai's machinery library
// knows how to render configs for.
var (
	MinSupported = config.TalosVersion1_8
	MaxSupported = mustContract(gendata.VersionTag)
)

func mustContract(v string) *config.VersionContract {
	c, err := config.ParseContractFromVersion(v)
	if err != nil {
		panic(err)
	}
	return c
}

// Contract returns the machine config version contract for a node running
// the given Talos version, refusing versions dodai can't configure.
func Contract(version string) (*config.VersionContract, error) {
	if version == "" {
		return nil, fmt.Errorf("node did not report its Talos version")
	}
	c, err := config.ParseContractFromVersion(version)
	if err != nil {
		return nil, fmt.Errorf("node reports Talos version %q: %w", version, err)
	}
	if MinSupported.Greater(c) {
		return nil, fmt.Errorf("node runs Talos %s, older than the oldest supported %s: boot a newer Talos image (dodai image) and retry", version, MinSupported)
	}
	if c.Greater(MaxSupported) {
		return nil, fmt.Errorf("node runs Talos %s, newer than this dodai supports (Talos machinery %s, contract %s): its config format may differ; use a dodai release built for Talos %s or boot a %s image",
			version, gendata.VersionTag, MaxSupported, c, MaxSupported)
	}
	return c, nil
}

// SameMinor reports whether two Talos versions share major.minor.
func SameMinor(a, b string) bool {
	ca, err1 := config.ParseContractFromVersion(a)
	cb, err2 := config.ParseContractFromVersion(b)
	if err1 != nil || err2 != nil {
		return strings.TrimPrefix(a, "v") == strings.TrimPrefix(b, "v")
	}
	return ca.String() == cb.String()
}
