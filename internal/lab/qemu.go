package lab

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// Firmware of a lab machine.
const (
	FirmwareUEFI = "uefi"
	FirmwareBIOS = "bios"
)

// OVMF (Debian ovmf) files for UEFI machines.
const (
	ovmfCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	ovmfVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// VM is what a lab machine's QEMU command line is built from.
type VM struct {
	Name      string
	Dir       string // the machine directory (disk, UEFI variables, serial log)
	Firmware  string
	MAC       string
	Tap       string
	MemoryMiB int
	Accel     string // kvm or tcg
}

// Disk and serial console files in a machine directory.
const (
	diskFile   = "disk.img"
	varsFile   = "efivars.fd"
	serialFile = "serial.log"
	serconFile = "sercon-port" // SeaBIOS serial console port, 0x3f8 little-endian
)

// SerialLog is the path of a machine's serial console (appended across boots).
func SerialLog(dir string) string { return filepath.Join(dir, serialFile) }

// QEMUArgs is the machine's command line for one boot device. The machine
// is a server whose own boot order lists only its disk, as a rack would be
// set up for "network once through the BMC": booting from the disk, the
// NIC has no PXE ROM (BIOS) and OVMF's PXE and HTTP boot are off, so a
// blank disk ends in "no bootable device" and never in a netboot. Booting
// from the network, the NIC comes first (bootindex), then the disk.
func (v VM) QEMUArgs(dev string) []string {
	a := []string{"qemu-system-x86_64", "-name", "dodai-lab-" + v.Name, "-accel", v.Accel, "-m", strconv.Itoa(v.MemoryMiB), "-smp", "1",
		"-display", "none", "-monitor", "none", "-no-user-config",
		"-chardev", "file,id=ser0,path=" + SerialLog(v.Dir) + ",append=on", "-serial", "chardev:ser0",
		"-boot", "strict=on",
		"-netdev", "tap,id=n0,ifname=" + v.Tap + ",script=no,downscript=no",
		"-drive", "file=" + filepath.Join(v.Dir, diskFile) + ",format=raw,if=none,id=d0,cache=unsafe"}
	if v.Firmware == FirmwareUEFI {
		a = append(a, "-machine", "q35",
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+ovmfCode,
			"-drive", "if=pflash,format=raw,unit=1,file="+filepath.Join(v.Dir, varsFile))
	}
	nic := "virtio-net-pci,netdev=n0,mac=" + v.MAC
	switch {
	case dev == BootPXE && v.Firmware == FirmwareUEFI:
		// romfile= drops QEMU's iPXE ROM: OVMF netboots with its own stack.
		a = append(a, "-device", nic+",romfile=,bootindex=1", "-device", "virtio-blk-pci,drive=d0,bootindex=2")
	case dev == BootPXE:
		a = append(a, "-device", nic+",bootindex=1", "-device", "virtio-blk-pci,drive=d0,bootindex=2")
	case v.Firmware == FirmwareUEFI:
		a = append(a, "-device", nic+",romfile=", "-device", "virtio-blk-pci,drive=d0,bootindex=1",
			"-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=n",
			"-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=n")
	default:
		a = append(a, "-device", nic+",romfile=", "-device", "virtio-blk-pci,drive=d0,bootindex=1")
	}
	if v.Firmware == FirmwareBIOS {
		// SeaBIOS writes its messages ("No bootable device") to the serial
		// port only when told which one (QEMU does it for -nographic).
		a = append(a, "-fw_cfg", "name=etc/sercon-port,file="+filepath.Join(v.Dir, serconFile))
	}
	return a
}

// prepareDisk creates the machine's blank sparse disk and, for UEFI, its
// own copy of the OVMF variable store.
func (v VM) prepareDisk(sizeGiB int) error { //nolint:unused // called by the lab's machine setup (dodai lab up), which lands separately
	if err := os.MkdirAll(v.Dir, 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(v.Dir, diskFile), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("creating the disk of %s: %w", v.Name, err)
	}
	defer f.Close()
	if err := f.Truncate(int64(sizeGiB) << 30); err != nil {
		return err
	}
	if v.Firmware == FirmwareBIOS {
		return os.WriteFile(filepath.Join(v.Dir, serconFile), []byte{0xf8, 0x03}, 0o644)
	}
	if v.Firmware == FirmwareUEFI {
		b, err := os.ReadFile(ovmfVars)
		if err != nil {
			return fmt.Errorf("UEFI machines need OVMF (Debian package ovmf): %w", err)
		}
		return os.WriteFile(filepath.Join(v.Dir, varsFile), b, 0o644)
	}
	return nil
}
