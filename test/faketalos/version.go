package faketalos

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	"github.com/siderolabs/talos/pkg/machinery/config"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dodai-dev/dodai/test/talosvalidate"
)

// hostnameOf is the static hostname a config sets, in either form Talos
// accepts: machine.network.hostname (up to 1.11) or a HostnameConfig
// document (1.12+).
func hostnameOf(cfg config.Provider) string {
	if h := cfg.NetworkHostnameConfig(); h != nil {
		return h.Hostname()
	}
	return ""
}

// configuredAddrs are the static addresses of a config, in either form:
// machine.network.interfaces (up to 1.11) or LinkConfig documents (1.12+).
func configuredAddrs(cfg config.Provider) []netip.Addr {
	var out []netip.Addr
	if cfg.Machine() != nil {
		for _, d := range cfg.Machine().Network().Devices() {
			for _, a := range d.Addresses() {
				if p, err := netip.ParsePrefix(a); err == nil {
					out = append(out, p.Addr())
				} else if ip, err := netip.ParseAddr(a); err == nil {
					out = append(out, ip)
				}
			}
		}
	}
	for _, l := range cfg.NetworkCommonLinkConfigs() {
		for _, a := range l.Addresses() {
			out = append(out, a.Address().Addr())
		}
	}
	return out
}

// A fake node reports the Talos version it is given (runtime.Version over
// COSI and the Version API) and accepts what a node of that release
// accepts: configs are loaded and validated with dodai's machinery (the
// newest release) and, for the older releases test/talosvalidate has a
// validator of, with that release's own machinery, which rejects the
// documents and fields it does not know. Releases dodai does not support
// are loaded with dodai's machinery only.

// needsValidator reports whether a release is checked by an external
// validator program, which must then exist.
func needsValidator(version string) bool {
	minor, err := talosvalidate.Minor(version)
	return err == nil && slices.Contains(talosvalidate.External, minor)
}

// checkValidator fails when the node's release needs a validator program
// that hack/deps/talos.sh has not built.
func checkValidator(version string) error {
	if !needsValidator(version) {
		return nil
	}
	if _, err := talosvalidate.Path(version); err != nil {
		return fmt.Errorf("fake node of Talos %s: %w", version, err)
	}
	return nil
}

// acceptConfig checks data as the node's own release would, after dodai's
// machinery accepted it; the error is the gRPC status a node answers.
func (n *Node) acceptConfig(ctx context.Context, data []byte) error {
	version := n.opts.Inventory.TalosVersion
	if !needsValidator(version) {
		return nil
	}
	if err := talosvalidate.Validate(ctx, version, data); err != nil {
		return status.Errorf(codes.InvalidArgument, "failed to parse config: %v", err)
	}
	return nil
}
