package cli

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/machineconfig"
	"github.com/dodai-dev/dodai/internal/netboot"
	"github.com/dodai-dev/dodai/internal/tftp"
)

// newTFTPServer returns the TFTP server (internal/tftp) for the iPXE
// directory; done reports each finished transfer to netboot.
func newTFTPServer(root string, log *slog.Logger, done func(client netip.AddrPort, file string, n int64, aborted bool, err error)) netboot.TFTPServer {
	return &tftp.Server{Root: root, Log: log, OnTransfer: func(e tftp.TransferEvent) {
		done(e.Client, e.File, e.Bytes, errors.Is(e.Err, tftp.ErrClientAbort), e.Err)
	}}
}

// nodeConfigFunc returns a node's machine config, rendered from the
// cluster file and secrets.yaml (machineconfig.New never generates secrets).
func nodeConfigFunc(src *cluster.Source) (func(node string) ([]byte, error), error) {
	r, err := machineconfig.New(src)
	if err != nil {
		return nil, fmt.Errorf("preparing machine configs for netboot: %w", err)
	}
	return r.NodeConfig, nil
}
