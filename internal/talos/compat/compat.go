// Package compat holds dodai's version rules: which Talos releases dodai
// renders machine configs for, which Talos and Kubernetes releases new
// clusters get, which Kubernetes releases each Talos minor runs, which
// upgrades are allowed (Talos' own upgrade paths taken one minor at a time,
// Kubernetes one minor at a time) and which API a node's release upgrades
// through. The Talos facts come from machinery's compatibility package, the
// same tables talosctl checks before an upgrade; this package only adds the
// one-minor rules and the order of a combined upgrade.
//
// It depends on nothing else in dodai, so the cluster validator, the
// bootstrap and the day-2 plan can all use it.
package compat

import (
	"errors"
	"fmt"
	"strings"

	"github.com/blang/semver/v4"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/compatibility"
	"github.com/siderolabs/talos/pkg/machinery/compatibility/talos110"
	"github.com/siderolabs/talos/pkg/machinery/compatibility/talos111"
	"github.com/siderolabs/talos/pkg/machinery/compatibility/talos112"
	"github.com/siderolabs/talos/pkg/machinery/compatibility/talos113"
	"github.com/siderolabs/talos/pkg/machinery/compatibility/talos18"
	"github.com/siderolabs/talos/pkg/machinery/compatibility/talos19"
	"github.com/siderolabs/talos/pkg/machinery/constants"
)

// Talos minors (of major 1) dodai renders configs for. The oldest is 1.8:
// dodai reads disks from block.Disk resources, which older nodes do not
// have (`resource "disks" is not registered`). The newest is the minor of
// the machinery module dodai is built with: a newer Talos may use a config
// contract machinery does not know yet.
const (
	MinTalosMinor = 8
	MaxTalosMinor = 13
)

// DefaultTalosVersion is the Talos release new clusters get: the release of
// the machinery module dodai is built with (a test checks they agree).
const DefaultTalosVersion = "v1.13.9"

// DefaultKubernetesVersion is the Kubernetes release new clusters get: the
// default of DefaultTalosVersion's machinery.
const DefaultKubernetesVersion = "v" + constants.DefaultKubernetesVersion

// defaultKubernetes is the default Kubernetes of each Talos minor: the
// constants.DefaultKubernetesVersion of the machinery of its newest patch
// release (the newest minor's is dodai's own machinery's).
var defaultKubernetes = map[int]string{
	8:  "v1.31.4",
	9:  "v1.32.4",
	10: "v1.33.6",
	11: "v1.34.1",
	12: "v1.35.4",
	13: DefaultKubernetesVersion,
}

// DefaultKubernetesFor returns the Kubernetes release a cluster on Talos
// talos gets when its file names none: that Talos minor's own default. For a
// version dodai does not support it returns DefaultKubernetesVersion (the
// Talos error is reported on its own).
func DefaultKubernetesFor(talos string) string {
	if m, err := TalosMinor(talos); err == nil {
		return defaultKubernetes[m]
	}
	return DefaultKubernetesVersion
}

// kubernetesRange is machinery's supported Kubernetes range per Talos minor
// (Minimum inclusive; Maximum like 1.36.99, meaning any 1.36 patch).
var kubernetesRange = map[int][2]semver.Version{
	8:  {talos18.MinimumKubernetesVersion, talos18.MaximumKubernetesVersion},
	9:  {talos19.MinimumKubernetesVersion, talos19.MaximumKubernetesVersion},
	10: {talos110.MinimumKubernetesVersion, talos110.MaximumKubernetesVersion},
	11: {talos111.MinimumKubernetesVersion, talos111.MaximumKubernetesVersion},
	12: {talos112.MinimumKubernetesVersion, talos112.MaximumKubernetesVersion},
	13: {talos113.MinimumKubernetesVersion, talos113.MaximumKubernetesVersion},
}

// Supported describes the Talos releases dodai renders configs for, e.g.
// "v1.8.x to v1.13.x".
func Supported() string {
	return fmt.Sprintf("v1.%d.x to v1.%d.x", MinTalosMinor, MaxTalosMinor)
}

// Minors lists the supported Talos minors, oldest first, as "v1.8" … "v1.13".
func Minors() []string {
	var out []string
	for m := MinTalosMinor; m <= MaxTalosMinor; m++ {
		out = append(out, fmt.Sprintf("v1.%d", m))
	}
	return out
}

// parse reads a version like v1.13.9 or 1.36.3 (a missing patch is 0).
func parse(what, v string) (semver.Version, error) {
	sv, err := semver.ParseTolerant(v)
	if err != nil || v == "" {
		return semver.Version{}, fmt.Errorf("%q is not a %s version like %s", v, what, example[what])
	}
	return sv, nil
}

var example = map[string]string{"Talos": "v1.13.9", "Kubernetes": "v1.36.3"}

