package cli

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// Every command is in the one list, render steps run and status sections
// print in the listed order, whatever order the user names them in.
func TestExplicitWiring(t *testing.T) {
	g := &Globals{}
	var names []string
	for _, c := range commands(g) {
		names = append(names, c.Name())
	}
	for _, want := range []string{"init", "validate", "schema", "config", "image", "render", "netboot", "discover", "bootstrap", "kubeconfig", "platform", "status", "power", "lab", "pivot", "controller", "health", "etcd", "node"} {
		if !slices.Contains(names, want) {
			t.Errorf("command %q missing from commands(): %v", want, names)
		}
	}
	got, err := selectSections(statusSections, []string{"components", "netboot"})
	if err != nil || len(got) != 2 || got[0].Name != "netboot" || got[1].Name != "components" {
		t.Fatalf("selectSections: %v %v", got, err)
	}

	dir := filepath.Join(t.TempDir(), "demo")
	if _, e, code := run(t, "init", "--example", dir); code != 0 {
		t.Fatal(e)
	}
	out, e, code := run(t, "-C", dir, "render")
	if code != 0 {
		t.Fatalf("render: %d %s", code, e)
	}
	var steps []string
	for _, l := range strings.Split(out, "\n") {
		if s, ok := strings.CutPrefix(l, "==> "); ok {
			steps = append(steps, s)
		}
	}
	if strings.Join(steps, ",") != "machine configs,image,netboot plan,platform" {
		t.Fatalf("render steps %v", steps)
	}
}

// Every command that talks to Talos nodes takes --talos-port (and so
// $DODAI_TALOS_PORT through Globals.TalosPort); the others don't offer it.
func TestTalosPortFlag(t *testing.T) {
	talksToNodes := []string{"discover", "bootstrap", "kubeconfig", "status", "controller",
		"health", "etcd status", "etcd snapshot", "etcd restore", "node remove", "node reinstall"}
	var check func(prefix string, cs []*cobra.Command)
	check = func(prefix string, cs []*cobra.Command) {
		for _, c := range cs {
			name := strings.TrimSpace(prefix + " " + c.Name())
			has := c.Flags().Lookup("talos-port") != nil
			if want := slices.Contains(talksToNodes, name); has != want {
				t.Errorf("%s: --talos-port present %v, want %v", name, has, want)
			}
			check(name, c.Commands())
		}
	}
	check("", commands(&Globals{}))
}

// The Talos port: --talos-port, else $DODAI_TALOS_PORT (read here, by the
// command line only), else 50000; nonsense is an error, not a default.
func TestTalosPort(t *testing.T) {
	cases := []struct {
		flag int
		env  string
		want int
		err  string
	}{
		{0, "", 50000, ""},
		{0, "41000", 41000, ""},
		{42000, "41000", 42000, ""},
		{0, "99999", 0, `$DODAI_TALOS_PORT="99999" is not a port`},
		{0, "x", 0, `is not a port`},
		{70000, "", 0, "--talos-port 70000 is not a port"},
	}
	for _, c := range cases {
		t.Setenv(TalosPortEnv, c.env)
		g := &Globals{talosPort: c.flag}
		got, err := g.TalosPort()
		if got != c.want || (c.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("flag %d env %q: %d %v", c.flag, c.env, got, err)
		}
	}
	// Every command that talks to nodes has the flag.
	for _, name := range []string{"discover", "bootstrap", "kubeconfig", "status"} {
		for _, c := range commands(&Globals{}) {
			if c.Name() == name && c.Flags().Lookup("talos-port") == nil {
				t.Errorf("%s has no --talos-port", name)
			}
		}
	}
}

// validate shows every check's findings, including the traps that only
// bootstrap used to log; init does not swallow a cluster file it can't read.
func TestValidateShowsTrapsAndInitReadErrors(t *testing.T) {
	dir := t.TempDir()
	if _, e, code := run(t, "init", "--example", dir); code != 0 {
		t.Fatal(e)
	}
	p := filepath.Join(dir, "cluster.yaml")
	b, _ := os.ReadFile(p)
	s := strings.Replace(string(b), "  patches:\n    all:\n", "  patches:\n    all:\n      - machine: {network: {interfaces: [{interface: eth0, mtu: 9000}]}}\n", 1)
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, code := run(t, "-C", dir, "validate")
	if code != 0 || !strings.Contains(out, p+":") || !strings.Contains(out, "warning: spec.patches.all[0]: selects a network interface by name") || !strings.Contains(out, "is valid (1 warning(s))") {
		t.Fatalf("validate: %d\n%s", code, out)
	}
	// Other commands print the warning too, on stderr.
	if _, e, code := run(t, "-C", dir, "image", "schematic"); code != 0 || !strings.Contains(e, "selects a network interface by name") {
		t.Fatalf("schematic: %d %s", code, e)
	}

	bad := t.TempDir()
	if err := os.Mkdir(filepath.Join(bad, "cluster.yaml"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, e, code := run(t, "init", bad)
	if code == 0 || !strings.Contains(e, "reading the cluster file") {
		t.Fatalf("init with an unreadable cluster.yaml: %d %s", code, e)
	}
	if _, err := os.Stat(filepath.Join(bad, "secrets.yaml")); !os.IsNotExist(err) {
		t.Fatal("init wrote secrets for a cluster file it could not read")
	}
}
