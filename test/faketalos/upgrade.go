package faketalos

import (
	"context"
	"fmt"
	"slices"

	"github.com/siderolabs/talos/pkg/machinery/api/common"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	mtype "github.com/siderolabs/talos/pkg/machinery/config/machine"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Upgrade installs another image like Talos' machined server: the image
// must be pullable (see Factory), a control-plane node refuses when etcd
// could lose quorum (two members, or a member not running) unless forced;
// then the node reboots and comes back running the new version with the
// new image's extensions. Faults: UpgradeRollback (the new image fails to
// boot and Talos reverts to the old one), UpgradeNeverReturn. Talos 1.13
// deprecates it for LifecycleService (lifecycle.go); the call is recorded
// with that note.
func (s *runningService) Upgrade(_ context.Context, in *machine.UpgradeRequest) (*machine.UpgradeResponse, error) {
	n := s.n
	call := Call{Method: "Upgrade", Phase: "running", Mode: in.GetImage()}
	if s.n.servesLifecycle() {
		// Talos 1.13 still serves the call; talosctl 1.13 no longer makes it.
		call.Detail = "deprecated: Talos 1.13 upgrades through LifecycleService"
	}
	fail := func(err error) (*machine.UpgradeResponse, error) {
		call.Code = status.Code(err)
		n.record(call)
		return nil, err
	}
	if in.GetStage() {
		return fail(status.Error(codes.Unimplemented, "fake node: staged upgrades are not modelled"))
	}
	img, err := n.opts.Factory.resolve(in.GetImage())
	if err != nil {
		return fail(fmt.Errorf("error validating installer image %q: %w", in.GetImage(), err))
	}
	if s.isCP && !in.GetForce() {
		if err := n.etcdReadyForUpgrade(); err != nil {
			return fail(fmt.Errorf("error validating etcd for upgrade: %w", err))
		}
	}
	n.mu.Lock()
	n.day2.upgrades = append(n.day2.upgrades, in.GetImage())
	n.mu.Unlock()
	n.record(call)
	n.rebootRunning(n.bootInto(&img))
	return &machine.UpgradeResponse{Messages: []*machine.Upgrade{{Ack: "Upgrade request received", ActorId: newBootID()}}}, nil
}

// bootInto is the change a reboot into the installed image img makes (for
// rebootRunning): the node then runs img's version, schematic and
// extensions, unless the UpgradeRollback fault sends it back to the old
// image (true).
func (n *Node) bootInto(img *installerImage) func() bool {
	return func() bool {
		if n.faults().UpgradeRollback {
			return true
		}
		n.mu.Lock()
		n.opts.Inventory.TalosVersion = img.version
		n.day2.schematic, n.day2.extensions = img.schematic, slices.Clone(img.extensions)
		n.mu.Unlock()
		return false
	}
}

// etcdReadyForUpgrade is Talos' ValidateForUpgrade over the group's
// control planes: every member started, and more than two of them.
func (n *Node) etcdReadyForUpgrade() error {
	g := n.opts.Group
	g.mu.Lock()
	nodes := slices.Clone(g.nodes)
	g.mu.Unlock()
	members := 0
	for i, m := range nodes {
		m.mu.Lock()
		cfg, phase := m.cfg, m.phase
		m.mu.Unlock()
		if cfg == nil || cfg.Machine().Type() == mtype.TypeWorker {
			continue
		}
		members++
		if phase != "running" {
			return fmt.Errorf("etcd member %016x is not healthy; all members must be healthy to perform an upgrade: %s is %s", i+1, m.opts.Name, phase)
		}
	}
	if members == 2 {
		return fmt.Errorf("etcd member count(%d) is insufficient to maintain quorum if upgrade commences", members)
	}
	return nil
}

// Read serves /proc/sys/kernel/random/boot_id, which tells one boot from
// the next (talosctl reads it to follow a reboot).
func (s *runningService) Read(in *machine.ReadRequest, srv grpc.ServerStreamingServer[common.Data]) error {
	n := s.n
	n.record(Call{Method: "Read", Phase: "running", Mode: in.GetPath()})
	if in.GetPath() != "/proc/sys/kernel/random/boot_id" {
		return status.Errorf(codes.NotFound, "fake node: %s not modelled", in.GetPath())
	}
	n.mu.Lock()
	id := n.day2.bootID
	n.mu.Unlock()
	return srv.Send(&common.Data{Bytes: []byte(id + "\n")})
}
