package faketalos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/siderolabs/image-factory/pkg/schematic"
	"github.com/siderolabs/talos/pkg/machinery/api/common"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/generate"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	mtype "github.com/siderolabs/talos/pkg/machinery/config/machine"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dodai-dev/dodai/internal/talos"
	"github.com/dodai-dev/dodai/internal/testutil"
	"github.com/dodai-dev/dodai/test/talosvalidate"
)

var systemNS = &common.ContainerdInstance{Driver: common.ContainerDriver_CRI, Namespace: common.ContainerdNamespace_NS_SYSTEM}

// pull calls ImageService.Pull and returns the pinned name it answers.
func pull(ctx context.Context, c *client.Client, ref string) (string, error) {
	s, err := c.ImageClient.Pull(ctx, &machine.ImageServicePullRequest{Containerd: systemNS, ImageRef: ref})
	if err != nil {
		return "", err
	}
	name := ""
	for {
		m, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return name, nil
		}
		if err != nil {
			return "", err
		}
		if m.GetName() != "" {
			name = m.GetName()
		}
	}
}

// install calls LifecycleService.Upgrade and returns the installer's lines
// and exit code (-1 without one).
func install(ctx context.Context, c *client.Client, ref string) ([]string, int32, error) {
	s, err := c.LifecycleClient.Upgrade(ctx, &machine.LifecycleServiceUpgradeRequest{Containerd: systemNS, Source: &machine.InstallArtifactsSource{ImageName: ref}})
	if err != nil {
		return nil, -1, err
	}
	var lines []string
	code := int32(-1)
	for {
		m, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return lines, code, nil
		}
		if err != nil {
			return lines, code, err
		}
		switch p := m.GetProgress().GetResponse().(type) {
		case *machine.LifecycleServiceInstallProgress_Message:
			lines = append(lines, p.Message)
		case *machine.LifecycleServiceInstallProgress_ExitCode:
			code = p.ExitCode
		}
	}
}

// startConfigured starts a fake node of a release and configures it.
func startConfigured(ctx context.Context, t *testing.T, release string, port int, maint, addr string, f *Factory, schematicID string) (*Node, *clientconfig.Config) {
	t.Helper()
	contract, err := config.ParseContractFromVersion(release)
	if err != nil {
		t.Fatal(err)
	}
	bundle, _ := secrets.NewBundle(secrets.NewClock(), contract)
	in, _ := generate.NewInput("fake", "https://127.0.0.1:6443", "1.34.1", generate.WithSecretsBundle(bundle),
		generate.WithVersionContract(contract), generate.WithInstallDisk("/dev/nvme0n1"))
	tc, _ := in.Talosconfig()
	mac := fmt.Sprintf("52:54:00:00:03:%s", addr[len(addr)-2:])
	inv := DefaultInventory("talos-"+release, mac)
	inv.TalosVersion, inv.Schematic = release, schematicID
	n, err := Start(Options{Name: release, MaintenanceAddr: maint, Port: port, Inventory: inv, RebootDelay: 20 * time.Millisecond, Factory: f})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	mc, err := talos.Maintenance(ctx, talos.Endpoint(maint, port))
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Close()
	if _, err := mc.ApplyConfiguration(ctx, &machine.ApplyConfigurationRequest{Data: genConfig(t, in, mtype.TypeControlPlane, "cp", mac, addr)}); err != nil {
		t.Fatal(err)
	}
	return n, tc
}