// TalosMinor returns the minor of a supported Talos version, or an error
// naming the supported range.
func TalosMinor(v string) (int, error) {
	sv, err := parse("Talos", v)
	if err != nil {
		return 0, err
	}
	if sv.Major != 1 || sv.Minor < MinTalosMinor || sv.Minor > MaxTalosMinor {
		return 0, fmt.Errorf("Talos %s is not supported: dodai renders configs for Talos %s", v, Supported())
	}
	return int(sv.Minor), nil
}

// CheckTalos returns an error unless dodai renders configs for Talos v.
func CheckTalos(v string) error {
	_, err := TalosMinor(v)
	return err
}

// KubernetesRange returns the Kubernetes releases a Talos version runs,
// for messages: e.g. "v1.31.0", "v1.36" for Talos 1.13 (any 1.36 patch).
func KubernetesRange(talos string) (lowest, highestMinor string, err error) {
	minor, err := TalosMinor(talos)
	if err != nil {
		return "", "", err
	}
	r := kubernetesRange[minor]
	return "v" + r[0].String(), fmt.Sprintf("v%d.%d", r[1].Major, r[1].Minor), nil
}

// CheckKubernetes returns an error unless Talos talos runs Kubernetes kube
// (machinery's compatibility rule, as talosctl applies it).
func CheckKubernetes(talos, kube string) error {
	lo, hi, err := KubernetesRange(talos)
	if err != nil {
		return err
	}
	if _, err := parse("Kubernetes", kube); err != nil {
		return err
	}
	tv, err := compatibility.ParseTalosVersion(&machine.VersionInfo{Tag: talos})
	if err != nil {
		return fmt.Errorf("%q is not a Talos version like v1.13.9: %w", talos, err)
	}
	kv, err := compatibility.ParseKubernetesVersion(kube)
	if err != nil {
		return fmt.Errorf("%q is not a Kubernetes version like v1.36.3: %w", kube, err)
	}
	if err := kv.SupportedWith(tv); err != nil {
		hint := ""
		if ms := TalosMinorsFor(kube); len(ms) > 0 {
			hint = fmt.Sprintf("; Kubernetes %s runs on Talos %s", minorOf(kube), strings.Join(ms, ", "))
		}
		return fmt.Errorf("%w (Talos %s runs Kubernetes %s to %s.x%s)", err, minorOf(talos), lo, hi, hint)
	}
	return nil
}

// TalosMinorsFor lists the supported Talos minors ("v1.12", "v1.13") that
// run Kubernetes kube, oldest first; nil if none does or kube is no version.
func TalosMinorsFor(kube string) []string {
	kv, err := semver.ParseTolerant(kube)
	if err != nil {
		return nil
	}
	var out []string
	for m := MinTalosMinor; m <= MaxTalosMinor; m++ {
		r := kubernetesRange[m]
		if kv.GTE(r[0]) && kv.LTE(r[1]) {
			out = append(out, fmt.Sprintf("v1.%d", m))
		}
	}
	return out
}

// CheckKubernetesUpgrade returns an error unless a cluster can go from
// Kubernetes from to to in one step: Kubernetes upgrades one minor at a
// time and never downgrades a minor (patch changes are fine). The error
// names the skipped minors and the next step.
func CheckKubernetesUpgrade(from, to string) error {
	f, err := parse("Kubernetes", from)
	if err != nil {
		return err
	}
	t, err := parse("Kubernetes", to)
	if err != nil {
		return err
	}
	switch {
	case t.Major != f.Major:
		return fmt.Errorf("Kubernetes %s → %s changes the major version: not supported", from, to)
	case t.Minor < f.Minor:
		return fmt.Errorf("Kubernetes %s → %s is a downgrade: Kubernetes does not support downgrading a minor version", from, to)
	case t.Minor > f.Minor+1:
		return fmt.Errorf("Kubernetes %s → %s skips %s: Kubernetes upgrades one minor at a time; upgrade to the newest v%d.%d.x first",
			from, to, skipped(f, t), f.Major, f.Minor+1)
	}
	return nil
}

// skipped lists the minors strictly between two versions: "v1.12, v1.13".
func skipped(from, to semver.Version) string {
	var out []string
	for m := from.Minor + 1; m < to.Minor; m++ {
		out = append(out, fmt.Sprintf("v%d.%d", from.Major, m))
	}
	return strings.Join(out, ", ")
}

// CheckTalosStep returns an error unless dodai upgrades nodes running Talos
// from to Talos to in one step: machinery's upgrade paths (CheckTalosUpgrade)
// and no minor skipped. machinery lets 1.13 install over 1.11, but Talos
// tests the migration between adjacent minors only and documents the path
// through the newest patch of every minor in between, which is what an
// operator expects dodai to follow. Downgrades keep machinery's verdict.
func CheckTalosStep(from, to string) error {
	f, err := parse("Talos", from)
	if err != nil {
		return err
	}
	t, err := parse("Talos", to)
	if err != nil {
		return err
	}
	if t.Major == f.Major && t.Minor > f.Minor+1 {
		return fmt.Errorf("Talos %s → %s skips %s: Talos upgrades are tested between adjacent minor releases only (the documented path goes through the newest patch of every minor in between); upgrade to the newest v%d.%d.x first",
			from, to, skipped(f, t), f.Major, f.Minor+1)
	}
	return CheckTalosUpgrade(from, to)
}

