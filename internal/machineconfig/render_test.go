package machineconfig

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/siderolabs/talos/pkg/machinery/config/configloader"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/clusterdir"
	"github.com/dodai-dev/dodai/internal/talos/compat"
	"github.com/dodai-dev/dodai/internal/testutil"
	"github.com/dodai-dev/dodai/test/talosvalidate"
)

// exampleDir writes the built-in example cluster (for dodai's default Talos
// and Kubernetes) with the committed test secrets (so golden files are
// stable) and returns its directory.
func exampleDir(t *testing.T, edit func(string) string) string {
	t.Helper()
	return exampleDirFor(t, cluster.TemplateParams{}, edit)
}

// exampleDirFor is exampleDir with the template's versions set.
func exampleDirFor(t *testing.T, p cluster.TemplateParams, edit func(string) string) string {
	t.Helper()
	dir := t.TempDir()
	p.Name, p.Endpoint = "demo", "https://192.168.100.10:6443"
	body, err := cluster.Template(true, p)
	if err != nil {
		t.Fatal(err)
	}
	s := string(body)
	if edit != nil {
		s = edit(s)
	}
	if err := os.WriteFile(filepath.Join(dir, cluster.FileName), []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	sec, err := os.ReadFile("testdata/secrets.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, cluster.SecretsFile), sec, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func renderer(t *testing.T, dir string) *Renderer {
	t.Helper()
	d, err := clusterdir.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Err(); err != nil {
		t.Fatal(err)
	}
	src := d.Source
	r, err := New(src)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// goldenReleases are the Talos releases with golden configs: the newest
// patch of each minor the module proxy serves, with its default Kubernetes.
var goldenReleases = []cluster.TemplateParams{
	{TalosVersion: "v1.11.6", KubernetesVersion: "v1.34.1"},
	{TalosVersion: "v1.12.7", KubernetesVersion: "v1.35.4"},
	{TalosVersion: compat.DefaultTalosVersion, KubernetesVersion: compat.DefaultKubernetesVersion},
}

var exampleNodes = []string{"cp1", "cp2", "cp3", "worker1", "worker2"}

// TestGoldenConfigs renders the example for each golden release and checks
// that the machinery of that very release accepts every config (its strict
// loader and its metal validator: talosvalidate). In -short mode the older
// releases' validators are used only when hack/deps/talos.sh built them.
func TestGoldenConfigs(t *testing.T) {
	for _, rel := range goldenReleases {
		minor, err := talosvalidate.Minor(rel.TalosVersion)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(minor, func(t *testing.T) {
			external := talosvalidate.Available(rel.TalosVersion)
			if external != nil && !testing.Short() {
				t.Fatal(external)
			}
			r := renderer(t, exampleDirFor(t, rel, nil))
			for _, node := range exampleNodes {
				got, err := r.NodeConfig(node)
				if err != nil {
					t.Fatalf("%s: %v", node, err)
				}
				testutil.Golden(t, filepath.Join("testdata", "golden", minor, node+".yaml"), got)
				// What dodai's machinery loads back.
				cfg, err := configloader.NewFromBytes(got)
				if err != nil {
					t.Fatalf("%s: machinery can't load the rendered config: %v", node, err)
				}
				if h := cfg.NetworkHostnameConfig(); h == nil || h.Hostname() != node {
					t.Errorf("%s: hostname config %v", node, h)
				}
				// What a node of that release loads.
				if external != nil {
					t.Logf("%s: not checked with Talos %s's own machinery: %v", node, minor, external)
					continue
				}
				if err := talosvalidate.Validate(t.Context(), rel.TalosVersion, got); err != nil {
					t.Errorf("%s: Talos %s rejects it: %v", node, rel.TalosVersion, err)
				}
			}
		})
	}
}

// TestOlderReleasesRejectNewerForms proves the per-release check has teeth:
// a config rendered for Talos 1.13 is not one Talos 1.11 accepts (it
// carries documents 1.11 does not know), which is why dodai renders for the
// node's own release.
func TestOlderReleasesRejectNewerForms(t *testing.T) {
	if err := talosvalidate.Available("v1.11.6"); err != nil {
		if testing.Short() {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	r := renderer(t, exampleDir(t, nil))
	b, err := r.NodeConfig("cp1")
	if err != nil {
		t.Fatal(err)
	}
	err = talosvalidate.Validate(t.Context(), "v1.11.6", b)
	if err == nil {
		t.Fatal("Talos 1.11's machinery accepted a config rendered for 1.13")
	}
	t.Logf("as expected: %v", err)
}

func TestNodeSettings(t *testing.T) {
	for _, rel := range goldenReleases {
		t.Run(rel.TalosVersion, func(t *testing.T) {
			r := renderer(t, exampleDirFor(t, rel, nil))
			cp1, err := r.NodeConfig("cp1")
			if err != nil {
				t.Fatal(err)
			}
			w1, err := r.NodeConfig("worker1")
			if err != nil {
				t.Fatal(err)
			}
			cpWant := []string{"type: controlplane", "diskSelector:", "size: '>= 100000000000'",
				"image: factory.talos.dev/metal-installer/", "name: none"}
			// worker1: address on the second NIC chosen by MAC, explicit disk, no VIP.
			wWant := []string{"disk: /dev/nvme0n1", "type: worker"}
			vip := "vip:"
			if minor, _ := compat.TalosMinor(rel.TalosVersion); minor < 12 {
				cpWant = append(cpWant, "- console=ttyS0,115200", `hardwareAddr: "52:54:00:10:00:01"`, "- 192.168.100.11/24",
					"gateway: 192.168.100.1", "ip: 192.168.100.10", "hostname: cp1")
				wWant = append(wWant, `hardwareAddr: "52:54:00:20:00:11"`)
			} else {
				// The kernel arguments are in the factory installer (schematic)
				// and Talos 1.12+ boots with the image's command line.
				cpWant = append(cpWant, "grubUseUKICmdline: true", "kind: HostnameConfig\nhostname: cp1\n",
					"kind: LinkAliasConfig\nname: net0\nselector:\n    match: mac(link.hardware_addr) == \"52:54:00:10:00:01\"\n",
					"kind: LinkConfig\nname: net0\naddresses:\n    - address: 192.168.100.11/24\nroutes:\n    - gateway: 192.168.100.1\n",
					"kind: Layer2VIPConfig\nname: 192.168.100.10\nlink: net0\n")
				wWant = append(wWant, `match: mac(link.hardware_addr) == "52:54:00:20:00:11"`)
				vip = "Layer2VIPConfig"
				for _, legacy := range []string{"interfaces:", "hostname: cp1\n    ", "stableHostname", "extraKernelArgs"} {
					if strings.Contains(string(cp1), legacy) {
						t.Errorf("cp1 config for %s has the legacy %q", rel.TalosVersion, legacy)
					}
				}
			}
			for _, want := range cpWant {
				if !strings.Contains(string(cp1), want) {
					t.Errorf("cp1 config lacks %q", want)
				}
			}
			for _, want := range wWant {
				if !strings.Contains(string(w1), want) {
					t.Errorf("worker1 config lacks %q", want)
				}
			}
			if strings.Contains(string(w1), vip) {
				t.Error("the VIP must not be in a worker config")
			}
			if strings.Contains(string(cp1)+string(w1), "eth0") {
				t.Error("interfaces must be chosen by MAC, not by name")
			}
		})
	}
}

// TestOwnInstallerKeepsKernelArgs: with a user's own installer image
// (which may lack the kernel arguments), a 1.12+ config keeps them and has
// GRUB use them instead of the image's command line.
func TestOwnInstallerKeepsKernelArgs(t *testing.T) {
	dir := exampleDir(t, func(s string) string {
		return strings.Replace(s, "  image:\n", "  image:\n    installer: registry.example.lan/talos/installer:v1.13.9\n", 1)
	})
	b, err := renderer(t, dir).NodeConfig("cp1")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"image: registry.example.lan/talos/installer:v1.13.9", "- console=ttyS0,115200", "grubUseUKICmdline: false"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("cp1 lacks %q", want)
		}
	}
}

// TestJSONPatchOnMultiDocument: machinery applies JSON patches to
// single-document configs only; dodai applies them to the v1alpha1
// document, so a patch written for Talos 1.11 keeps working on 1.13.
func TestJSONPatchOnMultiDocument(t *testing.T) {
	for _, rel := range goldenReleases {
		dir := exampleDirFor(t, rel, func(s string) string {
			return strings.Replace(s, "    worker: []\n", "    worker:\n      - - op: add\n          path: /machine/sysctls\n          value: {vm.max_map_count: \"262144\"}\n", 1)
		})
		b, err := renderer(t, dir).NodeConfig("worker1")
		if err != nil {
			t.Fatalf("%s: %v", rel.TalosVersion, err)
		}
		cfg, err := configloader.NewFromBytes(b)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Machine().Sysctls()["vm.max_map_count"] != "262144" {
			t.Errorf("%s: JSON patch not applied", rel.TalosVersion)
		}
		if h := cfg.NetworkHostnameConfig(); h == nil || h.Hostname() != "worker1" {
			t.Errorf("%s: the patch lost the other documents", rel.TalosVersion)
		}
	}
}

func TestDeterministic(t *testing.T) {
	dir := exampleDir(t, nil)
	a, err := renderer(t, dir).NodeConfig("cp2")
	if err != nil {
		t.Fatal(err)
	}
	b, err := renderer(t, dir).NodeConfig("cp2")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("two renders differ")
	}
}

// TestPatchPrecedence sets the same sysctl at all three levels: the node
// patch wins over the role patch, which wins over the all-nodes patch.
func TestPatchPrecedence(t *testing.T) {
	dir := exampleDir(t, func(s string) string {
		s = strings.Replace(s, "    all:\n", "    all:\n      - machine: {sysctls: {dodai.level: all, dodai.all: \"1\", dodai.role: all}}\n", 1)
		s = strings.Replace(s, "    controlplane:\n", "    controlplane:\n      - machine: {sysctls: {dodai.level: role, dodai.role: role}}\n", 1)
		s = strings.Replace(s, "    - name: cp1\n", "    - name: cp1\n      patches:\n        - machine: {sysctls: {dodai.level: node}}\n", 1)
		return s
	})
	r := renderer(t, dir)
	load := func(node string) map[string]string {
		b, err := r.NodeConfig(node)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := configloader.NewFromBytes(b)
		if err != nil {
			t.Fatal(err)
		}
		return cfg.Machine().Sysctls()
	}
	cp1, cp2, w1 := load("cp1"), load("cp2"), load("worker1")
	check := func(name string, got map[string]string, key, want string) {
		if got[key] != want {
			t.Errorf("%s: %s = %q, want %q", name, key, got[key], want)
		}
	}
	check("cp1", cp1, "dodai.level", "node")
	check("cp1", cp1, "dodai.role", "role")
	check("cp1", cp1, "dodai.all", "1")
	check("cp2", cp2, "dodai.level", "role")
	check("worker1", w1, "dodai.level", "all")
	check("worker1", w1, "dodai.role", "all")
}

func TestJSONPatchAndFilePatch(t *testing.T) {
	dir := exampleDir(t, func(s string) string {
		return strings.Replace(s, "    worker: []\n", "    worker: [\"@worker-patch.yaml\"]\n", 1)
	})
	if err := os.WriteFile(filepath.Join(dir, "worker-patch.yaml"), []byte("- op: add\n  path: /machine/kubelet/extraArgs\n  value: {max-pods: \"250\"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := renderer(t, dir).NodeConfig("worker2")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"max-pods: \"250\"", "dodai.dev/storage: \"true\""} {
		if !strings.Contains(string(b), want) {
			t.Errorf("worker2 lacks %q", want)
		}
	}
}

func TestBadPatchNamesItsPlace(t *testing.T) {
	dir := exampleDir(t, func(s string) string {
		return strings.Replace(s, "    worker: []\n", "    worker:\n      - - op: remove\n          path: /machine/nonexistent\n", 1)
	})
	_, err := renderer(t, dir).NodeConfig("worker1")
	if err == nil || !strings.Contains(err.Error(), "spec.patches.worker[0]: applying patch") || !strings.Contains(err.Error(), "cluster.yaml:") {
		t.Fatalf("want an error naming the patch, got %v", err)
	}
}

func TestInvalidResultRejected(t *testing.T) {
	dir := exampleDir(t, func(s string) string {
		// A patch that makes the config invalid for metal: no install disk.
		return strings.Replace(s, "    worker: []\n", "    worker:\n      - - op: remove\n          path: /machine/install/disk\n", 1)
	})
	_, err := renderer(t, dir).NodeConfig("worker1")
	if err == nil || !strings.Contains(err.Error(), "Talos rejects the config for metal") {
		t.Fatalf("want machinery's validation error, got %v", err)
	}
}

func TestSecretsNeverRegenerated(t *testing.T) {
	dir := t.TempDir()
	created, err := InitSecrets(dir, compat.DefaultTalosVersion)
	if err != nil || !created {
		t.Fatalf("first init: created=%v err=%v", created, err)
	}
	path := filepath.Join(dir, cluster.SecretsFile)
	before, _ := os.ReadFile(path)
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("secrets mode %v", st.Mode().Perm())
	}
	created, err = InitSecrets(dir, compat.DefaultTalosVersion)
	if err != nil || created {
		t.Fatalf("second init: created=%v err=%v", created, err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Fatal("secrets changed")
	}
}

func TestMissingSecrets(t *testing.T) {
	dir := exampleDir(t, nil)
	os.Remove(filepath.Join(dir, cluster.SecretsFile))
	d, err := clusterdir.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Err(); err != nil {
		t.Fatal(err)
	}
	src := d.Source
	if _, err := New(src); err != ErrNoSecrets {
		t.Fatalf("got %v", err)
	}
}

func TestTalosconfig(t *testing.T) {
	r := renderer(t, exampleDir(t, nil))
	tc, err := r.Talosconfig()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := tc.Bytes()
	ctx := tc.Contexts["demo"]
	if got := strings.Join(ctx.Endpoints, ","); got != "192.168.100.11,192.168.100.12,192.168.100.13" {
		t.Fatalf("endpoints %s (must be node IPs, never the VIP)", got)
	}
	if !r.TalosconfigCurrent(b) {
		t.Fatal("a fresh talosconfig should be current")
	}
	other := strings.Replace(string(b), "192.168.100.13", "192.168.100.99", 1)
	if r.TalosconfigCurrent([]byte(other)) {
		t.Fatal("changed endpoints must not be current")
	}
}

func TestTalosVersionContract(t *testing.T) {
	r := renderer(t, exampleDir(t, nil))
	if _, err := r.NodeConfigFor("cp1", NodeOptions{TalosVersion: "v1.10.3"}); err != nil {
		t.Fatalf("v1.10 contract: %v", err)
	}
	if _, err := r.NodeConfigFor("cp1", NodeOptions{TalosVersion: "v1.14.0"}); err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Fatalf("want unsupported error, got %v", err)
	}
	// The node's own release decides the form, not spec.talosVersion.
	old, err := r.NodeConfigFor("cp1", NodeOptions{TalosVersion: "v1.11.6"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(old), "kind: HostnameConfig") || !strings.Contains(string(old), "hostname: cp1") {
		t.Errorf("a 1.11 node gets the v1alpha1 network form:\n%s", old)
	}
	b, err := r.NodeConfigFor("cp1", NodeOptions{InstallDisk: "/dev/sdb"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "disk: /dev/sdb") || strings.Contains(string(b), "diskSelector") {
		t.Fatal("resolved install disk must replace the selector")
	}
}

func TestEnsureTalosconfig(t *testing.T) {
	dir := exampleDir(t, nil)
	r := renderer(t, dir)
	path := filepath.Join(dir, cluster.TalosconfigFile)
	cfg, written, err := r.EnsureTalosconfig(path)
	if err != nil || !written || cfg.Context != "demo" {
		t.Fatalf("first: %v %v %v", cfg, written, err)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode().Perm())
	}
	before, _ := os.ReadFile(path)
	if _, written, err = r.EnsureTalosconfig(path); err != nil || written {
		t.Fatalf("second: written=%v err=%v", written, err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Fatal("a current talosconfig was rewritten")
	}
	if err := os.WriteFile(path, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, written, err = r.EnsureTalosconfig(path); err != nil || !written {
		t.Fatalf("garbage must be replaced: written=%v err=%v", written, err)
	}
}
