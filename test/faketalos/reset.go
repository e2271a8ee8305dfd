package faketalos

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	machineapi "github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/config"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Reset mirrors Talos' reset of a configured node: graceful leaves etcd
// first on a control plane (refused when that would break quorum); the
// wiped system partitions decide what comes back: STATE wiped (or all
// partitions, the default) loses the machine config, so the machine reboots
// into maintenance mode on its maintenance address; EPHEMERAL alone keeps
// the config but loses the etcd data (a member that did not leave stays in
// the member list, stale). reboot=false powers the machine off.
func (s *runningService) Reset(_ context.Context, in *machineapi.ResetRequest) (*machineapi.ResetResponse, error) {
	n := s.n
	var labels []string
	for _, p := range in.GetSystemPartitionsToWipe() {
		if p.GetWipe() {
			labels = append(labels, p.GetLabel())
		}
	}
	detail := fmt.Sprintf("graceful=%v reboot=%v wipe=%s mode=%s", in.GetGraceful(), in.GetReboot(), strings.Join(labels, ","), in.GetMode())
	fail := func(err error) (*machineapi.ResetResponse, error) {
		n.record(Call{Method: "Reset", Phase: "running", Detail: detail, Code: status.Code(err)})
		return nil, err
	}
	for _, l := range labels {
		switch l {
		case "STATE", "EPHEMERAL", "META":
		default:
			return fail(fmt.Errorf("failed to get volume status with label %q: resource VolumeStatuses.block.talos.dev(runtime/%s@undefined) doesn't exist", l, l))
		}
	}
	wipeAll := len(in.GetSystemPartitionsToWipe()) == 0 && in.GetMode() != machineapi.ResetRequest_USER_DISKS
	wipeState := wipeAll || slices.Contains(labels, "STATE")
	wipeEphemeral := wipeAll || slices.Contains(labels, "EPHEMERAL")
	if in.GetGraceful() && s.isCP {
		m := n.opts.Group.lockEtcd()
		err := m.leaveLocked(n)
		m.mu.Unlock()
		if err != nil {
			return fail(status.Errorf(codes.FailedPrecondition, "reset failed: %s", status.Convert(err).Message()))
		}
	}
	n.mu.Lock()
	cfg := n.cfg
	n.mu.Unlock()
	n.record(Call{Method: "Reset", Phase: "running", Detail: detail})
	n.wg.Add(1)
	go n.resetReboot(cfg, wipeState, wipeEphemeral, in.GetReboot())
	return &machineapi.ResetResponse{Messages: []*machineapi.Reset{{ActorId: fmt.Sprintf("reset-%d", time.Now().UnixNano())}}}, nil
}

// resetReboot takes the node down after answering the Reset call and brings
// it back as the wiped partitions decide.
func (n *Node) resetReboot(cfg config.Provider, wipeState, wipeEphemeral, reboot bool) {
	defer n.wg.Done()
	n.mu.Lock()
	srv := n.srv
	n.srv = nil
	n.phase = "resetting"
	n.mu.Unlock()
	if srv != nil {
		srv.GracefulStop()
	}
	n.stopKubelet(true)
	n.opts.Group.nodeRebooted(n, wipeEphemeral)
	if !reboot {
		n.mu.Lock()
		n.phase = "off"
		n.mu.Unlock()
		return
	}
	select {
	case <-time.After(n.opts.RebootDelay):
	case <-n.ctx.Done():
		return
	}
	var err error
	if wipeState {
		n.mu.Lock()
		n.cfg = nil
		n.mu.Unlock()
		err = n.serveMaintenance()
	} else {
		err = n.serveConfigured(cfg)
	}
	if err != nil {
		n.mu.Lock()
		n.phase = "failed: " + err.Error()
		n.mu.Unlock()
	}
}

// SetInventory replaces the machine's hardware, as seen from the next
// boot into maintenance mode on (e.g. a disk swapped while it was down).
func (n *Node) SetInventory(inv Inventory) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.opts.Inventory = inv
}
