// Package ipxe renders the iPXE scripts dodai netboot serves: the
// per-machine boot script (Talos kernel + initramfs with the kernel command
// line), the "boot from local disk" script for installed machines, and the
// fallback that re-chains with the machine's MAC and architecture.
package ipxe

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/dodai-dev/dodai/internal/macaddr"
)

// Params describe one machine's boot.
type Params struct {
	// BaseURL of the HTTP server, e.g. http://10.0.0.1:8080 (no trailing slash).
	BaseURL string
	// MAC is the machine's MAC.
	MAC macaddr.MAC
	// Arch is amd64 or arm64.
	Arch string
	// Config puts talos.config= (the machine's config URL) on the command
	// line; without it Talos boots into maintenance mode and waits for
	// its config over the Talos API (dodai bootstrap).
	Config bool
	// ExtraArgs are appended to the kernel command line (spec.image.extraKernelArgs).
	ExtraArgs []string
}

// Asset names under /assets/<arch>/.
const (
	Kernel    = "vmlinuz"
	Initramfs = "initramfs.xz"
)

// KernelArgs returns the kernel command line for p.
func KernelArgs(p Params) []string {
	args := []string{"talos.platform=metal"}
	switch p.Arch {
	case "arm64":
		args = append(args, "console=tty0", "console=ttyAMA0")
	default:
		args = append(args, "console=tty0", "console=ttyS0")
	}
	args = append(args, "init_on_alloc=1", "slab_nomerge", "pti=on", "printk.devkmsg=on",
		// UEFI: the EFI stub finds the initrd by name.
		"initrd="+Initramfs)
	if p.Config {
		// ${mac} is expanded by iPXE to the booting NIC's MAC (colon form);
		// the server checks it against the requester's address anyway.
		args = append(args, "talos.config="+p.BaseURL+"/config?mac=${mac}")
	}
	return append(args, p.ExtraArgs...)
}

// unsafeArg matches characters that would end or alter an iPXE command.
var unsafeArg = regexp.MustCompile(`[\r\n]`)

// Boot renders the script that boots the Talos kernel and initramfs. It
// fails on arguments that would inject iPXE commands (newlines).
func Boot(p Params) (string, error) {
	if p.Arch != "amd64" && p.Arch != "arm64" {
		return "", fmt.Errorf("unsupported architecture %q (want amd64 or arm64)", p.Arch)
	}
	args := KernelArgs(p)
	for _, a := range args {
		if unsafeArg.MatchString(a) {
			return "", fmt.Errorf("kernel argument %q contains a line break", a)
		}
	}
	assets := p.BaseURL + "/assets/" + p.Arch + "/"
	var b strings.Builder
	b.WriteString("#!ipxe\n")
	mac := url.QueryEscape(p.MAC.String())
	fmt.Fprintf(&b, "# dodai netboot: %s (%s)\n", p.MAC, p.Arch)
	fmt.Fprintf(&b, "kernel %s%s?mac=%s %s\n", assets, Kernel, mac, strings.Join(args, " "))
	fmt.Fprintf(&b, "initrd --name %s %s%s?mac=%s\n", Initramfs, assets, Initramfs, mac)
	b.WriteString("boot\n")
	return b.String(), nil
}

// LocalDisk renders the script for installed machines: leave iPXE so the
// firmware boots the next device (UEFI), or boot the first BIOS disk.
func LocalDisk(mac macaddr.MAC) string {
	return "#!ipxe\n# dodai netboot: " + mac.String() + " is installed: booting from local disk\n" +
		"iseq ${platform} efi && exit 1 ||\n" +
		"sanboot --no-describe --drive 0x80 || exit 1\n"
}

// Rechain renders the script for a request without mac/arch (e.g. a DHCP
// server other than dodai pointed iPXE at /boot.ipxe): ask again with them.
func Rechain(baseURL string) string {
	return "#!ipxe\nchain " + baseURL + "/boot.ipxe?mac=${mac}&arch=${buildarch}\n"
}

// NormalizeArch maps iPXE's ${buildarch} and Go/Debian names to amd64/arm64.
func NormalizeArch(a string) (string, bool) {
	switch strings.ToLower(a) {
	case "", "amd64", "x86_64", "i386", "x86-64":
		return "amd64", true
	case "arm64", "aarch64":
		return "arm64", true
	}
	return "", false
}
