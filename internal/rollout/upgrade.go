package rollout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/siderolabs/talos/pkg/machinery/api/common"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"

	"github.com/dodai-dev/dodai/internal/plan"
)

// startUpgrade installs the upgrade's image on the node and reboots it
// into it, with the API of the node's running release (plan.UpgradeAPI).
// record is called just before the call that reboots the node (so a
// resumed run waits for that reboot, and only for it).
//
// Talos 1.13+ (LifecycleService): ImageService.Pull of the installer into
// the system containerd, LifecycleService.Upgrade (the installer's output
// streams back and ends with its exit code; the node keeps running), then
// MachineService.Reboot. This API does not check etcd: the rollout's own
// checks (health, quorum, snapshot, leadership) ran before.
//
// Older nodes: MachineService.Upgrade, which pulls, checks etcd, installs
// and reboots in one call (deprecated in 1.13, the only API before).
func startUpgrade(ctx context.Context, c *client.Client, up *plan.Upgrade, record func() error) error {
	if plan.UpgradeAPI(up.FromVersion) == plan.APILegacy {
		if err := record(); err != nil {
			return err
		}
		//nolint:staticcheck // the only upgrade API of Talos before 1.13
		if _, err := c.Upgrade(ctx, up.Image, false, false); err != nil {
			return fmt.Errorf("Talos refused the upgrade to %s: %s", up.Image, short(err))
		}
		return nil
	}
	if err := lifecycleInstall(ctx, c, up.Image); err != nil {
		return err
	}
	if err := record(); err != nil {
		return err
	}
	if err := c.Reboot(ctx); err != nil {
		return fmt.Errorf("rebooting into %s: %s", up.Image, short(err))
	}
	return nil
}

// systemContainerd is the containerd instance of Talos' own images, where
// talosctl pulls installers ("--namespace system").
var systemContainerd = &common.ContainerdInstance{Driver: common.ContainerDriver_CRI, Namespace: common.ContainerdNamespace_NS_SYSTEM}

// lifecycleInstall pulls the installer and runs it through
// LifecycleService.Upgrade; a non-zero exit code is an error that quotes
// the installer's last lines.
func lifecycleInstall(ctx context.Context, c *client.Client, image string) error {
	pull, err := c.ImageClient.Pull(ctx, &machine.ImageServicePullRequest{Containerd: systemContainerd, ImageRef: image})
	if err != nil {
		return fmt.Errorf("Talos could not pull %s: %s", image, short(err))
	}
	pulled := ""
	for {
		m, err := pull.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("Talos could not pull %s: %s", image, short(err))
		}
		if name := m.GetName(); name != "" {
			pulled = name
		}
	}
	if pulled == "" {
		return fmt.Errorf("Talos did not report pulling %s", image)
	}
	stream, err := c.LifecycleClient.Upgrade(ctx, &machine.LifecycleServiceUpgradeRequest{
		Containerd: systemContainerd,
		Source:     &machine.InstallArtifactsSource{ImageName: image},
	})
	if err != nil {
		return fmt.Errorf("Talos refused the upgrade to %s: %s", image, short(err))
	}
	var last []string
	exit, done := int32(0), false
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("Talos refused the upgrade to %s: %s", image, short(err))
		}
		switch p := m.GetProgress().GetResponse().(type) {
		case *machine.LifecycleServiceInstallProgress_Message:
			last = append(last, strings.TrimSpace(p.Message))
			if len(last) > 3 {
				last = last[1:]
			}
		case *machine.LifecycleServiceInstallProgress_ExitCode:
			exit, done = p.ExitCode, true
		}
	}
	switch {
	case !done:
		return fmt.Errorf("the installer of %s ended without an exit code (last: %s)", image, orNone(strings.Join(last, "; ")))
	case exit != 0:
		return fmt.Errorf("the installer of %s exited with code %d: %s", image, exit, orNone(strings.Join(last, "; ")))
	}
	return nil
}
