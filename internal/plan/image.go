package plan

import (
	"fmt"
	"slices"
	"strings"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/image"
	"github.com/dodai-dev/dodai/internal/talos/compat"
)

// Talos upgrade APIs (Upgrade.API).
const (
	// APILifecycle is Talos 1.13's: ImageService.Pull of the installer,
	// LifecycleService.Upgrade, then MachineService.Reboot.
	APILifecycle = "LifecycleService"
	// APILegacy is MachineService.Upgrade, the only one before 1.13
	// (deprecated in 1.13).
	APILegacy = "MachineService.Upgrade"
)

// UpgradeAPI is the API a node running Talos version upgrades through:
// the node's own release decides, as talosctl 1.13 does.
func UpgradeAPI(version string) string {
	if compat.LifecycleUpgrade(version) {
		return APILifecycle
	}
	return APILegacy
}

// Target is the OS image the cluster file wants on the nodes.
type Target struct {
	// Version is spec.talosVersion.
	Version string
	// Installer is the image an upgrade installs.
	Installer string
	// Schematic is the file's schematic ID when the installer is the Image
	// Factory's installer for it ("" otherwise).
	Schematic string
	// Extensions the file lists (official names, sorted).
	Extensions []string
	// ImageExtensions are the extensions the installer carries; Known is
	// false when dodai cannot tell (a custom installer).
	ImageExtensions []string
	Known           bool
}

// TargetImage works out the target image of a cluster file.
func TargetImage(spec cluster.Spec) (*Target, error) {
	id, err := image.SchematicID(spec.Image)
	if err != nil {
		return nil, fmt.Errorf("computing the schematic ID: %w", err)
	}
	t := &Target{Version: spec.TalosVersion, Installer: image.InstallerImage(spec, id)}
	t.Extensions = slices.Clone(spec.Image.Extensions)
	slices.Sort(t.Extensions)
	switch {
	case spec.Image.Installer == "":
		t.Schematic, t.ImageExtensions, t.Known = id, t.Extensions, true
	case strings.HasPrefix(spec.Image.Installer, "ghcr.io/siderolabs/installer:"):
		// The vanilla installer carries no extension.
		t.Known = true
	default:
		parts := strings.Split(strings.SplitN(spec.Image.Installer, ":", 2)[0], "/")
		if len(parts) >= 3 && strings.Contains(parts[len(parts)-2], "installer") && parts[len(parts)-1] == id {
			t.Schematic, t.ImageExtensions, t.Known = id, t.Extensions, true
		}
	}
	return t, nil
}

// UpgradeFor compares what the node runs with the target: the upgrade to
// run (nil when none), refusals and warnings.
func (t *Target) UpgradeFor(f *Facts) (u *Upgrade, refusals, warnings []string) {
	needed := f.TalosVersion != t.Version
	if t.Schematic != "" && f.Schematic != t.Schematic {
		needed = true
	}
	if t.Schematic == "" && t.Known && !slices.Equal(f.Extensions, t.ImageExtensions) {
		needed = true
	}
	if !needed {
		return nil, nil, nil
	}
	u = &Upgrade{Image: t.Installer, FromVersion: f.TalosVersion, ToVersion: t.Version, FromSchematic: f.Schematic, ToSchematic: t.Schematic,
		API: UpgradeAPI(f.TalosVersion)}
	if t.Known {
		u.Extensions = slices.Clone(t.ImageExtensions)
		if u.Extensions == nil {
			u.Extensions = []string{}
		}
		for _, e := range t.ImageExtensions {
			if !slices.Contains(f.Extensions, e) {
				u.AddExtensions = append(u.AddExtensions, e)
			}
		}
	}
	for _, e := range f.Extensions {
		switch {
		case !slices.Contains(t.Extensions, e):
			u.RemoveExtensions = append(u.RemoveExtensions, e)
		case t.Known && !slices.Contains(t.ImageExtensions, e):
			refusals = append(refusals, fmt.Sprintf("the upgrade would drop extension %s, which the node runs and spec.image.extensions still lists: installer %s does not carry it (Talos would boot without it or roll back); build an installer with it or remove it from the file", e, t.Installer))
		}
	}
	if !t.Known && len(f.Extensions) > 0 {
		warnings = append(warnings, fmt.Sprintf("cannot tell which extensions installer %s carries; apply checks the node's extensions after the upgrade", t.Installer))
	}
	return u, refusals, warnings
}
