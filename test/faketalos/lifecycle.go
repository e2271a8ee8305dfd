package faketalos

import (
	"context"
	"crypto/sha256"
	"fmt"
	"strings"

	"github.com/siderolabs/talos/pkg/machinery/api/common"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dodai-dev/dodai/internal/talos/compat"
)

// Talos 1.13 upgrades through two new services, which nodes of older
// releases do not serve (a call answers Unimplemented, as gRPC does for an
// unknown service): ImageService.Pull brings the installer image into a
// containerd namespace, LifecycleService.Upgrade runs it against the system
// disk (streaming its output and exit code) without rebooting, and
// MachineService.Reboot boots the new image. Unlike MachineService.Upgrade
// (still served by 1.13, deprecated there) the new API checks nothing about
// etcd: the client must. A pending image is booted by the next reboot.

// lifecycle is the part of a node the new API changes.
type lifecycle struct {
	busy bool
	// pulled are the images in the node's containerd, by namespace/ref.
	pulled map[string]bool
	// installed is the image the next boot runs (nil: the current one).
	installed *installerImage
}

// servesLifecycle reports whether the node's release serves
// LifecycleService and ImageService.
func (n *Node) servesLifecycle() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return compat.LifecycleUpgrade(n.opts.Inventory.TalosVersion)
}

// registerLifecycle adds the 1.13 services to a configured node's server.
func (n *Node) registerLifecycle(srv *grpc.Server) {
	if !n.servesLifecycle() {
		return
	}
	machine.RegisterImageServiceServer(srv, &imageService{n: n})
	machine.RegisterLifecycleServiceServer(srv, &lifecycleService{n: n})
}

func containerdKey(in *common.ContainerdInstance, ref string) string {
	return in.GetDriver().String() + "/" + in.GetNamespace().String() + "/" + ref
}

type imageService struct {
	machine.UnimplementedImageServiceServer
	n *Node
}

// Pull resolves the image like the node's registry would (see Factory) and
// answers with the reference pinned to a digest, as Talos does.
func (s *imageService) Pull(in *machine.ImageServicePullRequest, srv grpc.ServerStreamingServer[machine.ImageServicePullResponse]) error {
	n := s.n
	call := Call{Method: "ImageService.Pull", Phase: "running", Mode: in.GetImageRef()}
	fail := func(err error) error {
		call.Code = status.Code(err)
		n.record(call)
		return err
	}
	if in.GetContainerd() == nil {
		return fail(status.Error(codes.InvalidArgument, "containerd instance is required"))
	}
	if _, err := n.opts.Factory.resolve(in.GetImageRef()); err != nil {
		return fail(status.Errorf(codes.NotFound, "error pulling image: %s", err))
	}
	if err := srv.Send(&machine.ImageServicePullResponse{Response: &machine.ImageServicePullResponse_PullProgress{
		PullProgress: &machine.ImageServicePullProgress{LayerId: "sha256:0001", Progress: &machine.ImageServicePullLayerProgress{
			Status: machine.ImageServicePullLayerProgress_EXTRACT_COMPLETE, Offset: 1, Total: 1,
		}},
	}}); err != nil {
		return fail(err)
	}
	n.mu.Lock()
	if n.day2.lifecycle.pulled == nil {
		n.day2.lifecycle.pulled = map[string]bool{}
	}
	n.day2.lifecycle.pulled[containerdKey(in.GetContainerd(), in.GetImageRef())] = true
	n.mu.Unlock()
	n.record(call)
	ref := in.GetImageRef()
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		ref = ref[:i]
	}
	return srv.Send(&machine.ImageServicePullResponse{Response: &machine.ImageServicePullResponse_Name{
		Name: fmt.Sprintf("%s@sha256:%x", ref, sha256.Sum256([]byte(in.GetImageRef()))),
	}})
}

type lifecycleService struct {
	machine.UnimplementedLifecycleServiceServer
	n *Node
}

// Upgrade runs the installer of an image pulled before into the same
// containerd instance; the node keeps running until it is rebooted.
// Fault InstallerExitCode makes the installer fail.
func (s *lifecycleService) Upgrade(in *machine.LifecycleServiceUpgradeRequest, srv grpc.ServerStreamingServer[machine.LifecycleServiceUpgradeResponse]) error {
	n := s.n
	ref := in.GetSource().GetImageName()
	call := Call{Method: "LifecycleService.Upgrade", Phase: "running", Mode: ref}
	fail := func(err error) error {
		call.Code = status.Code(err)
		n.record(call)
		return err
	}
	if ref == "" {
		return fail(status.Error(codes.InvalidArgument, "installer image name is required"))
	}
	n.mu.Lock()
	if n.day2.lifecycle.busy {
		n.mu.Unlock()
		return fail(status.Error(codes.FailedPrecondition, "another installation/upgrade is already in progress"))
	}
	pulled := n.day2.lifecycle.pulled[containerdKey(in.GetContainerd(), ref)]
	n.day2.lifecycle.busy = true
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		n.day2.lifecycle.busy = false
		n.mu.Unlock()
	}()
	if !pulled {
		return fail(status.Errorf(codes.Internal, "upgrade failed: installer image %q not found in containerd store: image %q: not found", ref, ref))
	}
	img, err := n.opts.Factory.resolve(ref)
	if err != nil {
		return fail(status.Errorf(codes.Internal, "upgrade failed: %v", err))
	}
	send := func(p *machine.LifecycleServiceInstallProgress) error {
		return srv.Send(&machine.LifecycleServiceUpgradeResponse{Progress: p})
	}
	for _, line := range []string{"running installer " + ref, "upgrading to Talos " + img.version, "installing the bootloader"} {
		if err := send(&machine.LifecycleServiceInstallProgress{Response: &machine.LifecycleServiceInstallProgress_Message{Message: line}}); err != nil {
			return fail(err)
		}
	}
	code := n.faults().InstallerExitCode
	if code == 0 {
		n.mu.Lock()
		n.day2.lifecycle.installed = &img
		n.day2.upgrades = append(n.day2.upgrades, ref)
		n.mu.Unlock()
	} else if err := send(&machine.LifecycleServiceInstallProgress{Response: &machine.LifecycleServiceInstallProgress_Message{
		Message: "error: writing the boot partition: no space left on device"}}); err != nil {
		return fail(err)
	}
	call.Detail = fmt.Sprintf("exit code %d", code)
	n.record(call)
	return send(&machine.LifecycleServiceInstallProgress{Response: &machine.LifecycleServiceInstallProgress_ExitCode{ExitCode: code}})
}

// Reboot reboots the node; an image LifecycleService installed boots then
// (or fails to, with the rollback fault, and Talos boots the old one).
func (s *runningService) Reboot(_ context.Context, in *machine.RebootRequest) (*machine.RebootResponse, error) {
	n := s.n
	n.mu.Lock()
	img := n.day2.lifecycle.installed
	n.day2.lifecycle.installed = nil
	n.mu.Unlock()
	n.record(Call{Method: "Reboot", Phase: "running", Mode: in.GetMode().String()})
	var change func() bool
	if img != nil {
		change = n.bootInto(img)
	}
	n.rebootRunning(change)
	return &machine.RebootResponse{Messages: []*machine.Reboot{{ActorId: newBootID()}}}, nil
}
