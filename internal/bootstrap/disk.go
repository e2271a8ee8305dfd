package bootstrap

import (
	"fmt"
	"path"
	"strings"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/state"
	"github.com/dodai-dev/dodai/internal/talos"
)

// sizeTolerance is how far a disk may be from an exact size selector
// ("500GB" matches a 512 GB disk: vendors' sizes are never round).
const sizeTolerance = 0.05

// UnsafeReason says why a disk must never be an install disk (CD-ROM,
// read-only, USB: likely the boot stick), or "" when it may be.
func UnsafeReason(d talos.Disk) string {
	switch {
	case d.CDROM:
		return "it is a CD-ROM"
	case d.Readonly:
		return "it is read-only"
	case strings.EqualFold(d.Transport, "usb"):
		return "it is a USB disk (likely the boot stick)"
	}
	return ""
}

func describeDisk(d talos.Disk) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s", d.DevPath, d.PrettySize)
	if d.Model != "" {
		fmt.Fprintf(&b, ", model %q", d.Model)
	}
	if d.Serial != "" {
		fmt.Fprintf(&b, ", serial %s", d.Serial)
	}
	if d.Transport != "" {
		fmt.Fprintf(&b, ", %s", d.Transport)
	}
	b.WriteString(")")
	return b.String()
}

func describeDisks(ds []talos.Disk) string {
	if len(ds) == 0 {
		return "none"
	}
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = describeDisk(d)
	}
	return strings.Join(parts, "; ")
}

// diskType classifies a disk like Talos' selector types.
func diskType(d talos.Disk) string {
	switch {
	case strings.EqualFold(d.Transport, "nvme") || strings.HasPrefix(d.Name, "nvme"):
		return "nvme"
	case strings.EqualFold(d.Transport, "mmc") || strings.HasPrefix(d.Name, "mmcblk"):
		return "sd"
	case d.Rotational:
		return "hdd"
	default:
		return "ssd"
	}
}

func matchSelector(d talos.Disk, s *cluster.DiskSelector) (bool, error) {
	if s == nil {
		return true, nil
	}
	if s.Size != "" {
		op, n, err := cluster.ParseSizeMatcher(s.Size)
		if err != nil {
			return false, err
		}
		size := float64(d.Size)
		want := float64(n)
		ok := false
		switch op {
		case ">=":
			ok = d.Size >= n
		case "<=":
			ok = d.Size <= n
		case ">":
			ok = d.Size > n
		case "<":
			ok = d.Size < n
		default:
			ok = size >= want*(1-sizeTolerance) && size <= want*(1+sizeTolerance)
		}
		if !ok {
			return false, nil
		}
	}
	if s.Model != "" {
		if ok, err := path.Match(s.Model, d.Model); err != nil {
			return false, fmt.Errorf("model pattern %q: %w", s.Model, err)
		} else if !ok {
			return false, nil
		}
	}
	if s.Serial != "" && s.Serial != d.Serial {
		return false, nil
	}
	if s.WWID != "" && s.WWID != d.WWID {
		return false, nil
	}
	if s.Type != "" && s.Type != diskType(d) {
		return false, nil
	}
	if s.BusPath != "" {
		if ok, _ := path.Match(s.BusPath, d.BusPath); !ok && !strings.HasPrefix(d.BusPath, s.BusPath) {
			return false, nil
		}
	}
	return true, nil
}

// ResolveDisk picks the node's install disk among the disks the machine
// reports: an explicit path must exist; a selector must match exactly one
// disk. A USB, read-only or CD-ROM disk is always refused. Errors name the
// node and list what was found.
func ResolveDisk(node *cluster.Node, disks []talos.Disk) (talos.Disk, error) {
	spec := node.InstallDisk
	if spec.Path != "" {
		for _, d := range disks {
			if d.DevPath == spec.Path || "/dev/"+d.Name == spec.Path {
				if r := UnsafeReason(d); r != "" {
					return talos.Disk{}, fmt.Errorf("node %s: install disk %s is refused: %s", node.Name, spec.Path, r)
				}
				return d, nil
			}
		}
		return talos.Disk{}, fmt.Errorf("node %s: install disk %s does not exist on the machine; its disks: %s", node.Name, spec.Path, describeDisks(disks))
	}
	var matched []talos.Disk
	for _, d := range disks {
		ok, err := matchSelector(d, spec.Selector)
		if err != nil {
			return talos.Disk{}, fmt.Errorf("node %s: installDisk.selector: %w", node.Name, err)
		}
		if ok {
			matched = append(matched, d)
		}
	}
	what := "installDisk.selector"
	if spec.Selector == nil {
		what = "no installDisk set, so every disk"
		// Without a selector, unsafe disks are simply not candidates.
		var safe []talos.Disk
		for _, d := range matched {
			if UnsafeReason(d) == "" {
				safe = append(safe, d)
			}
		}
		matched = safe
	}
	switch len(matched) {
	case 0:
		return talos.Disk{}, fmt.Errorf("node %s: %s matches no disk; its disks: %s", node.Name, what, describeDisks(disks))
	case 1:
		if r := UnsafeReason(matched[0]); r != "" {
			return talos.Disk{}, fmt.Errorf("node %s: %s matches only %s, which is refused: %s", node.Name, what, describeDisk(matched[0]), r)
		}
		return matched[0], nil
	default:
		return talos.Disk{}, fmt.Errorf("node %s: %s matches %d disks, refusing to guess: %s; narrow it (e.g. by serial or wwid) or set installDisk.path",
			node.Name, what, len(matched), describeDisks(matched))
	}
}

func recordOf(d talos.Disk) *state.Disk {
	return &state.Disk{DevPath: d.DevPath, Serial: d.Serial, WWID: d.WWID, Model: d.Model, Size: d.Size}
}

// sameDisk compares by identity (serial/wwid) when known, else by path and size.
func sameDisk(r *state.Disk, d talos.Disk) bool {
	if r.WWID != "" || d.WWID != "" {
		return r.WWID == d.WWID && r.Serial == d.Serial
	}
	if r.Serial != "" || d.Serial != "" {
		return r.Serial == d.Serial
	}
	return r.DevPath == d.DevPath && r.Size == d.Size
}

// CheckConfirmed refuses a disk that differs from the one confirmed earlier.
func CheckConfirmed(node string, confirmed *state.Disk, d talos.Disk) error {
	if confirmed == nil || sameDisk(confirmed, d) {
		return nil
	}
	return fmt.Errorf("node %s: install disk now resolves to %s, but %s (serial %q, wwid %q) was confirmed before; refusing to install to a different disk (if the hardware changed on purpose, delete nodes.%s.disk from state/bootstrap.json)",
		node, describeDisk(d), confirmed.DevPath, confirmed.Serial, confirmed.WWID, node)
}
