package extensions

import (
	"fmt"
	"strings"
	"testing"

	"github.com/dodai-dev/dodai/internal/talos/compat"
)

// TestTableCoversSupportedReleases: the table parses, holds the release
// new clusters get and every patch release of every supported minor up to
// the newest listed one, and kernel-module extensions carry the release in
// their tag (they are built against it).
func TestTableCoversSupportedReleases(t *testing.T) {
	if err := Err(); err != nil {
		t.Fatal(err)
	}
	if !Known(compat.DefaultTalosVersion) {
		t.Fatalf("no extensions for the default Talos %s", compat.DefaultTalosVersion)
	}
	for m := compat.MinTalosMinor; m <= compat.MaxTalosMinor; m++ {
		newest := -1
		for _, r := range Releases() {
			var a, b, c int
			if _, err := fmt.Sscanf(r, "v%d.%d.%d", &a, &b, &c); err == nil && b == m && c > newest {
				newest = c
			}
		}
		if newest < 0 {
			t.Errorf("no release of Talos v1.%d", m)
			continue
		}
		for p := 0; p <= newest; p++ {
			if r := fmt.Sprintf("v1.%d.%d", m, p); !Known(r) {
				t.Errorf("release %s missing (v1.%d.%d is listed)", r, m, newest)
			}
		}
	}
	for _, r := range Releases() {
		names := Names(r)
		if len(names) < 40 {
			t.Errorf("%s: only %d extensions", r, len(names))
		}
		for _, n := range []string{"siderolabs/drbd", "siderolabs/zfs"} {
			ref, ok := Image(r, n)
			if !ok || !strings.HasSuffix(ref, "-"+r) {
				t.Errorf("%s: %s image %q (kernel modules are built per release)", r, n, ref)
			}
		}
		for _, n := range names {
			ref, _ := Image(r, n)
			if !strings.HasPrefix(ref, Registry+"/"+strings.TrimPrefix(n, Prefix)+":") || strings.Contains(ref, "{") {
				t.Errorf("%s: bad image %q for %s", r, ref, n)
			}
		}
	}
}

func TestLookups(t *testing.T) {
	for _, tc := range []struct {
		release, name, ref string
	}{
		{"v1.11.5", "siderolabs/drbd", "ghcr.io/siderolabs/drbd:9.2.14-v1.11.5"},
		{"v1.11.5", "siderolabs/amd-ucode", "ghcr.io/siderolabs/amd-ucode:20251021"},
		{"v1.13.9", "siderolabs/zfs", "ghcr.io/siderolabs/zfs:2.4.3-v1.13.9"},
		{"v1.13.9", "siderolabs/intel-ucode", "ghcr.io/siderolabs/intel-ucode:20260812"},
		// Entries of the image-digests list published with Talos v1.11.2.
		{"v1.11.2", "siderolabs/zfs", "ghcr.io/siderolabs/zfs:2.3.3-v1.11.2"},
		{"v1.11.2", "siderolabs/nonfree-kmod-nvidia-production", "ghcr.io/siderolabs/nonfree-kmod-nvidia-production:570.172.08-v1.11.2"},
		{"v1.11.2", "siderolabs/gvisor", "ghcr.io/siderolabs/gvisor:20250707.0"},
		{"v1.11.2", "siderolabs/xen-guest-agent", "ghcr.io/siderolabs/xen-guest-agent:0.4.0-g5c274e6"},
		{"v1.13.9", "drbd", ""},
		{"v1.13.9", "siderolabs/no-such-thing", ""},
		{"v1.13.99", "siderolabs/drbd", ""},
	} {
		ref, ok := Image(tc.release, tc.name)
		if ref != tc.ref || ok != (tc.ref != "") {
			t.Errorf("Image(%s, %s) = %q %v, want %q", tc.release, tc.name, ref, ok, tc.ref)
		}
	}
	// i915-ucode became i915 (and amdgpu-firmware amdgpu) in later releases.
	if !Official("v1.8.0", "siderolabs/i915-ucode") || Official("v1.13.9", "siderolabs/i915-ucode") || !Official("v1.13.9", "siderolabs/i915") {
		t.Error("official extensions are per release")
	}
	if !Official("v1.13.99", "siderolabs/i915-ucode") || Official("v1.13.99", "siderolabs/nope") {
		t.Error("an unknown release falls back to every known release")
	}
}