// CheckTalosUpgrade returns an error unless a node running Talos from can be
// upgraded (or downgraded) to Talos to: machinery's own upgrade paths, the
// check talosctl and the installer make.
func CheckTalosUpgrade(from, to string) error {
	if _, err := parse("Talos", from); err != nil {
		return err
	}
	if err := CheckTalos(to); err != nil {
		return err
	}
	host, err := compatibility.ParseTalosVersion(&machine.VersionInfo{Tag: from})
	if err != nil {
		return fmt.Errorf("%q is not a Talos version like v1.13.9: %w", from, err)
	}
	target, err := compatibility.ParseTalosVersion(&machine.VersionInfo{Tag: to})
	if err != nil {
		return fmt.Errorf("%q is not a Talos version like v1.13.9: %w", to, err)
	}
	return target.UpgradeableFrom(host)
}

// Versions are the Talos and Kubernetes releases of a cluster.
type Versions struct {
	Talos      string `json:"talos" yaml:"talos"`
	Kubernetes string `json:"kubernetes" yaml:"kubernetes"`
}

// Step is one upgrade of a cluster-wide component.
type Step struct {
	// Component is "talos" or "kubernetes".
	Component string `json:"component" yaml:"component"`
	From      string `json:"from" yaml:"from"`
	To        string `json:"to" yaml:"to"`
}

func (s Step) String() string { return fmt.Sprintf("%s %s → %s", s.Component, s.From, s.To) }

// UpgradePath returns the steps that take a cluster running cur to next,
// in the order to run them, or an error naming every rule that forbids it
// (CheckTalosStep, CheckKubernetesUpgrade, the target's skew).
// Talos goes first when the Kubernetes release still runs on the new Talos
// (talosctl's recommendation); otherwise Kubernetes goes first if the new
// Kubernetes runs on the current Talos. Unchanged components have no step.
func UpgradePath(cur, next Versions) ([]Step, error) {
	if err := CheckKubernetes(next.Talos, next.Kubernetes); err != nil {
		return nil, fmt.Errorf("target: %w", err)
	}
	talosChange := !sameVersion(cur.Talos, next.Talos)
	kubeChange := !sameVersion(cur.Kubernetes, next.Kubernetes)
	var errs []error
	if talosChange {
		if err := CheckTalosStep(cur.Talos, next.Talos); err != nil {
			errs = append(errs, err)
		}
	}
	if kubeChange {
		if err := CheckKubernetesUpgrade(cur.Kubernetes, next.Kubernetes); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	talos := Step{Component: "talos", From: cur.Talos, To: next.Talos}
	kube := Step{Component: "kubernetes", From: cur.Kubernetes, To: next.Kubernetes}
	switch {
	case talosChange && kubeChange:
		if CheckKubernetes(next.Talos, cur.Kubernetes) == nil {
			return []Step{talos, kube}, nil
		}
		if CheckKubernetes(cur.Talos, next.Kubernetes) == nil {
			return []Step{kube, talos}, nil
		}
		return nil, fmt.Errorf("no safe order: Talos %s does not run Kubernetes %s and Talos %s does not run Kubernetes %s; upgrade in smaller steps",
			next.Talos, cur.Kubernetes, cur.Talos, next.Kubernetes)
	case talosChange:
		return []Step{talos}, nil
	case kubeChange:
		return []Step{kube}, nil
	}
	return nil, nil
}

func sameVersion(a, b string) bool {
	va, err1 := semver.ParseTolerant(a)
	vb, err2 := semver.ParseTolerant(b)
	if err1 != nil || err2 != nil {
		return a == b
	}
	return va.EQ(vb)
}

func minorOf(v string) string {
	sv, err := semver.ParseTolerant(v)
	if err != nil {
		return v
	}
	return fmt.Sprintf("v%d.%d", sv.Major, sv.Minor)
}

// lifecycleSince is the first release whose nodes serve LifecycleService
// (and ImageService): talosctl 1.13 takes the new upgrade path on nodes
// newer than v1.13.0-alpha.2 and the legacy one on older nodes.
var lifecycleSince = semver.MustParse("1.13.0-alpha.3")

// LifecycleUpgrade reports whether a node running Talos version upgrades
// through the LifecycleService API (Talos 1.13 and later: ImageService.Pull
// of the installer, LifecycleService.Upgrade, then a reboot) rather than
// MachineService.Upgrade, which 1.13 deprecates and older nodes only have.
// An unparsable version gets the legacy API, which every release serves.
func LifecycleUpgrade(version string) bool {
	v, err := semver.ParseTolerant(version)
	return err == nil && v.GTE(lifecycleSince)
}
