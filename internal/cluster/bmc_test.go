package cluster

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// withBMC puts a bmc line under node cp1 of valid.yaml (at line 20).
func withBMC(t *testing.T, bmc string) *Source {
	t.Helper()
	raw := strings.Replace(string(mustValid(t)), "      gateway: 10.0.0.1\n", "      gateway: 10.0.0.1\n      bmc: "+bmc+"\n", 1)
	src, probs := Parse("cluster.yaml", []byte(raw))
	if src == nil {
		t.Fatalf("parse: %v", probs)
	}
	return src
}

func TestBMCValidation(t *testing.T) {
	cases := []struct {
		bmc  string
		want string // exact problem, "" for none
	}{
		{`{address: 10.0.1.11}`, ""},
		{`{address: bmc-cp1.example.com, protocol: redfish, insecure: true, bootMode: uefi}`, ""},
		{`{address: 10.0.1.11, cipherSuite: 17}`, ""},
		{`{protocol: ipmi}`, `cluster.yaml:20:12: spec.nodes[0].bmc.address: is required (the BMC's IP address or host name)`},
		{`{address: "https://10.0.1.11"}`, `cluster.yaml:20:22: spec.nodes[0].bmc.address: "https://10.0.1.11" is not an IP address or host name (no scheme, port or path: use port for the port)`},
		{`{address: "10.0.1.11:623"}`, `cluster.yaml:20:22: spec.nodes[0].bmc.address: "10.0.1.11:623" is not an IP address or host name (no scheme, port or path: use port for the port)`},
		{`{address: 10.0.1.11, protocol: redfsh}`, `cluster.yaml:20:43: spec.nodes[0].bmc.protocol: must be ipmi or redfish, got "redfsh"`},
		{`{address: 10.0.1.11, port: 70000}`, `cluster.yaml:20:39: spec.nodes[0].bmc.port: 70000 is not a port (1-65535)`},
		{`{address: 10.0.1.11, cipherSuite: 4}`, `cluster.yaml:20:46: spec.nodes[0].bmc.cipherSuite: 4 is not an RMCP+ cipher suite with authentication (1-3, 6-8, 11, 12, 15-17)`},
		{`{address: 10.0.1.11, protocol: redfish, cipherSuite: 3}`, `cluster.yaml:20:65: spec.nodes[0].bmc.cipherSuite: is for protocol ipmi only`},
		{`{address: 10.0.1.11, insecure: true}`, `cluster.yaml:20:43: spec.nodes[0].bmc.insecure: is for protocol redfish only`},
		{`{address: 10.0.1.11, bootMode: efi}`, `cluster.yaml:20:43: spec.nodes[0].bmc.bootMode: must be legacy or uefi, got "efi"`},
		{`{address: 10.0.1.11, password: x}`, `cluster.yaml:20:33: spec.nodes[0].bmc.password: unknown field`},
	}
	for _, c := range cases {
		t.Run(c.bmc, func(t *testing.T) {
			src := withBMC(t, c.bmc)
			_, parseProbs := Parse("cluster.yaml", src.Raw)
			probs := append(parseProbs, Validate(src)...)
			var got []string
			for _, p := range probs {
				if strings.Contains(p.Path, "bmc") {
					got = append(got, p.String())
				}
			}
			if c.want == "" {
				if len(got) != 0 {
					t.Fatalf("unexpected: %q", got)
				}
				return
			}
			if len(got) != 1 || got[0] != c.want {
				t.Fatalf("got %q\nwant %q", got, c.want)
			}
		})
	}
	// defaults
	src := withBMC(t, `{address: 10.0.1.11}`)
	if b := src.Cluster.Spec.Nodes[0].BMC; b.Protocol != "ipmi" || b.Port != 623 {
		t.Fatalf("defaults: %+v", b)
	}
	src = withBMC(t, `{address: 10.0.1.11, protocol: redfish}`)
	if b := src.Cluster.Spec.Nodes[0].BMC; b.Port != 443 {
		t.Fatalf("redfish default port: %+v", b)
	}
}

func TestBMCDuplicate(t *testing.T) {
	raw := strings.Replace(string(mustValid(t)), "      gateway: 10.0.0.1\n", "      gateway: 10.0.0.1\n      bmc: {address: 10.0.1.11}\n", 1)
	raw = strings.Replace(raw, "      address: 10.0.0.21/24\n", "      address: 10.0.0.21/24\n      bmc: {address: 10.0.1.11, port: 623}\n", 1)
	src, _ := Parse("cluster.yaml", []byte(raw))
	probs := Validate(src)
	if len(probs) != 1 || probs[0].String() != `cluster.yaml:26:22: spec.nodes[1].bmc.address: 10.0.1.11 port 623 is also the BMC of spec.nodes[0]` {
		t.Fatalf("%v", probs)
	}
}

