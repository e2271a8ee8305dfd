package faketalos

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cosi-project/runtime/pkg/safe"
	"github.com/siderolabs/image-factory/pkg/schematic"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configpatcher"
	"github.com/siderolabs/talos/pkg/machinery/config/generate"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	mtype "github.com/siderolabs/talos/pkg/machinery/config/machine"
	configres "github.com/siderolabs/talos/pkg/machinery/resources/config"
	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dodai-dev/dodai/internal/talos"

	"github.com/dodai-dev/dodai/internal/testutil"
)

func patchConfig(t *testing.T, data []byte, patch string) []byte {
	t.Helper()
	p, err := configpatcher.LoadPatch([]byte(patch))
	if err != nil {
		t.Fatal(err)
	}
	out, err := configpatcher.Apply(configpatcher.WithBytes(data), []configpatcher.Patch{p})
	if err != nil {
		t.Fatal(err)
	}
	b, err := out.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func bootID(ctx context.Context, t *testing.T, c *client.Client) string {
	t.Helper()
	r, err := c.Read(ctx, "/proc/sys/kernel/random/boot_id")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// extensionsOf reads the ExtensionStatus resources: names, and the
// schematic pseudo-extension's version.
func extensionsOf(ctx context.Context, t *testing.T, c *client.Client) (names []string, schematicID string) {
	t.Helper()
	l, err := safe.StateListAll[*runtime.ExtensionStatus](ctx, c.COSI)
	if err != nil {
		t.Fatal(err)
	}
	for e := range l.All() {
		md := e.TypedSpec().Metadata
		if md.Name == "schematic" {
			schematicID = md.Version
			continue
		}
		names = append(names, md.Name)
	}
	slices.Sort(names)
	return names, schematicID
}

func waitFor(ctx context.Context, t *testing.T, what string, f func() bool) {
	t.Helper()
	for !f() {
		if ctx.Err() != nil {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestDay2ApplyModesAndUpgrade(t *testing.T) {
	if testing.Short() {
		t.Skip("starts fake Talos nodes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	port := testutil.FreePort(t)
	base := 50 + os.Getpid()%50
	maint, addr := fmt.Sprintf("127.0.%d.40", base), fmt.Sprintf("127.0.%d.41", base)

	f := NewFactory()
	idA, err := f.Add(&schematic.Schematic{Customization: schematic.Customization{SystemExtensions: schematic.SystemExtensions{OfficialExtensions: []string{"siderolabs/drbd"}}}})
	if err != nil {
		t.Fatal(err)
	}
	idB, _ := f.Add(&schematic.Schematic{Customization: schematic.Customization{SystemExtensions: schematic.SystemExtensions{OfficialExtensions: []string{"siderolabs/drbd", "siderolabs/zfs"}}}})
	bundle, _ := secrets.NewBundle(secrets.NewClock(), config.TalosVersion1_11)
	in, _ := generate.NewInput("fake", "https://127.0.0.1:6443", "1.34.1", generate.WithSecretsBundle(bundle),
		generate.WithVersionContract(config.TalosVersion1_11), generate.WithInstallDisk("/dev/nvme0n1"))
	tc, _ := in.Talosconfig()

	inv := DefaultInventory("talos-cp1", "52:54:00:00:01:01")
	inv.Schematic = idA
	n, err := Start(Options{Name: "cp1", MaintenanceAddr: maint, Port: port, Inventory: inv, RebootDelay: 20 * time.Millisecond, Factory: f})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	mc, _ := talos.Maintenance(ctx, talos.Endpoint(maint, port))
	defer mc.Close()
	cfg := genConfig(t, in, mtype.TypeControlPlane, "cp1", "52:54:00:00:01:01", addr)
	if _, err := mc.ApplyConfiguration(ctx, &machine.ApplyConfigurationRequest{Data: cfg, Mode: machine.ApplyConfigurationRequest_REBOOT}); err != nil {
		t.Fatal(err)
	}
	c := waitAuth(ctx, t, tc, talos.Endpoint(addr, port))
	defer c.Close()

	// The running config and the image's extensions are resources.
	mcr, err := safe.StateGetByID[*configres.MachineConfig](ctx, c.COSI, configres.ActiveID)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := mcr.Provider().Bytes(); string(got) != string(mustBytes(t, cfg)) {
		t.Fatalf("MachineConfig differs from the applied config")
	}
	if names, id := extensionsOf(ctx, t, c); !slices.Equal(names, []string{"drbd"}) || id != idA {
		t.Fatalf("extensions %v schematic %s", names, id)
	}
	boot1 := bootID(ctx, t, c)

	// AUTO dry runs: a kubelet change applies live, an env change reboots.
	kubeletChange := patchConfig(t, cfg, "machine:\n  kubelet:\n    extraArgs:\n      max-pods: \"200\"\n")
	envChange := patchConfig(t, cfg, "machine:\n  env:\n    HTTP_PROXY: http://proxy:3128\n")
	for _, tt := range []struct {
		data []byte
		mode machine.ApplyConfigurationRequest_Mode
		want string
	}{
		{kubeletChange, machine.ApplyConfigurationRequest_NO_REBOOT, "Dry run summary:\nApplied configuration without a reboot (skipped in dry-run).\nConfig diff:\n\n--- a\n+++ b\n"},
		{envChange, machine.ApplyConfigurationRequest_REBOOT, "Dry run summary:\nApplied configuration with a reboot (skipped in dry-run).\nConfig diff:\n\n--- a\n+++ b\n"},
		{cfg, machine.ApplyConfigurationRequest_NO_REBOOT, "Config diff:\n\nNo changes."},
	} {
		resp, err := c.ApplyConfiguration(ctx, &machine.ApplyConfigurationRequest{Data: tt.data, Mode: machine.ApplyConfigurationRequest_AUTO, DryRun: true})
		if err != nil {
			t.Fatal(err)
		}
		m := resp.Messages[0]
		if m.Mode != tt.mode || !strings.Contains(m.ModeDetails, tt.want) {
			t.Fatalf("dry run: mode %s details %q, want %s %q", m.Mode, m.ModeDetails, tt.mode, tt.want)
		}
	}
	resp, _ := c.ApplyConfiguration(ctx, &machine.ApplyConfigurationRequest{Data: kubeletChange, Mode: machine.ApplyConfigurationRequest_AUTO, DryRun: true})
	if !strings.Contains(resp.Messages[0].ModeDetails, "+            max-pods: \"200\"") {
		t.Fatalf("diff lacks the change: %s", resp.Messages[0].ModeDetails)
	}
	_, err = c.ApplyConfiguration(ctx, &machine.ApplyConfigurationRequest{Data: envChange, Mode: machine.ApplyConfigurationRequest_NO_REBOOT})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "can't be applied in immediate mode") {
		t.Fatalf("no-reboot apply of a reboot change: %v", err)
	}
	if len(n.Applied()) != 1 {
		t.Fatalf("dry runs or refusals applied: %d", len(n.Applied()))
	}

	// A live apply: same boot, new MachineConfig.
	resp, err = c.ApplyConfiguration(ctx, &machine.ApplyConfigurationRequest{Data: kubeletChange, Mode: machine.ApplyConfigurationRequest_AUTO})
	if err != nil || resp.Messages[0].Mode != machine.ApplyConfigurationRequest_NO_REBOOT {
		t.Fatalf("live apply: %v %v", resp, err)
	}
	if bootID(ctx, t, c) != boot1 || n.Phase() != "running" {
		t.Fatal("live apply rebooted")
	}
	mcr, _ = safe.StateGetByID[*configres.MachineConfig](ctx, c.COSI, configres.ActiveID)
	if got, _ := mcr.Provider().Bytes(); !strings.Contains(string(got), "max-pods") {
		t.Fatal("MachineConfig not updated by the live apply")
	}

	// An unknown image and a staged upgrade are refused; nothing reboots.
	for _, req := range []*machine.UpgradeRequest{
		{Image: "factory.talos.dev/metal-installer/0000:v1.11.6"},
		{Image: "example.com/other:v1.11.6"},
		{Image: "factory.talos.dev/metal-installer/" + idB + ":v1.11.6", Stage: true},
	} {
		if _, err := c.Upgrade(ctx, req.Image, req.Stage, false); err == nil {
			t.Fatalf("upgrade to %s accepted", req.Image)
		}
	}

	// Upgrade: new boot, new version, new extensions.
	img := "factory.talos.dev/metal-installer/" + idB + ":v1.11.6"
	if _, err := c.Upgrade(ctx, img, false, false); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "upgraded node", func() bool { return n.Phase() == "running" && n.TalosVersion() == "v1.11.6" })
	c2 := waitAuth(ctx, t, tc, talos.Endpoint(addr, port))
	defer c2.Close()
	if bootID(ctx, t, c2) == boot1 {
		t.Fatal("boot ID unchanged after upgrade")
	}
	if v, err := talos.Version(ctx, c2.COSI); err != nil || v != "v1.11.6" {
		t.Fatalf("version after upgrade: %s %v", v, err)
	}
	if names, id := extensionsOf(ctx, t, c2); !slices.Equal(names, []string{"drbd", "zfs"}) || id != idB {
		t.Fatalf("extensions after upgrade %v schematic %s", names, id)
	}
	if !slices.Equal(n.Upgrades(), []string{img}) {
		t.Fatalf("upgrades %v", n.Upgrades())
	}
	// The config survived the upgrade.
	if got, _ := n.Config().Bytes(); !strings.Contains(string(got), "max-pods") {
		t.Fatal("config lost in the upgrade")
	}

	// Rollback: the node reboots (twice) and still runs the old image.
	n.SetFaults(Faults{UpgradeRollback: true})
	boot2 := bootID(ctx, t, c2)
	if _, err := c2.Upgrade(ctx, "ghcr.io/siderolabs/installer:v1.11.7", false, false); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "node back after rollback", func() bool { return n.Phase() == "rebooting" })
	waitFor(ctx, t, "node back after rollback", func() bool { return n.Phase() == "running" })
	c3 := waitAuth(ctx, t, tc, talos.Endpoint(addr, port))
	defer c3.Close()
	if bootID(ctx, t, c3) == boot2 || n.TalosVersion() != "v1.11.6" {
		t.Fatalf("rollback: version %s", n.TalosVersion())
	}
	if names, id := extensionsOf(ctx, t, c3); !slices.Equal(names, []string{"drbd", "zfs"}) || id != idB {
		t.Fatalf("extensions after rollback %v %s", names, id)
	}

	// Never coming back.
	n.SetFaults(Faults{UpgradeNeverReturn: true})
	if _, err := c3.Upgrade(ctx, "ghcr.io/siderolabs/installer:v1.11.7", false, false); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "node gone", func() bool { return n.Phase() == "gone" })
	time.Sleep(50 * time.Millisecond)
	if n.Phase() != "gone" {
		t.Fatalf("a node that never returns came back: %s", n.Phase())
	}
	// Fixed (the fault cleared): it boots the new image.
	n.SetFaults(Faults{})
	waitFor(ctx, t, "node back after the fix", func() bool { return n.Phase() == "running" })
	if n.TalosVersion() != "v1.11.7" {
		t.Fatalf("version after the fix: %s", n.TalosVersion())
	}
	if schem, exts := n.Image(); schem != "" || len(exts) != 0 {
		t.Fatalf("vanilla image: schematic %q extensions %v", schem, exts)
	}
}

func mustBytes(t *testing.T, cfg []byte) []byte {
	t.Helper()
	p, err := configpatcher.Apply(configpatcher.WithBytes(cfg), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestUpgradeRefusedWithoutQuorum(t *testing.T) {
	if testing.Short() {
		t.Skip("starts fake Talos nodes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	port := testutil.FreePort(t)
	base := 200 + os.Getpid()%50
	bundle, _ := secrets.NewBundle(secrets.NewClock(), config.TalosVersion1_11)
	in, _ := generate.NewInput("fake", "https://127.0.0.1:6443", "1.34.1", generate.WithSecretsBundle(bundle),
		generate.WithVersionContract(config.TalosVersion1_11), generate.WithInstallDisk("/dev/nvme0n1"))
	tc, _ := in.Talosconfig()
	g := NewGroup()
	var addrs []string
	for i := range 2 {
		mac := fmt.Sprintf("52:54:00:00:02:%02x", i)
		maint, addr := fmt.Sprintf("127.0.%d.%d", base, 10+i), fmt.Sprintf("127.0.%d.%d", base, 20+i)
		n, err := Start(Options{Name: fmt.Sprint("cp", i), MaintenanceAddr: maint, Port: port, Group: g,
			Inventory: DefaultInventory(fmt.Sprint("cp", i), mac), RebootDelay: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer n.Close()
		mc, _ := talos.Maintenance(ctx, talos.Endpoint(maint, port))
		if _, err := mc.ApplyConfiguration(ctx, &machine.ApplyConfigurationRequest{Data: genConfig(t, in, mtype.TypeControlPlane, fmt.Sprint("cp", i), mac, addr)}); err != nil {
			t.Fatal(err)
		}
		mc.Close()
		addrs = append(addrs, addr)
	}
	c := waitAuth(ctx, t, tc, talos.Endpoint(addrs[0], port))
	defer c.Close()
	waitAuth(ctx, t, tc, talos.Endpoint(addrs[1], port)).Close()
	_, err := c.Upgrade(ctx, "ghcr.io/siderolabs/installer:v1.11.6", false, false)
	if err == nil || !strings.Contains(err.Error(), "etcd member count(2) is insufficient to maintain quorum") {
		t.Fatalf("upgrade of one of two control planes: %v", err)
	}
	// --force skips the check (as talosctl upgrade --force does).
	if _, err := c.Upgrade(ctx, "ghcr.io/siderolabs/installer:v1.11.6", false, true); err != nil {
		t.Fatal(err)
	}
}