// TestLifecycleService: a Talos 1.13 node upgrades through ImageService.Pull,
// LifecycleService.Upgrade (no reboot) and Reboot (boots the new image),
// with the failures a real node answers; MachineService.Upgrade still
// works there, recorded as deprecated.
func TestLifecycleService(t *testing.T) {
	if testing.Short() {
		t.Skip("starts fake Talos nodes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	port := testutil.FreePort(t)
	base := 10 + os.Getpid()%40
	f := NewFactory()
	idA, _ := f.Add(&schematic.Schematic{Customization: schematic.Customization{SystemExtensions: schematic.SystemExtensions{OfficialExtensions: []string{"siderolabs/drbd"}}}})
	idB, _ := f.Add(&schematic.Schematic{Customization: schematic.Customization{SystemExtensions: schematic.SystemExtensions{OfficialExtensions: []string{"siderolabs/drbd", "siderolabs/zfs"}}}})
	addr := fmt.Sprintf("127.0.%d.51", base)
	n, tc := startConfigured(ctx, t, "v1.13.9", port, fmt.Sprintf("127.0.%d.50", base), addr, f, idA)
	c := waitAuth(ctx, t, tc, talos.Endpoint(addr, port))
	defer c.Close()
	boot1 := bootID(ctx, t, c)
	img := "factory.talos.dev/metal-installer/" + idB + ":v1.13.10"

	// Unknown images are not pulled; an image not pulled is not installed.
	if _, err := pull(ctx, c, "factory.talos.dev/metal-installer/0000:v1.13.10"); status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "error pulling image") {
		t.Fatalf("pulling an unknown schematic: %v", err)
	}
	if _, _, err := install(ctx, c, img); status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "not found in containerd store") {
		t.Fatalf("installing an image not pulled: %v", err)
	}
	if _, _, err := install(ctx, c, ""); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("installing without an image: %v", err)
	}

	// Pull, install: the node keeps running its boot until it reboots.
	name, err := pull(ctx, c, img)
	if err != nil || !strings.HasPrefix(name, "factory.talos.dev/metal-installer/"+idB+"@sha256:") {
		t.Fatalf("pull: %q %v", name, err)
	}
	lines, code, err := install(ctx, c, img)
	if err != nil || code != 0 || len(lines) == 0 || !strings.Contains(strings.Join(lines, "\n"), "v1.13.10") {
		t.Fatalf("install: %q exit %d %v", lines, code, err)
	}
	if bootID(ctx, t, c) != boot1 || n.TalosVersion() != "v1.13.9" || n.Count("Boot") != 1 {
		t.Fatal("LifecycleService.Upgrade rebooted or switched the running version")
	}
	// reboot reboots the node and waits until it served a new boot.
	reboot := func(c *client.Client) {
		t.Helper()
		boots := n.Count("Boot")
		if err := c.Reboot(ctx); err != nil {
			t.Fatal(err)
		}
		waitFor(ctx, t, "a new boot", func() bool { return n.Count("Boot") > boots && n.Phase() == "running" })
	}
	reboot(c)
	if n.TalosVersion() != "v1.13.10" {
		t.Fatalf("rebooted into %s, want v1.13.10", n.TalosVersion())
	}
	c2 := waitAuth(ctx, t, tc, talos.Endpoint(addr, port))
	defer c2.Close()
	if v, err := talos.Version(ctx, c2.COSI); err != nil || v != "v1.13.10" || bootID(ctx, t, c2) == boot1 {
		t.Fatalf("after the reboot: version %s %v", v, err)
	}
	if names, id := extensionsOf(ctx, t, c2); !slices.Equal(names, []string{"drbd", "zfs"}) || id != idB {
		t.Fatalf("extensions after the upgrade %v schematic %s", names, id)
	}

	// A plain reboot boots the same image.
	boot2 := bootID(ctx, t, c2)
	reboot(c2)
	c3 := waitAuth(ctx, t, tc, talos.Endpoint(addr, port))
	defer c3.Close()
	if bootID(ctx, t, c3) == boot2 || n.TalosVersion() != "v1.13.10" {
		t.Fatalf("plain reboot: same boot, or the version changed to %s", n.TalosVersion())
	}

	// The installer fails: an exit code, nothing installed.
	n.SetFaults(Faults{InstallerExitCode: 3})
	vanilla := "ghcr.io/siderolabs/installer:v1.13.11"
	if _, err := pull(ctx, c3, vanilla); err != nil {
		t.Fatal(err)
	}
	if lines, code, err := install(ctx, c3, vanilla); err != nil || code != 3 || len(lines) == 0 || !strings.Contains(lines[len(lines)-1], "no space left") {
		t.Fatalf("failing installer: %q exit %d %v", lines, code, err)
	}

	// Rollback: the installed image does not boot; the old one runs again.
	n.SetFaults(Faults{UpgradeRollback: true})
	if _, _, err := install(ctx, c3, vanilla); err != nil {
		t.Fatal(err)
	}
	reboot(c3)
	if n.TalosVersion() != "v1.13.10" {
		t.Fatalf("after a rollback the node runs %s", n.TalosVersion())
	}
	n.SetFaults(Faults{})

	// The deprecated API still upgrades a 1.13 node; the call says so.
	c4 := waitAuth(ctx, t, tc, talos.Endpoint(addr, port))
	defer c4.Close()
	//nolint:staticcheck // the deprecated API is what this checks
	if _, err := c4.Upgrade(ctx, vanilla, false, true); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "legacy upgrade", func() bool { return n.Phase() == "running" && n.TalosVersion() == "v1.13.11" })
	var legacy []Call
	for _, call := range n.Calls() {
		if call.Method == "Upgrade" {
			legacy = append(legacy, call)
		}
	}
	if len(legacy) != 1 || !strings.Contains(legacy[0].Detail, "deprecated") {
		t.Fatalf("legacy Upgrade calls %+v", legacy)
	}
	if want := []string{img, vanilla, vanilla}; !slices.Equal(n.Upgrades(), want) {
		t.Fatalf("upgrades %v, want %v", n.Upgrades(), want)
	}
}