func TestBMCCredentials(t *testing.T) {
	raw := strings.Replace(string(mustValid(t)), "      gateway: 10.0.0.1\n", "      gateway: 10.0.0.1\n      bmc: {address: 10.0.1.11}\n", 1)
	raw = strings.Replace(raw, "      address: 10.0.0.21/24\n", "      address: 10.0.0.21/24\n      bmc: {address: 10.0.1.21}\n", 1)
	src, _ := Parse("cluster.yaml", []byte(raw))
	noEnv := func(string) (string, bool) { return "", false }
	env := func(m map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
	}

	// Layering: node env > node file > default env > default file.
	creds, probs := ParseBMCCredentials("bmc-credentials.yaml", []byte("default: {username: admin, password: dflt}\nnodes:\n  w1: {password: w1pass}\n"))
	if len(probs) != 0 {
		t.Fatal(probs)
	}
	got, probs := ResolveBMCCredentials(src, creds, env(map[string]string{"DODAI_BMC_CP1_PASSWORD": "fromenv"}))
	if len(probs) != 0 || got["cp1"] != (BMCCredential{"admin", "fromenv"}) || got["w1"] != (BMCCredential{"admin", "w1pass"}) {
		t.Fatalf("got %v, %v", got, probs)
	}
	got, _ = ResolveBMCCredentials(src, creds, env(map[string]string{"DODAI_BMC_USERNAME": "root"}))
	if got["cp1"] != (BMCCredential{"root", "dflt"}) {
		t.Fatalf("default env over default file: %v", got)
	}
	if s := got["cp1"].String(); strings.Contains(s, "dflt") {
		t.Fatalf("String shows the password: %s", s)
	}

	// Missing: named per node, located at its bmc in cluster.yaml.
	creds, _ = ParseBMCCredentials("bmc-credentials.yaml", []byte("nodes:\n  cp1: {username: a, password: b}\n  cp9: {username: a, password: b}\n"))
	_, probs = ResolveBMCCredentials(src, creds, noEnv)
	want := []string{
		`cluster.yaml:26:12: spec.nodes[1].bmc: no BMC username or password for node "w1": add nodes.w1 (or default) to bmc-credentials.yaml, or set DODAI_BMC_W1_USERNAME and DODAI_BMC_W1_PASSWORD (or DODAI_BMC_USERNAME/DODAI_BMC_PASSWORD)`,
		`bmc-credentials.yaml:3:3: warning: nodes.cp9: there is no node "cp9" in cluster.yaml`,
	}
	if len(probs) != 2 || probs[0].String() != want[0] || probs[1].String() != want[1] {
		t.Fatalf("got\n%v\nwant\n%s", probs, strings.Join(want, "\n"))
	}

	// Bad files.
	bad := []struct{ file, want string }{
		{"default: [admin]\n", `bmc-credentials.yaml:1:10: default: expected a mapping with username and password, got a list`},
		{"default: {username: a, pasword: b}\n", `bmc-credentials.yaml:1:24: default.pasword: unknown field (want username and password)`},
		{"default: {username: a, password: \"\"}\n", `bmc-credentials.yaml:1:34: default.password: is empty`},
		{"nodes: [cp1]\n", `bmc-credentials.yaml:1:8: nodes: expected a mapping of node names, got a list`},
		{"node:\n  cp1: {}\n", `bmc-credentials.yaml:1:1: node: unknown field (want default and nodes)`},
		{"nodes:\n  cp1: {password: [x]}\n", `bmc-credentials.yaml:2:19: nodes.cp1.password: expected a string`},
		{"default: {username: a\n", `bmc-credentials.yaml:1:1: invalid YAML: did not find expected ',' or '}'`},
	}
	for _, b := range bad {
		_, probs := ParseBMCCredentials("bmc-credentials.yaml", []byte(b.file))
		if len(probs) != 1 || probs[0].String() != b.want {
			t.Errorf("%q:\n got %v\nwant %s", b.file, probs, b.want)
		}
	}

	// The file must be 0600.
	dir := t.TempDir()
	p := filepath.Join(dir, BMCCredentialsFile)
	os.WriteFile(p, []byte("default: {username: a, password: b}\n"), 0o644)
	_, probs = LoadBMCCredentials(dir)
	if len(probs) != 1 || !strings.Contains(probs[0].Message, "mode 0644 lets group or others read BMC passwords: chmod 600") {
		t.Fatalf("mode: %v", probs)
	}
	os.Chmod(p, 0o600)
	if c, probs := LoadBMCCredentials(dir); len(probs) != 0 || c.Default == nil {
		t.Fatalf("0600: %v", probs)
	}
	// No file at all: no problem (the environment may hold them).
	if _, probs := LoadBMCCredentials(t.TempDir()); len(probs) != 0 {
		t.Fatal(probs)
	}
}

func FuzzBMCCredentials(f *testing.F) {
	f.Add([]byte("default: {username: admin, password: secret}\nnodes:\n  cp1: {username: a, password: b}\n"))
	f.Add([]byte("nodes: {x: [1]}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, _ := ParseBMCCredentials("f", b)
		if c == nil {
			t.Fatal("nil credentials")
		}
	})
}
