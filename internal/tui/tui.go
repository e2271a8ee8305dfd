// Package tui is bootstrap's interactive mode.
package tui

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
)

// Options of the interactive session.
type Options struct {
	ClusterDir string
	Networks   []netip.Prefix
	Port       int
	In         io.Reader
	Out        io.Writer
	Log        *slog.Logger
}

// Run asks about discovered machines and writes the answers into cluster.yaml.
func Run(ctx context.Context, opts Options) error {
	return errors.New("interactive mode is not available yet")
}
