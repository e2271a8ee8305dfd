package cluster

import (
	"bytes"
	"github.com/dodai-dev/dodai/internal/testutil"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func mustValid(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/valid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestValidFileHasNoProblems(t *testing.T) {
	src, probs := Parse("cluster.yaml", mustValid(t))
	if src == nil {
		t.Fatalf("parse: %v", probs)
	}
	if p := Validate(src); len(p) != 0 {
		t.Fatalf("unexpected problems:\n%v", p)
	}
	// defaults applied
	s := src.Cluster.Spec
	if s.TalosVersion != DefaultTalosVersion || s.Image.Arch != "amd64" || s.Platform.Bundle != "full" || s.Network.PodSubnets[0] != DefaultPodSubnet {
		t.Fatalf("defaults not applied: %+v", s)
	}
	if s.KubernetesVersion != DefaultKubernetesVersion {
		t.Fatalf("kubernetesVersion %s, want %s", s.KubernetesVersion, DefaultKubernetesVersion)
	}
}

// TestKubernetesDefaultFollowsTalos: a file that names an older Talos and
// no Kubernetes gets that Talos' default Kubernetes, which it runs (not
// dodai's newest, which it would not).
func TestKubernetesDefaultFollowsTalos(t *testing.T) {
	for talos, kube := range map[string]string{"v1.11.5": "v1.34.1", "v1.12.7": "v1.35.4", "v1.13.9": "v1.36.3"} {
		body := strings.Replace(string(mustValid(t)), "  endpoint:", "  talosVersion: "+talos+"\n  endpoint:", 1)
		src, probs := Parse("cluster.yaml", []byte(body))
		if src == nil {
			t.Fatalf("parse: %v", probs)
		}
		if p := Validate(src); len(p) != 0 {
			t.Fatalf("Talos %s: unexpected problems:\n%v", talos, p)
		}
		if got := src.Cluster.Spec.KubernetesVersion; got != kube {
			t.Errorf("Talos %s: kubernetesVersion %s, want %s", talos, got, kube)
		}
	}
}

// TestBrokenFiles is the table of cluster files users get wrong, each with
// the exact message dodai must print.
func TestBrokenFiles(t *testing.T) {
	valid := string(mustValid(t))
	cases := []struct {
		name    string
		old     string // replaced in valid.yaml
		new     string
		want    string // exact problem line
		warning bool
	}{
		{"bad MAC", `macs: ["52:54:00:00:00:02"]`, `macs: ["zz:11"]`,
			`cluster.yaml:22:14: spec.nodes[1].macs[0]: "zz:11" is not a MAC address`, false},
		{"duplicate MAC", `macs: ["52:54:00:00:00:02"]`, `macs: ["52:54:00:00:00:01"]`,
			`cluster.yaml:22:14: spec.nodes[1].macs[0]: 52:54:00:00:00:01 is used twice (also spec.nodes[0].macs[0])`, false},
		{"duplicate name", `name: w1`, `name: cp1`,
			`cluster.yaml:20:13: spec.nodes[1].name: "cp1" is used twice (also spec.nodes[0])`, false},
		{"duplicate address", `address: 10.0.0.21/24`, `address: 10.0.0.11/24`,
			`cluster.yaml:24:16: spec.nodes[1].address: 10.0.0.11 is used twice (also spec.nodes[0])`, false},
		{"address outside subnet", `address: 10.0.0.21/24`, `address: 10.0.1.21/24`,
			`cluster.yaml:24:16: spec.nodes[1].address: 10.0.1.21 is outside the boot subnet 10.0.0.0/24`, false},
		{"address without prefix", `address: 10.0.0.21/24`, `address: 10.0.0.21`,
			`cluster.yaml:24:16: spec.nodes[1].address: "10.0.0.21" needs a prefix length, e.g. 10.0.0.21/24`, false},
		{"endpoint not https", `endpoint: https://10.0.0.10:6443`, `endpoint: http://10.0.0.10:6443`,
			`cluster.yaml:6:13: spec.endpoint: "http://10.0.0.10:6443" must use https`, false},
		{"VIP in DHCP range", `vip: 10.0.0.10`, `vip: 10.0.0.150`,
			`cluster.yaml:7:8: spec.vip: 10.0.0.150 is inside the DHCP range 10.0.0.100-10.0.0.200: DHCP could hand it to a machine`, false},
		{"no control plane", `role: controlplane`, `role: worker`,
			`cluster.yaml:14:5: spec.nodes: no node has role controlplane; a cluster needs at least one`, false},
		{"even control planes", `role: worker`, `role: controlplane`,
			`cluster.yaml:14:5: warning: spec.nodes: 2 control-plane nodes: an even number tolerates no more failures than 1 and risks etcd split-brain; use an odd number`, true},
		{"unknown extension", `  boot:`, "  image:\n    extensions: [siderolabs/drbd, acme/turbo]\n  boot:",
			`cluster.yaml:9:35: warning: spec.image.extensions[1]: "acme/turbo" is not an official Talos system extension; the Image Factory will reject it`, true},
		{"unknown field", `      gateway: 10.0.0.1`, `      gatway: 10.0.0.1`,
			`cluster.yaml:19:7: spec.nodes[0].gatway: unknown field (did you mean "gateway"?)`, false},
		{"bad role", `role: worker`, `role: master`,
			`cluster.yaml:21:13: spec.nodes[1].role: must be controlplane or worker, got "master"`, false},
		{"wrong type", `macs: ["52:54:00:00:00:02"]`, `macs: "52:54:00:00:00:02"`,
			`cluster.yaml:22:13: spec.nodes[1].macs: expected a list, got "52:54:00:00:00:02"`, false},
		{"gateway outside node subnet", `gateway: 10.0.0.1`, `gateway: 10.9.0.1`,
			`cluster.yaml:19:16: spec.nodes[0].gateway: 10.9.0.1 is outside the node's subnet 10.0.0.0/24`, false},
		{"disk path and selector", `installDisk: {path: /dev/sda}`, `installDisk: {path: /dev/sda, selector: {type: ssd}}`,
			`cluster.yaml:17:20: spec.nodes[0].installDisk: set either path or selector, not both`, false},
		{"disk path not /dev", `installDisk: {path: /dev/sda}`, `installDisk: {path: sda}`,
			`cluster.yaml:17:27: spec.nodes[0].installDisk.path: "sda" must be a device path under /dev/, e.g. /dev/sda`, false},
		{"bad disk size", `size: ">= 10GB"`, `size: "lots"`,
			`cluster.yaml:23:38: spec.nodes[1].installDisk.selector.size: "lots" is not a size like "500GB" or ">= 1TB"`, false},
		{"range outside subnet", `end: 10.0.0.200}`, `end: 10.0.1.200}`,
			`cluster.yaml:11:12: spec.boot.range: 10.0.0.100-10.0.1.200 is not inside the boot subnet 10.0.0.0/24`, false},
		{"bad mode", `mode: dhcp`, `mode: pxe`,
			`cluster.yaml:9:11: spec.boot.mode: must be proxy or dhcp, got "pxe"`, false},
		{"wrong apiVersion", `apiVersion: dodai.dev/v1alpha1`, `apiVersion: v1`,
			`cluster.yaml:1:13: apiVersion: must be "dodai.dev/v1alpha1", got "v1"`, false},
		{"unsupported talos", `  endpoint:`, "  talosVersion: v1.4.0\n  endpoint:",
			`cluster.yaml:6:17: spec.talosVersion: Talos v1.4.0 is not supported: dodai renders configs for Talos v1.8.x to v1.13.x`, false},
		{"talos newer than dodai", `  endpoint:`, "  talosVersion: v1.14.0\n  endpoint:",
			`cluster.yaml:6:17: spec.talosVersion: Talos v1.14.0 is not supported: dodai renders configs for Talos v1.8.x to v1.13.x`, false},
		{"kubernetes too new for talos", `  endpoint:`, "  talosVersion: v1.11.5\n  kubernetesVersion: v1.36.0\n  endpoint:",
			`cluster.yaml:7:22: spec.kubernetesVersion: version of Kubernetes 1.36.0 is too new to be used with Talos 1.11.5 (Talos v1.11 runs Kubernetes v1.29.0 to v1.34.x; Kubernetes v1.36 runs on Talos v1.13)`, false},
		{"kubernetes too old for talos", `  endpoint:`, "  talosVersion: v1.13.9\n  kubernetesVersion: v1.28.3\n  endpoint:",
			`cluster.yaml:7:22: spec.kubernetesVersion: version of Kubernetes 1.28.3 is too old to be used with Talos 1.13.9 (Talos v1.13 runs Kubernetes v1.31.0 to v1.36.x; Kubernetes v1.28 runs on Talos v1.8, v1.9, v1.10)`, false},
		{"kubernetes not a version", `  endpoint:`, "  kubernetesVersion: \"1.35\"\n  endpoint:",
			`cluster.yaml:6:22: spec.kubernetesVersion: "1.35" is not a version like v1.36.3`, false},
		{"YAML syntax", `  nodes:`, "  nodes: [",
			`cluster.yaml:13:1: invalid YAML: did not find expected node content`, false},
		{"interface MAC not node's", `      gateway: 10.0.0.1`, "      gateway: 10.0.0.1\n      interface: {mac: \"52:54:00:aa:bb:cc\"}",
			`cluster.yaml:20:24: warning: spec.nodes[0].interface.mac: 52:54:00:aa:bb:cc is not one of the node's macs`, true},
		{"bad flux version", `  nodes:`, "  platform:\n    flux: {version: latest}\n  nodes:",
			`cluster.yaml:14:21: spec.platform.flux.version: "latest" is not a Flux release like v2.7.3`, false},
		{"extra component in kube-system", `  nodes:`, "  platform:\n    extra: [{name: app, namespace: kube-system, repo: \"https://charts.example\", chart: app, version: 1.0.0}]\n  nodes:",
			`cluster.yaml:14:36: spec.platform.extra[0].namespace: "kube-system" belongs to Kubernetes or Flux: dodai labels a component's namespace for Pod Security and owns its lifetime; use a namespace of its own`, false},
		{"bad patch", `  nodes:`, "  patches:\n    all: [\"no-at-sign\"]\n  nodes:",
			`cluster.yaml:14:11: spec.patches.all[0]: a string patch must name a file as "@path", got "no-at-sign"`, false},
	}
	if len(cases) < 15 {
		t.Fatal("the table must cover at least 15 broken files")
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(valid, tc.old) {
				t.Fatalf("test bug: %q not in valid.yaml", tc.old)
			}
			body := strings.Replace(valid, tc.old, tc.new, 1)
			src, probs := Parse("cluster.yaml", []byte(body))
			if src != nil {
				probs = append(probs, Validate(src)...)
			}
			var got []string
			found := false
			for _, p := range probs {
				got = append(got, p.String())
				if p.String() == tc.want {
					found = true
					if (p.Severity == Warning) != tc.warning {
						t.Errorf("severity of %q: got %v", tc.want, p.Severity)
					}
				}
			}
			if !found {
				t.Fatalf("want problem\n  %s\ngot\n  %s", tc.want, strings.Join(got, "\n  "))
			}
		})
	}
}

