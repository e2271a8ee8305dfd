package lab

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// The probe is a small Linux system to netboot when no Talos image is at
// hand: the host's Debian kernel and an initramfs of busybox and the virtio
// network modules. Its /init brings the NIC up with udhcpc, fetches the
// talos.config URL from its command line (the machine config dodai netboot
// serves a known machine) and reports each step on the serial console as
// "PROBE: …" lines. It keeps TCP port 50000 open (accepting, speaking
// nothing), so a wait for "the Talos API port answers" ends as on Talos,
// while anything that speaks the Talos API to it fails. Then it powers off,
// or stays up like an installed machine would.
const probeInit = `#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /usr/bin /usr/sbin /sbin /tmp
/bin/busybox --install -s
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo "PROBE: init started uptime=$(cut -d' ' -f1 /proc/uptime)"
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci failover net_failover virtio_net; do
  [ -f /lib/modules/$m.ko ] && insmod /lib/modules/$m.ko 2>/dev/null
done
CFG=""; for arg in $(cat /proc/cmdline); do case "$arg" in talos.config=*) CFG="${arg#talos.config=}" ;; esac; done
IF=""; i=0
while [ $i -lt 100 ]; do IF=$(ls /sys/class/net | grep -v '^lo$' | head -n1); [ -n "$IF" ] && break; sleep 0.1; i=$((i+1)); done
ip link set lo up; ip link set "$IF" up
if udhcpc -i "$IF" -s /etc/udhcpc.script -q -f -n -t 10 -T 1 >/dev/null 2>&1; then
  echo "PROBE: dhcp ok mac=$(cat /sys/class/net/$IF/address) ip=$(ip -4 -o addr show dev $IF | awk '{print $4}')"
  # The Talos API port, open as on a booted Talos node (accepts, speaks nothing).
  ( while :; do nc -l -p 50000 </dev/null >/dev/null 2>&1 || sleep 1; done ) &
  if [ -n "$CFG" ]; then
    if wget -q -O /tmp/cfg "$CFG"; then echo "PROBE: config fetched: $(grep -m1 -o 'hostname: [a-z0-9-]*' /tmp/cfg)"; else echo "PROBE: config FAILED $CFG"; fi
  else
    echo "PROBE: no talos.config: maintenance mode"
  fi
else
  echo "PROBE: dhcp FAILED"
fi
echo "PROBE: done"
sync
`

const probeUdhcpcScript = `#!/bin/sh
[ "$1" = bound ] && { ip addr add "$ip/${mask:-24}" dev "$interface"; }
exit 0
`

// ProbeOptions shape the probe system.
type ProbeOptions struct {
	// PowerOff ends the probe with a power-off (the QEMU process exits)
	// instead of staying up.
	PowerOff bool
}

// HostKernel is the newest /boot/vmlinuz-* (Debian linux-image-amd64).
func HostKernel() (string, error) {
	ks, _ := filepath.Glob("/boot/vmlinuz-*")
	if len(ks) == 0 {
		return "", fmt.Errorf("no /boot/vmlinuz-*: install the Debian package linux-image-amd64")
	}
	sort.Strings(ks)
	return ks[len(ks)-1], nil
}

// BuildProbe writes the probe as netboot assets: dir/amd64/vmlinuz (the
// host kernel) and dir/amd64/initramfs.xz (a gzip'd cpio; the kernel reads
// either compression, the name is the one iPXE scripts use). It needs
// busybox-static, cpio and gzip.
func BuildProbe(dir string, opt ProbeOptions) (kernel, initramfs string, err error) {
	k, err := HostKernel()
	if err != nil {
		return "", "", err
	}
	ver := strings.TrimPrefix(filepath.Base(k), "vmlinuz-")
	root, err := os.MkdirTemp("", "dodai-probe-")
	if err != nil {
		return "", "", err
	}
	defer os.RemoveAll(root)
	for _, d := range []string{"bin", "etc", "lib/modules"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return "", "", err
		}
	}
	init := probeInit
	if opt.PowerOff {
		init += "poweroff -f\n"
	} else {
		init += "while :; do sleep 3600; done\n"
	}
	files := []struct {
		from, to string
		mode     os.FileMode
		content  string
	}{
		{from: "/bin/busybox", to: "bin/busybox", mode: 0o755},
		{to: "init", mode: 0o755, content: init},
		{to: "etc/udhcpc.script", mode: 0o755, content: probeUdhcpcScript},
	}
	for _, m := range []string{"drivers/virtio/virtio_ring", "drivers/virtio/virtio", "drivers/virtio/virtio_pci_legacy_dev",
		"drivers/virtio/virtio_pci_modern_dev", "drivers/virtio/virtio_pci", "net/core/failover", "drivers/net/net_failover", "drivers/net/virtio_net"} {
		files = append(files, struct {
			from, to string
			mode     os.FileMode
			content  string
		}{from: filepath.Join("/lib/modules", ver, "kernel", m+".ko"), to: filepath.Join("lib/modules", filepath.Base(m)+".ko"), mode: 0o644})
	}
	for _, f := range files {
		dst := filepath.Join(root, f.to)
		if f.from == "" {
			err = os.WriteFile(dst, []byte(f.content), f.mode)
		} else {
			err = copyFile(f.from, dst, f.mode)
		}
		if err != nil {
			if strings.Contains(f.from, "busybox") {
				err = fmt.Errorf("%w (install the Debian package busybox-static)", err)
			}
			return "", "", fmt.Errorf("building the probe initramfs: %w", err)
		}
	}
	out := filepath.Join(dir, "amd64")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", "", err
	}
	kernel, initramfs = filepath.Join(out, "vmlinuz"), filepath.Join(out, "initramfs.xz")
	if err := copyFile(k, kernel, 0o644); err != nil {
		return "", "", err
	}
	c := exec.Command("sh", "-c", "find . | cpio -o -H newc --quiet | gzip -1 > "+shellQuote(initramfs))
	c.Dir = root
	if b, err := c.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("building the probe initramfs (cpio, gzip): %v: %s", err, b)
	}
	return kernel, initramfs, nil
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func copyFile(from, to string, mode os.FileMode) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
