package netboot_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dodai-dev/dodai/api/v1alpha1"
	"github.com/dodai-dev/dodai/internal/incluster/incltest"
)

// TestQEMUBootInCluster boots a real UEFI machine (OVMF PXE → TFTP
// snponly.efi → iPXE → HTTP script → kernel, initramfs → its config)
// through `dodai netboot --in-cluster --mode dhcp` over a real
// kube-apiserver, to the point TestQEMUBoot checks for the local server;
// then the cluster holds the machine's DHCPLease and its Machine, written
// by this boot server, with the stage the boot reached.
func TestQEMUBootInCluster(t *testing.T) {
	need(t, "ip", "qemu-system-x86_64", "dnsmasq", "cpio", "gzip", "/usr/share/OVMF/OVMF_CODE_4M.fd")
	kc := incltest.Start(t)
	kernel, initrd := kernelAndInitramfs(t)
	assets := t.TempDir()
	copyFile(t, kernel, filepath.Join(assets, "kernel-amd64"), 0o644)
	copyFile(t, initrd, filepath.Join(assets, "initramfs-amd64.xz"), 0o644)
	mac := fmt.Sprintf("52:54:00:%02x:%02x:%02x", os.Getpid()&0xff, (os.Getpid()>>8)&0xff, 0x40)
	qemuBoot(t, uefi, "dhcp", false, assets, mac, false, kc)
}

// inClusterState checks what an in-cluster boot server left in the
// cluster for the machine mac: its DHCPLease, and its Machine (written
// behind the exchange: waited for) by the server "qemu", at the config
// stage when it fetched its config.
func inClusterState(t *testing.T, kc *incltest.Cluster, mac string, fetched bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var m v1alpha1.Machine
	key := client.ObjectKey{Namespace: incltest.Namespace, Name: v1alpha1.MachineName(mac)}
	want := "kernel"
	if fetched {
		want = "config"
	}
	for {
		err := kc.Client.Get(ctx, key, &m)
		if err == nil && m.Status.Stage == want {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("Machine %s: %v, status %+v; want stage %s", key.Name, err, m.Status, want)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if m.Status.BootServer != "qemu" || m.Status.IP == "" || m.Status.Arch != "amd64" || m.Spec.Node != "node1" {
		t.Errorf("Machine %s: spec %+v status %+v", key.Name, m.Spec, m.Status)
	}
	var leases v1alpha1.DHCPLeaseList
	if err := kc.Client.List(ctx, &leases, client.InNamespace(incltest.Namespace)); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, le := range leases.Items {
		if le.Spec.MAC == mac && le.Spec.Address == m.Status.IP && le.Spec.Server == "qemu" {
			found = true
		}
	}
	if !found {
		t.Errorf("no DHCPLease of %s for %s by qemu among %d", m.Status.IP, mac, len(leases.Items))
	}
	t.Logf("in the cluster: Machine %s stage %s ip %s by %s; DHCPLease %s", key.Name, m.Status.Stage, m.Status.IP, m.Status.BootServer, m.Status.IP)
}
