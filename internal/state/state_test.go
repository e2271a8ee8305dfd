package state

import (
	"os"
	"path/filepath"
	"testing"
)

// A hand-edited or truncated state file gives a clear error or an empty
// record, never nil entries that its readers would dereference.
func TestReadBootstrapBadInput(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, body string
		wantErr    bool
		nodes      int
	}{
		{name: "missing", nodes: 0},
		{name: "null node", body: `{"nodes":{"cp1":null,"cp2":{"address":"10.0.0.2"}}}`, nodes: 1},
		{name: "null nodes", body: `{"nodes":null}`, nodes: 0},
		{name: "truncated", body: `{"nodes":{"cp1":`, wantErr: true},
		{name: "wrong type", body: `{"nodes":[]}`, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name+".json")
			if tc.body != "" {
				if err := os.WriteFile(p, []byte(tc.body), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			b, err := ReadBootstrap(p)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("no error for %s", tc.body)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(b.Nodes) != tc.nodes {
				t.Fatalf("nodes: %v", b.Nodes)
			}
			for name, n := range b.Nodes {
				if n == nil {
					t.Fatalf("node %s is nil", name)
				}
			}
		})
	}
}

func TestWriteJSONIsPrivateAndReadable(t *testing.T) {
	p := filepath.Join(t.TempDir(), "state", "bootstrap.json")
	in := &Bootstrap{Nodes: map[string]*Node{"cp1": {Address: "10.0.0.1"}}}
	if err := WriteJSON(p, in); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode: %v %v", fi, err)
	}
	out, err := ReadBootstrap(p)
	if err != nil || out.Nodes["cp1"] == nil || out.Nodes["cp1"].Address != "10.0.0.1" {
		t.Fatalf("read back: %+v %v", out, err)
	}
}
