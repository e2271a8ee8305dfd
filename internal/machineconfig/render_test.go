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
	"github.com/dodai-dev/dodai/internal/testutil"
)

// exampleDir writes the built-in example cluster with the committed test
// secrets (so golden files are stable) and returns its directory.
func exampleDir(t *testing.T, edit func(string) string) string {
	t.Helper()
	dir := t.TempDir()
	body, err := cluster.Template(true, cluster.TemplateParams{Name: "demo", Endpoint: "https://192.168.100.10:6443"})
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

func TestGoldenConfigs(t *testing.T) {
	r := renderer(t, exampleDir(t, nil))
	for _, node := range []string{"cp1", "cp2", "cp3", "worker1", "worker2"} {
		got, err := r.NodeConfig(node)
		if err != nil {
			t.Fatalf("%s: %v", node, err)
		}
		testutil.Golden(t, filepath.Join("testdata", "golden", node+".yaml"), got)
		// What Talos itself loads back.
		cfg, err := configloader.NewFromBytes(got)
		if err != nil {
			t.Fatalf("%s: machinery can't load the rendered config: %v", node, err)
		}
		if cfg.Machine().Network().Hostname() != node {
			t.Errorf("%s: hostname %q", node, cfg.Machine().Network().Hostname())
		}
		if _, err := cfg.Validate(metalMode{}); err != nil {
			t.Errorf("%s: %v", node, err)
		}
	}
}

func TestNodeSettings(t *testing.T) {
	r := renderer(t, exampleDir(t, nil))
	cp1, _ := r.NodeConfig("cp1")
	w1, _ := r.NodeConfig("worker1")
	for _, want := range []string{
		"hardwareAddr: \"52:54:00:10:00:01\"", "- 192.168.100.11/24", "gateway: 192.168.100.1",
		"ip: 192.168.100.10", "type: controlplane", "diskSelector:", "size: '>= 100000000000'",
		"image: factory.talos.dev/metal-installer/", "name: none", "- console=ttyS0,115200",
	} {
		if !strings.Contains(string(cp1), want) {
			t.Errorf("cp1 config lacks %q", want)
		}
	}
	// worker1: address on the second NIC chosen by MAC, explicit disk, no VIP.
	for _, want := range []string{"hardwareAddr: \"52:54:00:20:00:11\"", "disk: /dev/nvme0n1", "type: worker"} {
		if !strings.Contains(string(w1), want) {
			t.Errorf("worker1 config lacks %q", want)
		}
	}
	if strings.Contains(string(w1), "vip:") {
		t.Error("the VIP must not be in a worker config")
	}
	if strings.Contains(string(cp1)+string(w1), "eth0") {
		t.Error("interfaces must be chosen by MAC, not by name")
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
	created, err := InitSecrets(dir, "v1.11.5")
	if err != nil || !created {
		t.Fatalf("first init: created=%v err=%v", created, err)
	}
	path := filepath.Join(dir, cluster.SecretsFile)
	before, _ := os.ReadFile(path)
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("secrets mode %v", st.Mode().Perm())
	}
	created, err = InitSecrets(dir, "v1.11.5")
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
	if _, err := r.NodeConfigFor("cp1", NodeOptions{TalosVersion: "v1.13.0"}); err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Fatalf("want unsupported error, got %v", err)
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
