package ipxe

import (
	"strings"
	"testing"

	"github.com/dodai-dev/dodai/internal/macaddr"
)

func TestBootScript(t *testing.T) {
	tests := []struct {
		name     string
		p        Params
		contains []string
		absent   []string
	}{
		{"known amd64", Params{BaseURL: "http://10.0.0.1:8080", MAC: macaddr.MustParse("52:54:00:12:34:56"), Arch: "amd64", Config: true, ExtraArgs: []string{"net.ifnames=0"}},
			[]string{
				"kernel http://10.0.0.1:8080/assets/amd64/vmlinuz?mac=52%3A54%3A00%3A12%3A34%3A56 talos.platform=metal console=tty0 console=ttyS0 init_on_alloc=1 slab_nomerge pti=on printk.devkmsg=on initrd=initramfs.xz talos.config=http://10.0.0.1:8080/config?mac=${mac} net.ifnames=0\n",
				"initrd --name initramfs.xz http://10.0.0.1:8080/assets/amd64/initramfs.xz?mac=52%3A54%3A00%3A12%3A34%3A56\n",
				"\nboot\n"},
			nil},
		{"no config, arm64 → maintenance", Params{BaseURL: "http://h", MAC: macaddr.MustParse("02:00:00:00:00:01"), Arch: "arm64"},
			[]string{"/assets/arm64/vmlinuz", "console=ttyAMA0", "initrd=initramfs.xz"},
			[]string{"talos.config", "ttyS0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Boot(tt.p)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(s, "#!ipxe\n") {
				t.Errorf("no shebang:\n%s", s)
			}
			for _, c := range tt.contains {
				if !strings.Contains(s, c) {
					t.Errorf("missing %q in\n%s", c, s)
				}
			}
			for _, c := range tt.absent {
				if strings.Contains(s, c) {
					t.Errorf("unexpected %q in\n%s", c, s)
				}
			}
		})
	}
}

func TestBootScriptBadInput(t *testing.T) {
	bad := []Params{
		{BaseURL: "http://h", Arch: "riscv64"},
		{BaseURL: "http://h", Arch: "amd64", ExtraArgs: []string{"a\nshell"}},
		{BaseURL: "http://h", Arch: "amd64", ExtraArgs: []string{"a\r"}},
	}
	for _, p := range bad {
		if s, err := Boot(p); err == nil {
			t.Errorf("%+v rendered:\n%s", p, s)
		}
	}
}

func TestLocalDiskAndRechain(t *testing.T) {
	s := LocalDisk(macaddr.MustParse("52:54:00:12:34:56"))
	if !strings.Contains(s, "exit 1") || !strings.Contains(s, "sanboot --no-describe --drive 0x80") || strings.Contains(s, "kernel") {
		t.Fatalf("local disk script:\n%s", s)
	}
	if r := Rechain("http://h:1"); r != "#!ipxe\nchain http://h:1/boot.ipxe?mac=${mac}&arch=${buildarch}\n" {
		t.Fatalf("rechain %q", r)
	}
}

func TestNormalizeArch(t *testing.T) {
	for in, want := range map[string]string{"x86_64": "amd64", "i386": "amd64", "": "amd64", "arm64": "arm64", "AARCH64": "arm64", "riscv64": ""} {
		got, ok := NormalizeArch(in)
		if got != want || ok != (want != "") {
			t.Errorf("%q → %q %v", in, got, ok)
		}
	}
}

func FuzzBoot(f *testing.F) {
	f.Add("52:54:00:12:34:56", "x86_64", "quiet")
	f.Add("\n", "arm64", "a\nb")
	f.Fuzz(func(t *testing.T, macText, arch, extra string) {
		a, ok := NormalizeArch(arch)
		if !ok {
			return
		}
		mac, err := macaddr.Parse(macText) // as the HTTP handler decodes it
		if err != nil {
			return
		}
		s, err := Boot(Params{BaseURL: "http://h", MAC: mac, Arch: a, Config: true, ExtraArgs: []string{extra}})
		if err != nil {
			return
		}
		// Exactly the four commands, whatever the input.
		lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
		if len(lines) != 5 || lines[4] != "boot" || !strings.HasPrefix(lines[2], "kernel ") || !strings.HasPrefix(lines[3], "initrd ") {
			t.Fatalf("script structure broken:\n%s", s)
		}
	})
}
