package compat

import (
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The default Talos is the machinery module dodai is built with, so the
// configs of new clusters use a contract machinery knows, and its default
// Kubernetes.
func TestDefaultsFollowMachinery(t *testing.T) {
	gomod, err := os.ReadFile("../../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*github\.com/siderolabs/talos/pkg/machinery (v\S+)`).FindSubmatch(gomod)
	if m == nil {
		t.Fatal("go.mod does not require machinery")
	}
	machinery := string(m[1])
	if machinery != DefaultTalosVersion {
		t.Errorf("DefaultTalosVersion %s, machinery module %s: keep them equal", DefaultTalosVersion, machinery)
	}
	if minor, err := TalosMinor(DefaultTalosVersion); err != nil || minor != MaxTalosMinor {
		t.Errorf("default Talos minor %d (%v), want MaxTalosMinor %d", minor, err, MaxTalosMinor)
	}
	if err := CheckKubernetes(DefaultTalosVersion, DefaultKubernetesVersion); err != nil {
		t.Errorf("defaults disagree: %v", err)
	}
	if !strings.HasPrefix(DefaultKubernetesVersion, "v1.36.") {
		t.Errorf("DefaultKubernetesVersion %s, want 1.36.x (machinery v1.13)", DefaultKubernetesVersion)
	}
}

// TestDefaultKubernetesFor: every Talos minor's default Kubernetes is one
// it runs, and a cluster that names only an older Talos gets that Talos'
// Kubernetes, not the newest one.
func TestDefaultKubernetesFor(t *testing.T) {
	for m := MinTalosMinor; m <= MaxTalosMinor; m++ {
		talos := "v1." + strconv.Itoa(m) + ".0"
		k := DefaultKubernetesFor(talos)
		if err := CheckKubernetes(talos, k); err != nil {
			t.Errorf("Talos %s: default Kubernetes %s: %v", talos, k, err)
		}
	}
	for talos, want := range map[string]string{"v1.11.5": "v1.34.1", "v1.12.7": "v1.35.4", "v1.13.9": DefaultKubernetesVersion, "v1.14.0": DefaultKubernetesVersion, "junk": DefaultKubernetesVersion} {
		if got := DefaultKubernetesFor(talos); got != want {
			t.Errorf("DefaultKubernetesFor(%s) = %s, want %s", talos, got, want)
		}
	}
}

func TestMinors(t *testing.T) {
	want := []string{"v1.8", "v1.9", "v1.10", "v1.11", "v1.12", "v1.13"}
	if got := Minors(); !slices.Equal(got, want) {
		t.Errorf("Minors() = %v, want %v", got, want)
	}
	for m := MinTalosMinor; m <= MaxTalosMinor; m++ {
		if _, ok := kubernetesRange[m]; !ok {
			t.Errorf("no Kubernetes range for Talos 1.%d", m)
		}
	}
}

func TestCheckTalos(t *testing.T) {
	for _, tc := range []struct {
		v, err string
	}{
		{"v1.13.9", ""},
		{"v1.11.5", ""},
		{"1.12.0", ""},
		{"v1.8.0", ""},
		{"v1.13.0-beta.1", ""},
		{"v1.7.7", "not supported: dodai renders configs for Talos v1.8.x to v1.13.x"},
		{"v1.14.0", "not supported"},
		{"v2.0.0", "not supported"},
		{"", "not a Talos version"},
		{"latest", "not a Talos version"},
	} {
		err := CheckTalos(tc.v)
		if tc.err == "" && err != nil {
			t.Errorf("%q: %v", tc.v, err)
		}
		if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%q: error %v, want %q", tc.v, err, tc.err)
		}
	}
}

func TestCheckKubernetes(t *testing.T) {
	for _, tc := range []struct {
		talos, kube, err string
	}{
		{"v1.13.9", "v1.36.3", ""},
		{"v1.13.9", "1.31.0", ""},
		{"v1.13.0", "v1.36.50", ""},
		{"v1.13.9", "v1.30.14", "too old to be used with Talos 1.13.9 (Talos v1.13 runs Kubernetes v1.31.0 to v1.36.x; Kubernetes v1.30 runs on Talos v1.8, v1.9, v1.10, v1.11, v1.12)"},
		{"v1.13.9", "v1.37.0", "too new"},
		{"v1.11.5", "v1.34.1", ""},
		{"v1.11.5", "v1.29.0", ""},
		{"v1.11.5", "v1.35.0", "too new to be used with Talos 1.11.5 (Talos v1.11 runs Kubernetes v1.29.0 to v1.34.x; Kubernetes v1.35 runs on Talos v1.12, v1.13)"},
		{"v1.12.7", "v1.35.4", ""},
		{"v1.12.7", "v1.36.0", "too new"},
		{"v1.8.4", "v1.26.0", ""},
		{"v1.7.0", "v1.30.0", "not supported"},
		{"v1.13.9", "one-thirty-six", "not a Kubernetes version"},
	} {
		err := CheckKubernetes(tc.talos, tc.kube)
		if tc.err == "" && err != nil {
			t.Errorf("%s/%s: %v", tc.talos, tc.kube, err)
		}
		if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s/%s: error %v, want %q", tc.talos, tc.kube, err, tc.err)
		}
	}
}

