package clusterdir

import (
	"os"
	"strings"
	"testing"

	"github.com/dodai-dev/dodai/internal/cluster"
)

const before = `# my cluster — keep this comment
apiVersion: dodai.dev/v1alpha1
kind: Cluster
metadata:
  name: lab # the lab
spec:
  talosVersion: v1.11.5
  endpoint: https://192.168.100.11:6443
  nodes:
    # the first control plane
    - name: cp1
      role: controlplane
      macs: ["52:54:00:00:00:01"]
      address: 192.168.100.11/24
      installDisk:
        path: /dev/sda
  platform:
    bundle: distro # keep
`

func TestApply(t *testing.T) {
	d := openDir(t, t.TempDir(), before)
	out, err := d.Apply(Edit{VIP: "192.168.100.10", Nodes: []NodeEdit{
		{MAC: "52:54:00:00:00:01", Name: "cp1", Role: "controlplane", InterfaceMAC: "52:54:00:00:00:01", DiskSerial: "S1", DiskPath: "/dev/nvme0n1",
			Address: "192.168.100.21/24", Gateway: "192.168.100.1", DNS: []string{"1.1.1.1", "9.9.9.9"}},
		{MAC: "52:54:00:00:00:02", Name: "w1", Role: "worker", InterfaceMAC: "52:54:00:00:00:12", DiskPath: "/dev/sda",
			Address: "192.168.100.31/24"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	for _, want := range []string{
		"# my cluster — keep this comment", "name: lab # the lab", "# the first control plane", "bundle: distro # keep",
		"vip: 192.168.100.10",
		"address: 192.168.100.21/24", "gateway: 192.168.100.1", "nameservers: [1.1.1.1, 9.9.9.9]",
		"selector:\n          serial: S1",
		"- name: w1\n      role: worker\n      macs: [\"52:54:00:00:00:02\"]",
		"interface:\n        mac: \"52:54:00:00:00:12\"",
		"path: /dev/sda",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("missing %q in:\n%s", want, s)
		}
	}
	if strings.Count(s, "name: cp1") != 1 {
		t.Errorf("cp1 duplicated:\n%s", s)
	}
	// Bad answers never produce a file.
	if _, err := d.Apply(Edit{Nodes: []NodeEdit{{MAC: "52:54:00:00:00:03", Name: "Bad_Name", Role: "worker", Address: "x"}}}); err == nil {
		t.Fatal("invalid answers accepted")
	}
}

// A machine named like an existing node that has other MACs (the
// placeholder of `dodai init`) takes that node over, MACs included.
func TestApplyTakesOverPlaceholder(t *testing.T) {
	d := openDir(t, t.TempDir(), before)
	out, err := d.Apply(Edit{Nodes: []NodeEdit{{MAC: "52:54:00:00:00:09", Name: "cp1", Role: "controlplane",
		InterfaceMAC: "52:54:00:00:00:09", DiskPath: "/dev/nvme0n1", Address: "192.168.100.11/24"}}})
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	if !strings.Contains(s, "    # the first control plane\n    - name: cp1\n      role: controlplane\n      macs: [\"52:54:00:00:00:09\"]") || strings.Contains(s, "52:54:00:00:00:01") {
		t.Fatalf("got:\n%s", s)
	}
}

// FuzzApply: whatever is typed into the screens, the result is
// either an error or a cluster file that loads and validates, still
// carrying the user's comment and the answered node.
func FuzzApply(f *testing.F) {
	f.Add("w1", "worker", "192.168.100.31/24", "192.168.100.1", "1.1.1.1", "S1", "/dev/sda", "192.168.100.10")
	f.Add("cp1", "controlplane", "x", "", "", "", "", "")
	f.Add("a: b", "worker", "10.0.0.1/8", "#", "[", "\"", "'", "::1")
	d := openDir(f, f.TempDir(), before)
	f.Fuzz(func(t *testing.T, name, role, addr, gw, dns, serial, path, vip string) {
		out, err := d.Apply(Edit{VIP: vip, Nodes: []NodeEdit{{MAC: "52:54:00:00:00:07", Name: name, Role: role,
			InterfaceMAC: "52:54:00:00:00:07", DiskSerial: serial, DiskPath: path, Address: addr, Gateway: gw, DNS: strings.FieldsFunc(dns, func(r rune) bool { return r == ',' || r == ' ' })}}})
		if err != nil {
			return
		}
		check, probs := d.Check(out)
		if check == nil || len(probs.Errors()) > 0 {
			t.Fatalf("accepted an invalid file: %v\n%s", probs, out)
		}
		if !strings.Contains(string(out), "# my cluster — keep this comment") {
			t.Fatalf("comment lost:\n%s", out)
		}
		found := false
		for _, n := range check.Cluster.Spec.Nodes {
			if n.Name == name && n.Address == addr {
				found = true
			}
		}
		if !found {
			t.Fatalf("answered node %q missing:\n%s", name, out)
		}
	})
}

func TestApplyProtectsRealNodes(t *testing.T) {
	d := openDir(t, t.TempDir(), before)
	_, err := d.Apply(Edit{Protected: map[string]bool{"cp1": true}, Nodes: []NodeEdit{{MAC: "52:54:00:00:00:09", Name: "cp1",
		Role: "controlplane", DiskPath: "/dev/sda", Address: "192.168.100.12/24"}}})
	if err == nil || !strings.Contains(err.Error(), `node name "cp1" is already used by another machine`) {
		t.Fatalf("got %v", err)
	}
}

func TestApplyDuplicateNames(t *testing.T) {
	d := openDir(t, t.TempDir(), before)
	_, err := d.Apply(Edit{Nodes: []NodeEdit{
		{MAC: "52:54:00:00:00:08", Name: "w1", Role: "worker", DiskPath: "/dev/sda", Address: "192.168.100.12/24"},
		{MAC: "52:54:00:00:00:09", Name: "w1", Role: "worker", DiskPath: "/dev/sda", Address: "192.168.100.13/24"},
	}})
	if err == nil || !strings.Contains(err.Error(), `both named "w1"`) {
		t.Fatalf("got %v", err)
	}
}

// openDir writes a cluster file into dir and opens it.
func openDir(t testing.TB, dir, body string) *Dir {
	t.Helper()
	if err := os.WriteFile(cluster.At(dir).ClusterFile(), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if d.Source == nil {
		t.Fatal(d.Problems)
	}
	return d
}
