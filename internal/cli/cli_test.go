package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/image/extensions"
)

// run executes dodai in-process and returns stdout, stderr and the exit code.
func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	code := Run(ctx, args, strings.NewReader(""), &out, &errOut)
	return out.String(), errOut.String(), code
}

func TestHelpListsCommands(t *testing.T) {
	out, _, code := run(t, "help")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, c := range []string{"init", "validate", "config", "image", "schema", "status", "completion"} {
		if !strings.Contains(out, "  "+c+" ") {
			t.Errorf("help lacks %q:\n%s", c, out)
		}
	}
}

func TestInitExampleEndToEnd(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	out, errOut, code := run(t, "init", "--example", dir)
	if code != 0 {
		t.Fatalf("init: %d %s", code, errOut)
	}
	if !strings.Contains(out, "secrets.yaml (mode 0600") {
		t.Fatalf("init output: %s", out)
	}
	sec := filepath.Join(dir, "secrets.yaml")
	before, _ := os.ReadFile(sec)
	st, _ := os.Stat(sec)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("secrets.yaml mode %v", st.Mode().Perm())
	}

	// init again, with every flag: nothing is replaced.
	cfgBefore, _ := os.ReadFile(filepath.Join(dir, "cluster.yaml"))
	out, _, code = run(t, "init", "--example", "--name", "other", "--endpoint", "https://10.1.1.1:6443", dir)
	if code != 0 || !strings.Contains(out, "kept "+sec) || !strings.Contains(out, "kept "+filepath.Join(dir, "cluster.yaml")) {
		t.Fatalf("second init: %d %s", code, out)
	}
	after, _ := os.ReadFile(sec)
	cfgAfter, _ := os.ReadFile(filepath.Join(dir, "cluster.yaml"))
	if !bytes.Equal(before, after) || !bytes.Equal(cfgBefore, cfgAfter) {
		t.Fatal("init replaced an existing file")
	}

	out, _, code = run(t, "-C", dir, "validate")
	if code != 0 || !strings.Contains(out, "is valid") {
		t.Fatalf("validate: %d %s", code, out)
	}

	_, errOut, code = run(t, "-C", dir, "config")
	if code != 0 {
		t.Fatalf("config: %d %s", code, errOut)
	}
	files := map[string][]byte{}
	for _, n := range []string{"cp1", "cp2", "cp3", "worker1", "worker2"} {
		p := filepath.Join(dir, "generated", n+".yaml")
		st, err := os.Stat(p)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", p, err, st)
		}
		files[p], _ = os.ReadFile(p)
	}
	tc := filepath.Join(dir, "talosconfig")
	if st, err := os.Stat(tc); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("talosconfig: %v", err)
	}
	tcBefore, _ := os.ReadFile(tc)

	// Rendering twice gives byte-identical files, and keeps the talosconfig.
	out, _, code = run(t, "-C", dir, "config")
	if code != 0 || !strings.Contains(out, "kept "+tc) {
		t.Fatalf("second config: %d %s", code, out)
	}
	for p, b := range files {
		now, _ := os.ReadFile(p)
		if !bytes.Equal(now, b) {
			t.Errorf("%s changed on re-render", p)
		}
	}
	tcAfter, _ := os.ReadFile(tc)
	if !bytes.Equal(tcBefore, tcAfter) {
		t.Error("talosconfig was regenerated")
	}
	after, _ = os.ReadFile(sec)
	if !bytes.Equal(before, after) {
		t.Fatal("config touched secrets.yaml")
	}

	// One node into another directory.
	other := t.TempDir()
	if _, e, code := run(t, "-C", dir, "config", "--node", "worker2", "--out", other); code != 0 {
		t.Fatalf("config --node: %s", e)
	}
	if entries, _ := os.ReadDir(other); len(entries) != 1 || entries[0].Name() != "worker2.yaml" {
		t.Fatalf("--node wrote %v", entries)
	}
	if _, e, code := run(t, "-C", dir, "config", "--node", "nope"); code == 0 || !strings.Contains(e, `no node "nope"`) {
		t.Fatalf("unknown node: %d %s", code, e)
	}

	out, _, code = run(t, "-C", dir, "image", "schematic", "-o", "json")
	var info struct{ ID, Installer string }
	if code != 0 || json.Unmarshal([]byte(out), &info) != nil || len(info.ID) != 64 {
		t.Fatalf("schematic json: %d %s", code, out)
	}
	out, errOut, code = run(t, "-C", dir, "image", "profile", "--output", "kernel")
	// The example's extensions get the images published with its Talos
	// release: real tags, no warning.
	drbd, _ := extensions.Image(cluster.DefaultTalosVersion, "siderolabs/drbd")
	if code != 0 || !strings.Contains(out, "kind: kernel") || drbd == "" || !strings.Contains(out, "imageRef: "+drbd+"\n") || strings.Contains(errOut, "warning") {
		t.Fatalf("profile: %d %s %s", code, out, errOut)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	dir := t.TempDir()
	if _, e, code := run(t, "init", "--example", dir); code != 0 {
		t.Fatal(e)
	}
	p := filepath.Join(dir, "cluster.yaml")
	b, _ := os.ReadFile(p)
	s := strings.Replace(string(b), `macs: ["52:54:00:20:00:02"]`, `macs: ["zz:11"]`, 1)
	s = strings.Replace(s, "endpoint: https://", "endpoint: http://", 1)
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := run(t, "-C", dir, "validate")
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	for _, want := range []string{
		p + `:12:13: spec.endpoint: "http://192.168.100.10:6443" must use https`,
		`spec.nodes[4].macs[0]: "zz:11" is not a MAC address`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("validate output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errOut, "2 errors in") {
		t.Errorf("stderr: %s", errOut)
	}
	// Other commands refuse the broken file with the same messages.
	if _, e, code := run(t, "-C", dir, "config"); code == 0 || !strings.Contains(e, "is not a MAC address") {
		t.Fatalf("config accepted a broken file: %s", e)
	}
	out, _, _ = run(t, "-C", dir, "validate", "-o", "json")
	var probs []map[string]any
	if err := json.Unmarshal([]byte(out), &probs); err != nil || len(probs) != 2 || probs[0]["severity"] != "error" {
		t.Fatalf("json: %v %s", err, out)
	}
}

func TestConfigWithoutSecrets(t *testing.T) {
	dir := t.TempDir()
	if _, e, code := run(t, "init", "--example", dir); code != 0 {
		t.Fatal(e)
	}
	os.Remove(filepath.Join(dir, "secrets.yaml"))
	_, e, code := run(t, "-C", dir, "config")
	if code == 0 || !strings.Contains(e, "run `dodai init` first") {
		t.Fatalf("got %d %s", code, e)
	}
	if _, err := os.Stat(filepath.Join(dir, "secrets.yaml")); !os.IsNotExist(err) {
		t.Fatal("config must never create secrets")
	}
}

func TestImageBuildWithoutEngine(t *testing.T) {
	dir := t.TempDir()
	if _, e, code := run(t, "init", "--example", dir); code != 0 {
		t.Fatal(e)
	}
	t.Setenv("PATH", t.TempDir())
	_, e, code := run(t, "-C", dir, "image", "build", "--output", "iso")
	if code == 0 || !strings.Contains(e, "no container engine found: install Docker") {
		t.Fatalf("got %d %s", code, e)
	}
}

func TestBadFlags(t *testing.T) {
	cases := [][]string{
		{"-o", "xml", "validate"},
		{"init", "--name", "Bad_Name", t.TempDir()},
		{"init", "--endpoint", "http://x:6443", t.TempDir()},
		{"--log-format", "xml", "validate"},
	}
	for _, args := range cases {
		if _, e, code := run(t, args...); code == 0 || e == "" {
			t.Errorf("%v: exit %d, stderr %q", args, code, e)
		}
	}
}

func TestPlatformRender(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	if _, errOut, code := run(t, "init", "--example", dir); code != 0 {
		t.Fatalf("init: %s", errOut)
	}
	out, errOut, code := run(t, "-C", dir, "platform", "render")
	if code != 0 {
		t.Fatalf("render: %d %s", code, errOut)
	}
	if n := strings.Count(out, "\nkind: HelmRelease\n"); n != 24 {
		t.Errorf("%d HelmReleases, want 24", n)
	}
	gitops := filepath.Join(dir, "gitops")
	out, errOut, code = run(t, "-C", dir, "platform", "render", "--out", gitops)
	if code != 0 || !strings.Contains(out, filepath.Join(gitops, "kustomization.yaml")) {
		t.Fatalf("render --out: %d %s %s", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(gitops, "releases", "cozy-cilium-cilium.yaml")); err != nil {
		t.Error(err)
	}
	// A dependency on a disabled component is reported with its path.
	cfg := filepath.Join(dir, "cluster.yaml")
	b, _ := os.ReadFile(cfg)
	b = append(b, []byte("    components:\n      cert-manager: {enabled: false}\n")...)
	if err := os.WriteFile(cfg, b, 0o644); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = run(t, "-C", dir, "platform", "render")
	if code == 0 || !strings.Contains(errOut, `spec.platform.components.cert-manager-issuers: depends on "cert-manager"`) {
		t.Errorf("disabled dependency: exit %d, %s", code, errOut)
	}
	// dodai validate reports it too, located in the file.
	out, _, code = run(t, "-C", dir, "validate")
	if code == 0 || !strings.Contains(out, `cluster.yaml:`) || !strings.Contains(out, `spec.platform.components.kamaji: depends on "cert-manager"`) {
		t.Errorf("validate: exit %d, %s", code, out)
	}
	b = append(b, []byte("    dropDependents: true\n")...)
	_ = os.WriteFile(cfg, b, 0o644)
	out, errOut, code = run(t, "-C", dir, "platform", "render")
	if code != 0 || strings.Count(out, "\nkind: HelmRelease\n") != 23 {
		t.Errorf("dropDependents: exit %d, %s", code, errOut)
	}
}

func TestStatusUnknownSection(t *testing.T) {
	_, errOut, code := run(t, "status", "no-such-section")
	if code == 0 || !strings.Contains(errOut, `unknown status section "no-such-section" (known: `) || !strings.Contains(errOut, "components") {
		t.Errorf("exit %d: %s", code, errOut)
	}
}
