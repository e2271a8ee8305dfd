package clusterdir

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/siderolabs/crypto/x509"
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"

	"github.com/dodai-dev/dodai/internal/cluster"
)

const trapFile = `apiVersion: dodai.dev/v1alpha1
kind: Cluster
metadata: {name: lab}
spec:
  talosVersion: v1.11.5
  endpoint: https://192.168.100.10:6443
  vip: 192.168.100.10
  nodes:
    - name: cp1
      role: controlplane
      macs: ["52:54:00:00:00:01"]
      address: 192.168.100.11/24
      installDisk: {path: /dev/sda}
      patches:
        - machine:
            network:
              interfaces:
                - interface: eth0
                  mtu: 9000
  patches:
    all:
      - machine: {network: {hostname: x}}
      - "@by-name.yaml"
  platform:
    components:
      cert-manager: {enabled: false}
`

// Open reports every kind of problem at once, each located in its file:
// the cluster file's own (a warning), the platform graph's (errors) and the
// talosconfig's (a warning), sorted by file and position.
func TestOpenRunsEveryCheck(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "by-name.yaml"), []byte("machine: {network: {interfaces: [{interface: enp1s0, dhcp: true}]}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	openDir(t, dir, trapFile) // writes cluster.yaml
	tc := clientconfig.NewConfig("lab", []string{"192.168.100.10"}, []byte("ca"), &x509.PEMEncodedCertificateAndKey{Crt: []byte("c"), Key: []byte("k")})
	if err := tc.Save(filepath.Join(dir, cluster.TalosconfigFile)); err != nil {
		t.Fatal(err)
	}
	d, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	file, tcFile := filepath.Join(dir, "cluster.yaml"), filepath.Join(dir, "talosconfig")
	want := []string{
		file + ":15:11: warning: spec.nodes[0].patches[0]: selects a network interface by name",
		file + ":23:9: warning: spec.patches.all[1]: selects a network interface by name",
		file + ":26:7: spec.platform.components.cert-manager-issuers: depends on \"cert-manager\"",
		tcFile + ":5:15: warning: contexts.lab.endpoints[0]: uses the VIP 192.168.100.10 (spec.vip) as an endpoint",
	}
	var got []string
	for _, p := range d.Problems {
		got = append(got, p.String())
	}
	for _, w := range want {
		found := false
		for _, g := range got {
			found = found || strings.HasPrefix(g, w)
		}
		if !found {
			t.Errorf("missing %q in:\n%s", w, strings.Join(got, "\n"))
		}
	}
	if last := d.Problems[len(d.Problems)-1]; last.File != tcFile {
		t.Errorf("problems not sorted by file: last is %v", last)
	}
	var probs cluster.Problems
	if err := d.Err(); !errors.As(err, &probs) || len(probs) == 0 || len(probs.Warnings()) != 0 {
		t.Fatalf("Err() = %v, want the errors only", err)
	}
}

func TestOpenReadErrors(t *testing.T) {
	if _, err := Open(t.TempDir()); err == nil || !strings.Contains(err.Error(), "reading the cluster file") || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing cluster.yaml: %v", err)
	}
	// A file that does not decode is not an I/O error: its problems say why.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, cluster.FileName), []byte("spec: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := Open(dir)
	if err != nil || d.Source != nil || d.Err() == nil || d.Cluster() != nil {
		t.Fatalf("broken YAML: %v %+v", err, d)
	}
}

// WriteClusterFile refuses content with errors and keeps the file's mode.
func TestWriteClusterFile(t *testing.T) {
	dir := t.TempDir()
	d := openDir(t, dir, before)
	if err := os.Chmod(d.ClusterFile(), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := d.WriteClusterFile([]byte("kind: Nope\n")); err == nil {
		t.Fatal("invalid content written")
	}
	if b, _ := os.ReadFile(d.ClusterFile()); string(b) != before {
		t.Fatal("the refused write changed the file")
	}
	body := strings.Replace(before, "bundle: distro", "bundle: hosted", 1)
	if err := d.WriteClusterFile([]byte(body)); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(d.ClusterFile())
	if err != nil || fi.Mode().Perm() != 0o640 || d.Cluster().Spec.Platform.Bundle != "hosted" {
		t.Fatalf("after write: %v %v %s", fi.Mode(), err, d.Cluster().Spec.Platform.Bundle)
	}
}