func TestKubernetesRange(t *testing.T) {
	for talos, want := range map[string][2]string{
		"v1.8.4":  {"v1.26.0", "v1.31"},
		"v1.11.5": {"v1.29.0", "v1.34"},
		"v1.12.7": {"v1.30.0", "v1.35"},
		"v1.13.9": {"v1.31.0", "v1.36"},
	} {
		lo, hi, err := KubernetesRange(talos)
		if err != nil || lo != want[0] || hi != want[1] {
			t.Errorf("%s: %s..%s (%v), want %v", talos, lo, hi, err, want)
		}
	}
}

func TestCheckKubernetesUpgrade(t *testing.T) {
	for _, tc := range []struct {
		from, to, err string
	}{
		{"v1.34.1", "v1.35.0", ""},
		{"v1.34.1", "v1.34.5", ""},
		{"v1.34.5", "v1.34.1", ""},
		{"v1.34.1", "v1.34.1", ""},
		{"v1.34.1", "v1.36.3", "Kubernetes v1.34.1 → v1.36.3 skips v1.35: Kubernetes upgrades one minor at a time; upgrade to the newest v1.35.x first"},
		{"v1.31.0", "v1.36.3", "skips v1.32, v1.33, v1.34, v1.35:"},
		{"v1.35.0", "v1.34.9", "downgrade"},
		{"v1.34.1", "v2.0.0", "major"},
		{"v1.34.1", "", "not a Kubernetes version"},
	} {
		err := CheckKubernetesUpgrade(tc.from, tc.to)
		if tc.err == "" && err != nil {
			t.Errorf("%s→%s: %v", tc.from, tc.to, err)
		}
		if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s→%s: error %v, want %q", tc.from, tc.to, err, tc.err)
		}
	}
}

func TestCheckTalosUpgrade(t *testing.T) {
	for _, tc := range []struct {
		from, to, err string
	}{
		{"v1.11.5", "v1.12.7", ""},
		{"v1.11.5", "v1.13.9", ""}, // machinery allows 1.11 → 1.13 directly
		{"v1.12.7", "v1.13.9", ""},
		{"v1.13.9", "v1.13.4", ""},
		{"v1.10.9", "v1.13.9", "too old to upgrade to Talos 1.13.9"},
		{"v1.13.9", "v1.11.5", "too new to downgrade"}, // 1.11 takes hosts below 1.13.0 only
		{"v1.13.9", "v1.10.0", "too new to downgrade"},
		{"v1.11.5", "v1.14.0", "not supported"},
	} {
		err := CheckTalosUpgrade(tc.from, tc.to)
		if tc.err == "" && err != nil {
			t.Errorf("%s→%s: %v", tc.from, tc.to, err)
		}
		if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s→%s: error %v, want %q", tc.from, tc.to, err, tc.err)
		}
	}
}

