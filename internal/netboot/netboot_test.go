package netboot

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dodai-dev/dodai/internal/state"
)

func touch(t *testing.T, path string) {
	t.Helper()
	os.MkdirAll(filepath.Dir(path), 0o755)
	if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestFindAssets(t *testing.T) {
	// per-arch directories
	d := t.TempDir()
	touch(t, filepath.Join(d, "amd64", "vmlinuz"))
	touch(t, filepath.Join(d, "amd64", "initramfs.xz"))
	a, err := findAssets(d, "amd64")
	if err != nil || a["amd64"].Kernel != filepath.Join(d, "amd64", "vmlinuz") || len(a) != 1 {
		t.Fatalf("%v %v", a, err)
	}
	// imager output names, both arches
	d = t.TempDir()
	for _, f := range []string{"kernel-amd64", "initramfs-amd64.xz", "kernel-arm64", "initramfs-arm64.xz"} {
		touch(t, filepath.Join(d, f))
	}
	a, err = findAssets(d, "arm64")
	if err != nil || len(a) != 2 || a["arm64"].Initramfs != filepath.Join(d, "initramfs-arm64.xz") {
		t.Fatalf("%v %v", a, err)
	}
	// missing pieces of the required arch are errors; of the other arch not
	d = t.TempDir()
	touch(t, filepath.Join(d, "kernel-amd64"))
	if _, err := findAssets(d, "amd64"); err == nil || !strings.Contains(err.Error(), "no Talos initramfs for amd64") {
		t.Fatalf("missing initramfs: %v", err)
	}
	if _, err := findAssets(d, "arm64"); err == nil || !strings.Contains(err.Error(), "no Talos kernel for arm64") {
		t.Fatalf("missing arm64: %v", err)
	}
	// a directory named like the kernel is not a kernel
	d = t.TempDir()
	os.MkdirAll(filepath.Join(d, "amd64", "vmlinuz"), 0o755)
	touch(t, filepath.Join(d, "amd64", "initramfs.xz"))
	if _, err := findAssets(d, "amd64"); err == nil {
		t.Fatal("directory accepted as kernel")
	}
}

func names(files map[string]string) string {
	var out []string
	for _, f := range []string{"undionly.kpxe", "snponly.efi", "ipxe.efi", "arm64/snp.efi"} {
		if _, ok := files[f]; ok {
			out = append(out, f)
		}
	}
	return strings.Join(out, ",")
}

func TestFindIPXE(t *testing.T) {
	d := t.TempDir()
	touch(t, filepath.Join(d, "undionly.kpxe"))
	touch(t, filepath.Join(d, "ipxe.efi"))
	if _, err := findIPXE(d, "amd64", "snponly.efi"); err == nil || !strings.Contains(err.Error(), "snponly.efi") || !strings.Contains(err.Error(), "apt-get install ipxe") {
		t.Fatalf("missing snponly: %v", err)
	}
	files, err := findIPXE(d, "amd64", "ipxe.efi")
	if err != nil || names(files) != "undionly.kpxe,ipxe.efi" || files["ipxe.efi"] != filepath.Join(d, "ipxe.efi") {
		t.Fatalf("%v %v", files, err)
	}
	if _, err := findIPXE(d, "arm64", "snponly.efi"); err == nil || !strings.Contains(err.Error(), "no arm64 build") {
		t.Fatalf("arm64: %v", err)
	}
	touch(t, filepath.Join(d, "arm64", "snp.efi"))
	if files, err := findIPXE(d, "arm64", "snponly.efi"); err != nil || !strings.Contains(names(files), "arm64/snp.efi") {
		t.Fatalf("arm64 present: %v %v", files, err)
	}
	if _, err := findIPXE(filepath.Join(d, "nope"), "amd64", "snponly.efi"); err == nil || !strings.Contains(err.Error(), "apt-get install ipxe") {
		t.Fatalf("no directory: %v", err)
	}
}

// TestFindIPXESymlinks: Debian's /usr/lib/ipxe/ipxe.efi is an absolute
// symlink to /boot/ipxe.efi. The operator chose that directory, so the
// link is followed and the real file served; a dangling link or a link to
// a directory is an error that says what is wrong and what to do.
func TestFindIPXESymlinks(t *testing.T) {
	outside := t.TempDir()
	touch(t, filepath.Join(outside, "ipxe.efi"))
	d := t.TempDir()
	touch(t, filepath.Join(d, "undionly.kpxe"))
	touch(t, filepath.Join(d, "real-snponly.efi"))
	if err := os.Symlink(filepath.Join(outside, "ipxe.efi"), filepath.Join(d, "ipxe.efi")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real-snponly.efi", filepath.Join(d, "snponly.efi")); err != nil {
		t.Fatal(err)
	}
	files, err := findIPXE(d, "amd64", "ipxe.efi")
	if err != nil || files["ipxe.efi"] != filepath.Join(outside, "ipxe.efi") || files["snponly.efi"] != filepath.Join(d, "real-snponly.efi") {
		t.Fatalf("symlinks not resolved: %v %v", files, err)
	}
	// Dangling: the package's target is gone.
	os.Remove(filepath.Join(outside, "ipxe.efi"))
	_, err = findIPXE(d, "amd64", "ipxe.efi")
	if err == nil || !strings.Contains(err.Error(), "is a symlink to "+filepath.Join(outside, "ipxe.efi")+", which does not exist") || !strings.Contains(err.Error(), "--ipxe-dir") {
		t.Fatalf("dangling link: %v", err)
	}
	// Not needed (snponly.efi chosen): a broken ipxe.efi is no error.
	if files, err := findIPXE(d, "amd64", "snponly.efi"); err != nil || names(files) != "undionly.kpxe,snponly.efi" {
		t.Fatalf("broken unneeded link: %v %v", files, err)
	}
	os.MkdirAll(filepath.Join(outside, "ipxe.efi"), 0o755)
	if _, err := findIPXE(d, "amd64", "ipxe.efi"); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("link to a directory: %v", err)
	}
}

func TestTable(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	out := Table([]state.Machine{
		{MAC: "52:54:00:00:00:11", Node: "cp1", Arch: "amd64", IP: "10.0.0.11", Stage: "kernel", LastSeen: now.Add(-3 * time.Second)},
		{MAC: "52:54:00:00:00:99", Stage: "dhcp", LastSeen: now},
	}, now)
	for _, want := range []string{"MAC", "STAGE", "52:54:00:00:00:11  cp1", "kernel", "#→#→#→.→.→.", "3s ago", "52:54:00:00:00:99  -", "#→.→.→.→.→.", "2 machine(s) seen"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
}
