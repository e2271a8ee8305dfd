package bootstrap

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/machineconfig"
	"github.com/dodai-dev/dodai/internal/state"
	"github.com/dodai-dev/dodai/internal/talos"
)

// ApplyRecord is where a config apply keeps its progress, so a later run
// resumes and never installs on another disk: the bootstrap state file for
// `dodai bootstrap`, a Machine's status for the in-cluster controller.
type ApplyRecord interface {
	// ConfirmedDisk is the install disk confirmed earlier (nil: none yet).
	ConfirmedDisk() *state.Disk
	// Applying is called just before the config is sent: the machine, the
	// disk (confirmed from now on) and the address the node will answer on.
	Applying(m *talos.Machine, disk *state.Disk, addr string) error
	// ApplyFailed is called when the node refused the config.
	ApplyFailed() error
}

// ApplyOptions are what ApplyConfig needs besides the node and machine.
type ApplyOptions struct {
	Spec     *cluster.Spec
	Renderer *machineconfig.Renderer
	Port     int
	Log      *slog.Logger
}

// ApplyConfig brings one machine in maintenance mode, identified as node
// n, to "config applied": it checks the Talos version, resolves the install
// disk under the disk-safety rules (never a CD-ROM, read-only or USB disk;
// never another disk than one confirmed before), renders the node's config
// for the machine's Talos version, has the node dry-run it, records the
// apply and applies it (mode reboot). It returns the address the configured
// node will answer the authenticated API on. `dodai bootstrap` and the
// in-cluster controller both join machines through it.
func ApplyConfig(ctx context.Context, o ApplyOptions, n *cluster.Node, m *talos.Machine, rec ApplyRecord) (string, error) {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("node", n.Name, "maintenance", m.Address)
	if _, err := talos.Contract(m.TalosVersion); err != nil {
		return "", err
	}
	if o.Spec.TalosVersion != "" && !talos.SameMinor(m.TalosVersion, o.Spec.TalosVersion) {
		log.Warn("node runs a different Talos minor than spec.talosVersion; rendering for the node's version", "talos", m.TalosVersion, "spec", o.Spec.TalosVersion)
	}
	disk, err := ResolveDisk(n, m.Disks)
	if err != nil {
		return "", err
	}
	if err := CheckConfirmed(n.Name, rec.ConfirmedDisk(), disk); err != nil {
		return "", err
	}
	cfg, err := o.Renderer.NodeConfigFor(n.Name, machineconfig.NodeOptions{InstallDisk: disk.DevPath, TalosVersion: m.TalosVersion})
	if err != nil {
		return "", err
	}
	port := o.Port
	if port == 0 {
		port = talos.DefaultPort
	}
	mc, err := talos.Maintenance(ctx, talos.Endpoint(m.Address, port))
	if err != nil {
		return "", err
	}
	defer mc.Close()
	dry, err := mc.ApplyConfiguration(ctx, &machine.ApplyConfigurationRequest{Data: cfg, Mode: machine.ApplyConfigurationRequest_REBOOT, DryRun: true})
	if err != nil {
		return "", fmt.Errorf("dry-run of the config on %s refused: %w", m.Address, grpcErr(err))
	}
	for _, msg := range dry.GetMessages() {
		for _, w := range msg.GetWarnings() {
			log.Warn("Talos warns about the config", "warning", w)
		}
	}
	log.Info("applying config", "disk", disk.DevPath, "talos", m.TalosVersion)
	addr := NodeIP(n)
	if addr == "" {
		addr = m.Address // DHCP: the lease usually stays
	}
	// Recorded before the call: if dodai dies while the node takes the
	// config, the next run knows to wait for it instead of searching.
	// The disk is confirmed from here on.
	if err := rec.Applying(m, recordOf(disk), addr); err != nil {
		return "", err
	}
	if _, err := mc.ApplyConfiguration(ctx, &machine.ApplyConfigurationRequest{Data: cfg, Mode: machine.ApplyConfigurationRequest_REBOOT}); err != nil {
		_ = rec.ApplyFailed()
		return "", fmt.Errorf("applying config on %s: %w", m.Address, grpcErr(err))
	}
	return addr, nil
}

// Answers checks once (bounded to 3 s) whether a configured node answers
// the authenticated Talos API on addr.
func Answers(ctx context.Context, tc *clientconfig.Config, addr string, port int) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c, err := talos.Authenticated(ctx, tc, talos.Endpoint(addr, port))
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Version(ctx)
	return err
}

// storeRecord keeps a node's apply progress in the bootstrap state file.
type storeRecord struct {
	s    *store
	node string
}

func (r storeRecord) ConfirmedDisk() *state.Disk { return r.s.node(r.node).Disk }

func (r storeRecord) Applying(m *talos.Machine, disk *state.Disk, addr string) error {
	return r.s.updateNode(r.node, func(s *state.Node) {
		s.MAC, s.MaintenanceAddress, s.TalosVersion = m.MAC, m.Address, m.TalosVersion
		if s.Disk == nil {
			s.Disk = disk
		}
		s.Applied, s.Address = now(), addr
	})
}

func (r storeRecord) ApplyFailed() error {
	return r.s.updateNode(r.node, func(s *state.Node) { s.Applied = nil })
}
