package cluster

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/dodai-dev/dodai/internal/talos/compat"
)

// Talos versions dodai can render machine configs for (see package compat).
const (
	MinTalosMinor = compat.MinTalosMinor
	MaxTalosMinor = compat.MaxTalosMinor
)

// CheckTalosVersion returns an error unless dodai can render configs for
// Talos version v.
func CheckTalosVersion(v string) error {
	return compat.CheckTalos(v)
}

// TalosMinor returns the major and minor number of a version like v1.11.5.
func TalosMinor(v string) (major, minor int, err error) {
	parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
	if len(parts) < 2 {
		return 0, 0, fmt.Errorf("%q is not a version like v1.11.5", v)
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("%q is not a version like v1.11.5", v)
	}
	return major, minor, nil
}

// officialExtensions are the system extensions published by Sidero Labs
// (github.com/siderolabs/extensions) that the Image Factory accepts by name.
var officialExtensions = []string{
	"siderolabs/amazon-ena", "siderolabs/amd-ucode", "siderolabs/amdgpu", "siderolabs/amdgpu-firmware",
	"siderolabs/binfmt-misc", "siderolabs/bnx2-bnx2x", "siderolabs/btrfs", "siderolabs/chelsio-drivers",
	"siderolabs/chelsio-firmware", "siderolabs/cloudflared", "siderolabs/crun", "siderolabs/ctr",
	"siderolabs/drbd", "siderolabs/ecr-credential-provider", "siderolabs/fuse3", "siderolabs/gasket-driver",
	"siderolabs/gvisor", "siderolabs/gvisor-debug", "siderolabs/hailort", "siderolabs/i915",
	"siderolabs/i915-ucode", "siderolabs/intel-ice-firmware", "siderolabs/intel-ucode", "siderolabs/iscsi-tools",
	"siderolabs/kata-containers", "siderolabs/lldpd", "siderolabs/mdadm", "siderolabs/mei",
	"siderolabs/metal-agent", "siderolabs/nebula", "siderolabs/netbird", "siderolabs/nfsd",
	"siderolabs/nonfree-kmod-nvidia-lts", "siderolabs/nonfree-kmod-nvidia-production", "siderolabs/nut-client",
	"siderolabs/nvidia-container-toolkit-lts", "siderolabs/nvidia-container-toolkit-production",
	"siderolabs/nvidia-fabricmanager-lts", "siderolabs/nvidia-fabricmanager-production",
	"siderolabs/nvidia-open-gpu-kernel-modules-lts", "siderolabs/nvidia-open-gpu-kernel-modules-production",
	"siderolabs/qemu-guest-agent", "siderolabs/qlogic-firmware", "siderolabs/realtek-firmware",
	"siderolabs/spin", "siderolabs/stargz-snapshotter", "siderolabs/tailscale", "siderolabs/tenstorrent",
	"siderolabs/thunderbolt", "siderolabs/uinput", "siderolabs/usb-modem-drivers", "siderolabs/util-linux-tools",
	"siderolabs/v4l-uvc-drivers", "siderolabs/vmtoolsd-guest-agent", "siderolabs/wasmedge",
	"siderolabs/xdma-driver", "siderolabs/xe-guest-utilities", "siderolabs/youki", "siderolabs/zfs",
	"siderolabs/zerotier",
}

// KnownExtension reports whether name is an official Talos system extension.
func KnownExtension(name string) bool {
	return slices.Contains(officialExtensions, name)
}

func marshalYAML(v any) ([]byte, error) {
	return yaml.Marshal(v)
}
