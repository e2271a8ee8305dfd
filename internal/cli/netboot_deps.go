package cli

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/netboot"
)

// The two functions below connect netboot to parts written on other
// branches. MERGE NOTE for the lead:
//   - newTFTPServer: return &tftp.Server{Root: root, Log: log, OnTransfer:
//     func(e tftp.TransferEvent) { done(e.Client.String(), e.File, e.Bytes, e.Err) }}
//     once internal/tftp is in main.
//   - nodeConfigFunc: use render.New(src) and (*Renderer).NodeConfig once
//     internal/render is in main.

// newTFTPServer returns the TFTP server for the iPXE directory, or nil
// when this build has none.
func newTFTPServer(root string, log *slog.Logger, done func(client, file string, n int64, err error)) netboot.TFTPServer {
	_, _, _ = root, log, done
	return nil
}

// nodeConfigFunc returns a node's machine config: the file `dodai config`
// wrote to generated/<node>.yaml.
func nodeConfigFunc(src *cluster.Source) func(node string) ([]byte, error) {
	return func(node string) ([]byte, error) {
		p := filepath.Join(src.Dir, cluster.GeneratedDir, node+".yaml")
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("reading machine config of %s: %w", node, err)
		}
		return b, nil
	}
}
