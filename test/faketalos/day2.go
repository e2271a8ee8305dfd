package faketalos

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cosi-project/runtime/pkg/state"
	"github.com/siderolabs/image-factory/pkg/constants"
	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/extensions"
	configres "github.com/siderolabs/talos/pkg/machinery/resources/config"
	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"

	"github.com/dodai-dev/dodai/test/fakekubelet"
)

// day2 is the part of a node that changes while it runs: the installed
// image (Talos version in opts.Inventory, schematic, extensions), the boot
// ID, a staged config, the live COSI state and the kubelet.
type day2 struct {
	bootID     string
	schematic  string
	extensions []string
	staged     config.Provider
	live       state.State
	kubelet    *fakekubelet.Kubelet
	errs       []string
	upgrades   []string
	lifecycle  lifecycle // lifecycle.go
}

// SetFaults replaces the node's faults (e.g. to remove one, so that a
// re-run can finish).
func (n *Node) SetFaults(f Faults) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.opts.Faults = f
}

func (n *Node) faults() Faults {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.opts.Faults
}

// TalosVersion is the version the node runs now.
func (n *Node) TalosVersion() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.opts.Inventory.TalosVersion
}

// Image returns the schematic ID ("" for a vanilla image) and the official
// extensions of the image the node runs now.
func (n *Node) Image() (schematicID string, officialExtensions []string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.day2.schematic, slices.Clone(n.day2.extensions)
}

// Upgrades lists the installer images of the upgrades the node accepted.
func (n *Node) Upgrades() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.day2.upgrades)
}

// Errors lists failures of the fake itself (e.g. its kubelet could not
// register), for test diagnostics.
func (n *Node) Errors() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.day2.errs)
}

// Config is the node's active machine config (nil before it is configured).
func (n *Node) Config() config.Provider {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cfg
}

func (n *Node) fail(format string, args ...any) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.day2.errs = append(n.day2.errs, fmt.Sprintf(format, args...))
}

// initImage sets the image the machine booted from: Inventory.Schematic's
// extensions as the Factory knows them.
func (n *Node) initImage() {
	n.day2.schematic = n.opts.Inventory.Schematic
	n.day2.extensions, _ = n.opts.Factory.Extensions(n.opts.Inventory.Schematic)
}

func newBootID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// bootResources adds what a configured node reports besides its inventory:
// the active MachineConfig and one ExtensionStatus per extension (plus the
// Image Factory's "schematic" pseudo-extension carrying the schematic ID),
// and starts a new boot.
func (n *Node) bootResources(ctx context.Context, st state.State, cfg config.Provider) error {
	n.record(Call{Method: "Boot", Phase: "running"})
	n.mu.Lock()
	n.day2.bootID = newBootID()
	n.day2.live = st
	exts, schem, version := slices.Clone(n.day2.extensions), n.day2.schematic, n.opts.Inventory.TalosVersion
	n.mu.Unlock()
	if err := st.Create(ctx, configres.NewMachineConfig(cfg)); err != nil {
		return fmt.Errorf("fake node %s: creating MachineConfig: %w", n.opts.Name, err)
	}
	var layers []extensions.Layer
	for _, e := range exts {
		name := e[strings.LastIndex(e, "/")+1:]
		layers = append(layers, extensions.Layer{
			Image: fmt.Sprintf("%03d.sqsh", len(layers)),
			Metadata: extensions.Metadata{Name: name, Version: "1.0.0-" + version, Author: "Sidero Labs",
				Description: name + " system extension", Compatibility: extensions.Compatibility{Talos: extensions.Constraint{Version: ">= v1.11.0"}}},
		})
	}
	if schem != "" {
		layers = append(layers, extensions.Layer{
			Image: fmt.Sprintf("%03d.sqsh", len(layers)),
			Metadata: extensions.Metadata{Name: constants.SchematicIDExtensionName, Version: schem, Author: "Image Factory",
				Description: "Virtual extension which specifies the schematic of the image built with schematic."},
		})
	}
	for i, l := range layers {
		r := runtime.NewExtensionStatus(runtime.NamespaceName, fmt.Sprint(i))
		*r.TypedSpec() = l
		if err := st.Create(ctx, r); err != nil {
			return fmt.Errorf("fake node %s: creating ExtensionStatus: %w", n.opts.Name, err)
		}
	}
	return nil
}

// applyLive switches the running node to cfg without a reboot: the
// MachineConfig resource changes and the kubelet restarts with it.
func (n *Node) applyLive(ctx context.Context, cfg config.Provider) error {
	n.mu.Lock()
	n.cfg = cfg
	st := n.day2.live
	n.mu.Unlock()
	if st != nil {
		r := configres.NewMachineConfig(cfg)
		cur, err := st.Get(ctx, r.Metadata())
		if err != nil {
			return fmt.Errorf("reading MachineConfig: %w", err)
		}
		r.Metadata().SetVersion(cur.Metadata().Version())
		if err := st.Update(ctx, r); err != nil {
			return fmt.Errorf("updating MachineConfig: %w", err)
		}
	}
	n.restartKubelet(cfg)
	return nil
}

// rebootRunning reboots a configured node: the API and the kubelet go away
// for RebootDelay; change (if any) runs while it is down (an upgrade swaps
// the image there); a staged config becomes active; then it serves again.
// A node that never returns (fault) stays away until the fault is cleared.
func (n *Node) rebootRunning(change func() (rollback bool)) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.mu.Lock()
		srv := n.srv
		n.srv = nil
		n.phase = "rebooting"
		n.mu.Unlock()
		n.stopKubelet(true)
		if srv != nil {
			stopServer(srv)
		}
		if !n.sleep(n.opts.RebootDelay) {
			return
		}
		rollback := false
		if change != nil {
			rollback = change()
		}
		if rollback {
			// The new image did not boot: Talos reverts to the previous
			// one, which costs another boot.
			if !n.sleep(n.opts.RebootDelay) {
				return
			}
		}
		if f := n.faults(); f.NeverReturn || (change != nil && f.UpgradeNeverReturn) {
			n.mu.Lock()
			n.phase = "gone"
			n.mu.Unlock()
			// Until someone fixes it (the test clears the fault): then it
			// boots.
			for {
				if f := n.faults(); !f.NeverReturn && !(change != nil && f.UpgradeNeverReturn) {
					break
				}
				if !n.sleep(10 * time.Millisecond) {
					return
				}
			}
		}
		n.mu.Lock()
		cfg := n.cfg
		if n.day2.staged != nil {
			cfg, n.day2.staged = n.day2.staged, nil
		}
		n.mu.Unlock()
		if err := n.serveConfigured(cfg); err != nil {
			n.mu.Lock()
			n.phase = "failed: " + err.Error()
			n.mu.Unlock()
		}
	}()
}

// sleep waits d unless the node is closed.
func (n *Node) sleep(d time.Duration) bool {
	select {
	case <-time.After(d):
		return true
	case <-n.ctx.Done():
		return false
	}
}

// stopServer stops a gRPC server, giving running calls a moment to finish
// (streams such as watches would otherwise hold a graceful stop forever).
func stopServer(srv interface {
	GracefulStop()
	Stop()
},
) {
	done := make(chan struct{})
	go func() { srv.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Second):
		srv.Stop()
		<-done
	}
}