func TestEveryProblemReported(t *testing.T) {
	body := strings.NewReplacer(`macs: ["52:54:00:00:00:02"]`, `macs: ["zz"]`, `role: worker`, `role: boss`, `endpoint: https://`, `endpoint: http://`).Replace(string(mustValid(t)))
	src, probs := Parse("cluster.yaml", []byte(body))
	if src == nil {
		t.Fatal(probs)
	}
	probs = Validate(src)
	if n := len(probs.Errors()); n != 3 {
		t.Fatalf("want 3 errors, got %d:\n%v", n, probs)
	}
	// file order
	for i := 1; i < len(probs); i++ {
		if probs[i].Line < probs[i-1].Line {
			t.Fatalf("problems not in file order: %v", probs)
		}
	}
}

func TestUnknownFieldsAtEveryLevel(t *testing.T) {
	body := strings.Replace(string(mustValid(t)), "kind: Cluster", "kind: Cluster\nspecs: {}", 1)
	body = strings.Replace(body, "    mode: dhcp", "    mode: dhcp\n    interfce: eth0", 1)
	_, probs := Parse("cluster.yaml", []byte(body))
	want := []string{
		`cluster.yaml:3:1: specs: unknown field (did you mean "spec"?)`,
		`cluster.yaml:11:5: spec.boot.interfce: unknown field (did you mean "interface"?)`,
	}
	if len(probs) != len(want) {
		t.Fatalf("got %v", probs)
	}
	for i, w := range want {
		if probs[i].String() != w {
			t.Errorf("got %q, want %q", probs[i].String(), w)
		}
	}
}

func TestPatchFileRelativeToClusterDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "p.yaml"), []byte("machine: {sysctls: {a: b}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	body := strings.Replace(string(mustValid(t)), "  nodes:", "  patches:\n    all: [\"@p.yaml\", \"@missing.yaml\"]\n  nodes:", 1)
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	probs := dirErrors(t, dir)
	if len(probs) != 1 || !strings.Contains(probs[0].String(), "spec.patches.all[1]: reading patch file:") {
		t.Fatalf("want one error for the missing patch file, got %v", probs)
	}
}

func TestTemplatesValidate(t *testing.T) {
	for _, example := range []bool{false, true} {
		body, err := Template(example, TemplateParams{Name: "demo", Endpoint: "https://192.168.100.10:6443"})
		if err != nil {
			t.Fatal(err)
		}
		src, probs := Parse("cluster.yaml", body)
		if src == nil {
			t.Fatalf("example=%v: %v", example, probs)
		}
		probs = Validate(src)
		if len(probs.Errors()) > 0 {
			t.Fatalf("example=%v: %v", example, probs)
		}
		if example {
			cp, w := 0, 0
			for _, n := range src.Cluster.Spec.Nodes {
				if n.Role == RoleControlPlane {
					cp++
				} else {
					w++
				}
			}
			if cp != 3 || w != 2 || len(probs) != 0 {
				t.Fatalf("example: %d control planes, %d workers, problems %v", cp, w, probs)
			}
		}
	}
}