// TestNoLifecycleServiceBefore113: nodes of 1.11 and 1.12 do not serve the
// new services (Unimplemented, as from a real node) and upgrade through
// MachineService.Upgrade, not recorded as deprecated.
func TestNoLifecycleServiceBefore113(t *testing.T) {
	for _, v := range talosvalidate.External {
		if err := talosvalidate.Available(v + ".0"); err != nil {
			if testing.Short() {
				t.Skip(err)
			}
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	port := testutil.FreePort(t)
	base := 10 + os.Getpid()%40
	for i, release := range []string{"v1.11.6", "v1.12.7"} {
		t.Run(release, func(t *testing.T) {
			addr := fmt.Sprintf("127.0.%d.%d", base, 61+2*i)
			n, tc := startConfigured(ctx, t, release, port, fmt.Sprintf("127.0.%d.%d", base, 60+2*i), addr, NewFactory(), "")
			c := waitAuth(ctx, t, tc, talos.Endpoint(addr, port))
			defer c.Close()
			// A configured node loads applied configs with its release's
			// machinery too: 1.11 refuses a 1.13 config, 1.12 takes it.
			_, err := c.ApplyConfiguration(ctx, &machine.ApplyConfigurationRequest{Data: configFor(t, "v1.13.9"), Mode: machine.ApplyConfigurationRequest_AUTO, DryRun: true})
			if release == "v1.11.6" && (status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "machinery v1.11.6 rejects it")) {
				t.Fatalf("a 1.13 config on a running 1.11 node: %v", err)
			}
			if release == "v1.12.7" && err != nil {
				t.Fatalf("a 1.13 config on a running 1.12 node: %v", err)
			}
			img := "ghcr.io/siderolabs/installer:v1.12.8"
			if _, err := pull(ctx, c, img); status.Code(err) != codes.Unimplemented {
				t.Fatalf("ImageService on %s: %v, want Unimplemented", release, err)
			}
			if _, _, err := install(ctx, c, img); status.Code(err) != codes.Unimplemented {
				t.Fatalf("LifecycleService on %s: %v, want Unimplemented", release, err)
			}
			//nolint:staticcheck // the API of these releases
			if _, err := c.Upgrade(ctx, img, false, true); err != nil {
				t.Fatal(err)
			}
			waitFor(ctx, t, "upgraded", func() bool { return n.Phase() == "running" && n.TalosVersion() == "v1.12.8" })
			for _, call := range n.Calls() {
				if call.Method == "Upgrade" && call.Detail != "" {
					t.Fatalf("%s: legacy upgrade marked %q", release, call.Detail)
				}
			}
		})
	}
}
