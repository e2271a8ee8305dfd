package bootstrap

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/siderolabs/crypto/x509"
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"

	"github.com/dodai-dev/dodai/internal/cluster"
)

func TestWarnings(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, cluster.FileName)
	raw := `apiVersion: dodai.dev/v1alpha1
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
`
	if err := os.WriteFile(file, []byte(raw), 0o644); err != nil {
		t.Fatal(err)
	}
	src, err := cluster.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if ws := Warnings(src); len(ws) != 1 || !strings.Contains(ws[0], "spec.nodes[0].patches[0] selects a network interface by name") || !strings.Contains(ws[0], "cluster.yaml:15:") {
		t.Fatalf("warnings: %q", ws)
	}
	tc := clientconfig.NewConfig("lab", []string{"192.168.100.10"}, []byte("ca"), &x509.PEMEncodedCertificateAndKey{Crt: []byte("c"), Key: []byte("k")})
	if err := tc.Save(filepath.Join(dir, cluster.TalosconfigFile)); err != nil {
		t.Fatal(err)
	}
	ws := Warnings(src)
	if len(ws) != 2 || !strings.Contains(ws[0], `talosconfig context "lab" uses the VIP 192.168.100.10 as an endpoint`) {
		t.Fatalf("warnings: %q", ws)
	}
}
