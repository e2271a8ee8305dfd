// Package talos talks to Talos nodes through the machinery client: the
// maintenance (insecure) API of freshly booted machines and the
// authenticated API of configured ones. It reads a machine's inventory from
// its COSI resources and decides which config version contract a node's
// Talos version needs.
package talos

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"

	"github.com/siderolabs/talos/pkg/machinery/client"
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
	"github.com/siderolabs/talos/pkg/machinery/constants"
)

// DefaultPort is the Talos API port of every real node (apid).
const DefaultPort = constants.ApidPort

// Endpoint joins an address and the API port.
func Endpoint(addr string, port int) string {
	return net.JoinHostPort(addr, strconv.Itoa(port))
}

// Maintenance returns a client for a node in maintenance mode (what
// `talosctl --insecure` does): TLS without verifying the node's self-signed
// certificate and without a client certificate.
func Maintenance(ctx context.Context, endpoint string) (*client.Client, error) {
	c, err := client.New(ctx,
		client.WithTLSConfig(&tls.Config{InsecureSkipVerify: true}), //nolint:gosec // maintenance mode has no verifiable identity
		client.WithEndpoints(endpoint))
	if err != nil {
		return nil, fmt.Errorf("connecting to %s (maintenance): %w", endpoint, err)
	}
	return c, nil
}

// Authenticated returns a client for a configured node using the cluster's
// talosconfig (mutual TLS with the OS CA), talking directly to endpoint.
func Authenticated(ctx context.Context, cfg *clientconfig.Config, endpoint string) (*client.Client, error) {
	c, err := client.New(ctx, client.WithConfig(cfg), client.WithEndpoints(endpoint))
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", endpoint, err)
	}
	return c, nil
}