// TestCheckTalosStep: dodai's Talos rule is machinery's plus no minor
// skipped, with the next step named.
func TestCheckTalosStep(t *testing.T) {
	for _, tc := range []struct {
		from, to, err string
	}{
		{"v1.11.5", "v1.12.7", ""},
		{"v1.12.7", "v1.13.9", ""},
		{"v1.11.5", "v1.11.6", ""},
		{"v1.13.9", "v1.13.4", ""},
		{"v1.12.7", "v1.11.5", ""}, // machinery allows downgrading one minor
		{"v1.11.5", "v1.13.9", "Talos v1.11.5 → v1.13.9 skips v1.12: Talos upgrades are tested between adjacent minor releases only"},
		{"v1.11.5", "v1.13.9", "upgrade to the newest v1.12.x first"},
		{"v1.8.4", "v1.13.9", "skips v1.9, v1.10, v1.11, v1.12:"},
		{"v1.10.9", "v1.12.7", "skips v1.11"},
		{"v1.13.9", "v1.11.5", "too new to downgrade"},
		{"v1.13.9", "v1.14.0", "not supported"},
		{"latest", "v1.13.9", "not a Talos version"},
		{"v1.12.7", "", "not a Talos version"},
	} {
		err := CheckTalosStep(tc.from, tc.to)
		if tc.err == "" && err != nil {
			t.Errorf("%s→%s: %v", tc.from, tc.to, err)
		}
		if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s→%s: error %v, want %q", tc.from, tc.to, err, tc.err)
		}
	}
}

func TestUpgradePath(t *testing.T) {
	v := func(talos, kube string) Versions { return Versions{Talos: talos, Kubernetes: kube} }
	for _, tc := range []struct {
		name      string
		cur, next Versions
		want      []string
		err       string
	}{
		{"nothing", v("v1.11.5", "v1.34.1"), v("v1.11.5", "v1.34.1"), nil, ""},
		{"talos only", v("v1.11.5", "v1.34.1"), v("v1.12.7", "v1.34.1"), []string{"talos v1.11.5 → v1.12.7"}, ""},
		{"kubernetes only", v("v1.12.7", "v1.34.1"), v("v1.12.7", "v1.35.4"), []string{"kubernetes v1.34.1 → v1.35.4"}, ""},
		{"talos first", v("v1.12.7", "v1.35.4"), v("v1.13.9", "v1.36.3"),
			[]string{"talos v1.12.7 → v1.13.9", "kubernetes v1.35.4 → v1.36.3"}, ""},
		{"kubernetes first", v("v1.12.7", "v1.30.5"), v("v1.13.9", "v1.31.0"),
			[]string{"kubernetes v1.30.5 → v1.31.0", "talos v1.12.7 → v1.13.9"}, ""},
		{"talos first, kubernetes then", v("v1.11.5", "v1.34.1"), v("v1.12.7", "v1.35.4"),
			[]string{"talos v1.11.5 → v1.12.7", "kubernetes v1.34.1 → v1.35.4"}, ""},
		{"kubernetes skip", v("v1.12.7", "v1.34.1"), v("v1.13.9", "v1.36.3"), nil, "skips v1.35"},
		{"talos skip", v("v1.11.5", "v1.34.1"), v("v1.13.9", "v1.34.1"), nil, "Talos v1.11.5 → v1.13.9 skips v1.12"},
		{"talos from the minor before", v("v1.10.9", "v1.33.6"), v("v1.11.5", "v1.33.6"), []string{"talos v1.10.9 → v1.11.5"}, ""},
		{"talos minor skip from too old", v("v1.10.9", "v1.33.6"), v("v1.13.9", "v1.33.6"), nil, "skips v1.11, v1.12"},
		{"target inconsistent", v("v1.11.5", "v1.34.1"), v("v1.11.5", "v1.35.0"), nil, "target: version of Kubernetes 1.35.0 is too new"},
		{"both rules", v("v1.9.6", "v1.32.4"), v("v1.13.9", "v1.34.1"), nil, "Talos v1.9.6 → v1.13.9 skips v1.10, v1.11, v1.12"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			steps, err := UpgradePath(tc.cur, tc.next)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				if tc.name == "both rules" && !strings.Contains(err.Error(), "Kubernetes v1.32.4 → v1.34.1 skips v1.33") {
					t.Errorf("every broken rule is named: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range steps {
				got = append(got, s.String())
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("steps %q, want %q", got, tc.want)
			}
		})
	}
}

func TestLifecycleUpgrade(t *testing.T) {
	for v, want := range map[string]bool{
		"v1.13.9": true, "v1.13.0": true, "v1.13.0-beta.1": true, "v1.13.0-alpha.3": true, "v1.14.2": true,
		"v1.13.0-alpha.2": false, "v1.12.7": false, "v1.11.5": false, "v1.8.0": false, "": false, "junk": false,
	} {
		if got := LifecycleUpgrade(v); got != want {
			t.Errorf("LifecycleUpgrade(%q) = %v, want %v", v, got, want)
		}
	}
}
