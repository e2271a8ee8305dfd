package cli

import (
	"fmt"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/machineconfig"
)

// nodeConfigFunc returns a node's machine config, rendered from the
// cluster file and secrets.yaml (machineconfig.New never generates secrets).
func nodeConfigFunc(src *cluster.Source) (func(node string) ([]byte, error), error) {
	r, err := machineconfig.New(src)
	if err != nil {
		return nil, fmt.Errorf("preparing machine configs for netboot: %w", err)
	}
	return r.NodeConfig, nil
}