func TestSchemaUpToDate(t *testing.T) {
	got, err := GenerateSchema(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"cluster.schema.json", filepath.Join("..", "..", "docs", "cluster.schema.json")} {
		testutil.Golden(t, path, got)
	}
	if !bytes.Equal(JSONSchema(), got) && !*testutil.Update {
		t.Fatal("embedded schema differs (run go test ./internal/cluster -update)")
	}
	for _, field := range []string{`"macs"`, `"installDisk"`, `"extensions"`, `"patches"`, `"bundle"`, `"MACs of the machine's NICs`} {
		if !bytes.Contains(got, []byte(field)) {
			t.Errorf("schema lacks %s", field)
		}
	}
}

func TestParseSizeMatcher(t *testing.T) {
	cases := map[string]struct {
		op string
		n  uint64
	}{
		"500GB": {"==", 500e9}, ">= 1TB": {">=", 1e12}, "<=2TiB": {"<=", 2 << 40}, "< 64 MiB": {"<", 64 << 20},
	}
	for in, want := range cases {
		op, n, err := ParseSizeMatcher(in)
		if err != nil || op != want.op || n != want.n {
			t.Errorf("%q: got %s %d %v, want %s %d", in, op, n, err, want.op, want.n)
		}
	}
	for _, bad := range []string{"", "big", ">=", "10XB", "=> 5GB"} {
		if _, _, err := ParseSizeMatcher(bad); err == nil {
			t.Errorf("%q: want error", bad)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(mustValidF(f))
	f.Add([]byte("apiVersion: x\nkind: [\n"))
	f.Add([]byte("spec: {nodes: [{macs: 3}]}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		src, probs := Parse("cluster.yaml", b)
		if src == nil && len(probs) == 0 {
			t.Fatal("no source and no problem")
		}
		if src != nil {
			_ = Validate(src)
		}
	})
}

func mustValidF(f *testing.F) []byte {
	b, err := os.ReadFile("testdata/valid.yaml")
	if err != nil {
		f.Fatal(err)
	}
	return b
}

func TestUnknownFieldDoesNotHideOtherProblems(t *testing.T) {
	body := strings.Replace(string(mustValid(t)), "  vip: 10.0.0.10", "  vip: 10.0.0.10\n  vpi: 1.2.3.4", 1)
	body = strings.Replace(body, "role: worker", "role: master", 1)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	probs := dirErrors(t, dir)
	if len(probs) != 2 {
		t.Fatalf("want the unknown field and the bad role, got %v", probs)
	}
	if !strings.Contains(probs[0].String(), `spec.vpi: unknown field (did you mean "vip"?)`) || !strings.Contains(probs[1].String(), `spec.nodes[1].role: must be controlplane or worker`) {
		t.Fatalf("got %v", probs)
	}
}

// dirErrors parses and validates DIR/cluster.yaml and returns its errors.
func dirErrors(t *testing.T, dir string) Problems {
	t.Helper()
	file := At(dir).ClusterFile()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	src, probs := Parse(file, raw)
	if src != nil {
		probs = append(probs, Validate(src)...)
	}
	probs.Sort()
	return probs.Errors()
}
