package netboot_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestStartupErrors: bad inputs stop `dodai netboot` at once with a message
// naming what is wrong and how to fix it.
func TestStartupErrors(t *testing.T) {
	need(t, "ip")
	ns := newNS(t)
	ns.run(t, "ip", "link", "add", "noaddr", "type", "veth", "peer", "name", "noaddr-p")
	ns.run(t, "ip", "link", "add", "withaddr", "type", "veth", "peer", "name", "withaddr-p")
	ns.run(t, "ip", "addr", "add", "10.99.0.1/24", "dev", "withaddr")
	dir := writeCluster(t, "dhcp", nil, testNode{"cp1", "controlplane", "52:54:00:cc:00:01", ""})
	assets := fakeAssets(t, 16)
	noInitrd := t.TempDir()
	write(t, filepath.Join(noInitrd, "kernel-amd64"), "k")
	other := writeCluster(t, "dhcp", nil, testNode{"cp1", "controlplane", "52:54:00:cc:00:01", ""})
	noSecrets := writeCluster(t, "dhcp", nil, testNode{"cp1", "controlplane", "52:54:00:cc:00:01", ""})
	os.Remove(filepath.Join(noSecrets, "secrets.yaml"))
	self, _ := os.Executable()
	// A server runs: a second one for the same cluster directory is refused
	// by its lock, one for another cluster on the same interface finds port
	// 67 taken.
	startDodai(t, ns, filepath.Join(t.TempDir(), "first.log"), "-C", dir, "--interface", "withaddr", "--assets", assets, "--ipxe-dir", "/usr/lib/ipxe")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown interface", []string{"--interface", "nope0"}, `boot interface "nope0" not found`},
		{"no IPv4", []string{"--interface", "noaddr"}, "boot interface noaddr has no IPv4 address"},
		{"no kernel", []string{"--interface", "withaddr", "--assets", t.TempDir()}, "no Talos kernel for amd64"},
		{"no initramfs", []string{"--interface", "withaddr", "--assets", noInitrd}, "no Talos initramfs for amd64"},
		{"no iPXE", []string{"--interface", "withaddr", "--assets", assets, "--ipxe-dir", t.TempDir()}, "install the Debian package ipxe"},
		{"bad mode", []string{"--interface", "withaddr", "--assets", assets, "--mode", "bootp"}, "--mode must be proxy or dhcp"},
		{"bad efi binary", []string{"--interface", "withaddr", "--assets", assets, "--efi-binary", "x.efi"}, "--efi-binary must be"},
		{"no interface", []string{"--assets", assets}, "no boot interface"},
		{"same cluster twice", []string{"--interface", "withaddr", "--assets", assets}, "dodai netboot pid"},
		{"port 67 taken", []string{"-C", other, "--interface", "withaddr", "--assets", assets}, "opening DHCP socket on withaddr port 67"},
		{"no secrets", []string{"-C", noSecrets, "--interface", "withaddr", "--assets", assets}, "run `dodai init` first"},
		// --in-cluster: never beside a local netboot of the same directory;
		// its flags only with it; the local state's flags never with it.
		{"in-cluster beside a local netboot", []string{"--in-cluster", "--interface", "withaddr", "--assets", assets}, "refusing to run in-cluster: dodai netboot pid"},
		{"kubeconfig without in-cluster", []string{"-C", other, "--kubeconfig", "/nonexistent", "--interface", "withaddr", "--assets", assets}, "--kubeconfig needs --in-cluster"},
		{"lease durability in-cluster", []string{"-C", other, "--in-cluster", "--lease-durability", "sync"}, "--lease-durability does not apply with --in-cluster"},
		{"in-cluster without a cluster", []string{"-C", other, "--in-cluster", "--kubeconfig", "/nonexistent", "--interface", "withaddr", "--assets", assets}, "loading Kubernetes client config"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c := ns.cmd(ctx, self, append([]string{"netboot", "-C", dir, "--ipxe-dir", "/usr/lib/ipxe"}, tc.args...)...)
			c.Env = append(os.Environ(), envMain+"=1")
			out, err := c.CombinedOutput()
			if err == nil || c.ProcessState.ExitCode() != 1 {
				t.Fatalf("want exit 1, got %v\n%s", err, out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Fatalf("want %q in:\n%s", tc.want, out)
			}
		})
	}
	// None of the refused servers opened the running one's lease journal
	// (opening folds and removes the journal files it finds).
	if js, _ := filepath.Glob(filepath.Join(dir, "state", "leases.json.journal*")); len(js) != 1 || !strings.HasSuffix(js[0], ".journal.1") {
		t.Errorf("lease journals of the running server after the refused starts: %v, want only journal.1", js)
	}
}
