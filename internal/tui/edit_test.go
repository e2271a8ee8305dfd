package tui

import (
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

func TestApplyAnswers(t *testing.T) {
	src, probs := cluster.Parse("cluster.yaml", []byte(before))
	if src == nil {
		t.Fatal(probs)
	}
	out, err := ApplyAnswers(src, Answers{VIP: "192.168.100.10", Nodes: []NodeAnswers{
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
	if _, err := ApplyAnswers(src, Answers{Nodes: []NodeAnswers{{MAC: "52:54:00:00:00:03", Name: "Bad_Name", Role: "worker", Address: "x"}}}); err == nil {
		t.Fatal("invalid answers accepted")
	}
}

// A machine named like an existing node that has other MACs (the
// placeholder of `dodai init`) takes that node over, MACs included.
func TestApplyAnswersTakesOverPlaceholder(t *testing.T) {
	src, probs := cluster.Parse("cluster.yaml", []byte(before))
	if src == nil {
		t.Fatal(probs)
	}
	out, err := ApplyAnswers(src, Answers{Nodes: []NodeAnswers{{MAC: "52:54:00:00:00:09", Name: "cp1", Role: "controlplane",
		InterfaceMAC: "52:54:00:00:00:09", DiskPath: "/dev/nvme0n1", Address: "192.168.100.11/24"}}})
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	if !strings.Contains(s, "    # the first control plane\n    - name: cp1\n      role: controlplane\n      macs: [\"52:54:00:00:00:09\"]") || strings.Contains(s, "52:54:00:00:00:01") {
		t.Fatalf("got:\n%s", s)
	}
}

// FuzzApplyAnswers: whatever is typed into the screens, the result is
// either an error or a cluster file that loads and validates, still
// carrying the user's comment and the answered node.
func FuzzApplyAnswers(f *testing.F) {
	f.Add("w1", "worker", "192.168.100.31/24", "192.168.100.1", "1.1.1.1", "S1", "/dev/sda", "192.168.100.10")
	f.Add("cp1", "controlplane", "x", "", "", "", "", "")
	f.Add("a: b", "worker", "10.0.0.1/8", "#", "[", "\"", "'", "::1")
	f.Fuzz(func(t *testing.T, name, role, addr, gw, dns, serial, path, vip string) {
		src, probs := cluster.Parse("cluster.yaml", []byte(before))
		if src == nil {
			t.Fatal(probs)
		}
		out, err := ApplyAnswers(src, Answers{VIP: vip, Nodes: []NodeAnswers{{MAC: "52:54:00:00:00:07", Name: name, Role: role,
			InterfaceMAC: "52:54:00:00:00:07", DiskSerial: serial, DiskPath: path, Address: addr, Gateway: gw, DNS: splitList(dns)}}})
		if err != nil {
			return
		}
		check, probs := cluster.Parse("cluster.yaml", out)
		if check == nil || len(append(probs, cluster.Validate(check)...).Errors()) > 0 {
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

func TestApplyAnswersProtectsRealNodes(t *testing.T) {
	src, probs := cluster.Parse("cluster.yaml", []byte(before))
	if src == nil {
		t.Fatal(probs)
	}
	_, err := ApplyAnswers(src, Answers{Protected: map[string]bool{"cp1": true}, Nodes: []NodeAnswers{{MAC: "52:54:00:00:00:09", Name: "cp1",
		Role: "controlplane", DiskPath: "/dev/sda", Address: "192.168.100.12/24"}}})
	if err == nil || !strings.Contains(err.Error(), `node name "cp1" is already used by another machine`) {
		t.Fatalf("got %v", err)
	}
}

func TestApplyAnswersDuplicateNames(t *testing.T) {
	src, _ := cluster.Parse("cluster.yaml", []byte(before))
	_, err := ApplyAnswers(src, Answers{Nodes: []NodeAnswers{
		{MAC: "52:54:00:00:00:08", Name: "w1", Role: "worker", DiskPath: "/dev/sda", Address: "192.168.100.12/24"},
		{MAC: "52:54:00:00:00:09", Name: "w1", Role: "worker", DiskPath: "/dev/sda", Address: "192.168.100.13/24"},
	}})
	if err == nil || !strings.Contains(err.Error(), `both named "w1"`) {
		t.Fatalf("got %v", err)
	}
}
