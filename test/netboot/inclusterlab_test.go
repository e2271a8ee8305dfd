package netboot_test

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dodai-dev/dodai/internal/incluster/incltest"
)

// What the in-cluster tests share (TestInClusterReplicas, TestInClusterProxyReplicas,
// TestInClusterDHCPBenchmark, TestQEMUBootInCluster): the load generator,
// the /20 cluster directory, the apiserver reached from inside a network
// namespace, and a LAN of boot servers and one client on a bridge.

// buildLoad builds the repository's DHCP load generator
// (hack/bench/netboot-load) into dir and returns its path.
func buildLoad(t *testing.T, dir string) string {
	t.Helper()
	load := filepath.Join(dir, "netboot-load")
	if out, err := exec.Command("go", "build", "-o", load, "github.com/dodai-dev/dodai/hack/bench/netboot-load").CombinedOutput(); err != nil {
		t.Fatalf("building the load generator: %v\n%s", err, out)
	}
	return load
}

// wideCluster writes a dhcp-mode cluster directory named name on
// 10.99.0.0/20, with a range of about 3,900 addresses for the load.
func wideCluster(t *testing.T, name string) string {
	t.Helper()
	dir := writeCluster(t, "dhcp", nil, testNode{"cp1", "controlplane", "52:54:00:aa:00:01", ""})
	write(t, filepath.Join(dir, "cluster.yaml"), fmt.Sprintf(`apiVersion: dodai.dev/v1alpha1
kind: Cluster
metadata:
  name: %s
spec:
  endpoint: https://10.99.0.10:6443
  boot:
    mode: dhcp
    subnet: 10.99.0.0/20
    range: {start: 10.99.0.100, end: 10.99.15.200}
    router: 10.99.0.1
    leaseTime: 1h
  nodes:
    - {name: cp1, role: controlplane, macs: ["52:54:00:aa:00:01"], address: 10.99.0.11/20, installDisk: {path: /dev/vda}}
`, name))
	return dir
}

// apiReach makes kc's apiserver (on the host's loopback) reachable from
// network namespaces: the test serves it on a unix socket in work, and the
// function it returns starts, inside a namespace, a forwarder on the
// apiserver's own loopback address and port, so kc's kubeconfig works
// there unchanged.
func apiReach(t *testing.T, kc *incltest.Cluster, work string) func(ns *netns) {
	t.Helper()
	sock := filepath.Join(work, "api.sock")
	apiHost := strings.TrimPrefix(kc.REST.Host, "https://")
	forwardUnix(t, sock, apiHost)
	n := 0
	return func(ns *netns) {
		t.Helper()
		n++
		fl := filepath.Join(work, fmt.Sprintf("fwd-%d.log", n))
		f := ns.start(t, fl, []string{envProbe + "=fwd"}, selfExe(t), apiHost, sock)
		waitLog(t, fl, "ready", f, 10*time.Second)
	}
}

// lanLab is a bridge (in its own namespace) with boot-server namespaces
// at 10.99.0.1, .2, … /20 and one client namespace, each on eth0.
type lanLab struct {
	lan     *netns // holds the bridge br0
	servers []*netns
	client  *netns
}

// newLANLab builds a lanLab with n servers; reach, if not nil, runs in
// each server namespace (apiReach's forwarder).
func newLANLab(t *testing.T, n int, reach func(*netns)) *lanLab {
	t.Helper()
	lan := newNS(t)
	lan.run(t, "ip", "link", "add", "br0", "type", "bridge", "forward_delay", "0", "stp_state", "0")
	lan.run(t, "ip", "link", "set", "br0", "up")
	attach := func(ns *netns, lanSide string) {
		veth(t, lan, lanSide, ns, "eth0")
		lan.run(t, "ip", "link", "set", lanSide, "master", "br0")
	}
	l := &lanLab{lan: lan}
	for i := range n {
		ns := newNS(t)
		attach(ns, fmt.Sprintf("p%d", i))
		ns.run(t, "ip", "addr", "add", fmt.Sprintf("10.99.0.%d/20", i+1), "dev", "eth0")
		if reach != nil {
			reach(ns)
		}
		l.servers = append(l.servers, ns)
	}
	l.client = newNS(t)
	attach(l.client, "pc")
	return l
}

// join attaches a new namespace to the bridge (bridge port port, eth0
// with MAC mac, no address) and returns it.
func (l *lanLab) join(t *testing.T, port, mac string) *netns {
	t.Helper()
	ns := newNS(t)
	veth(t, l.lan, port, ns, "eth0")
	l.lan.run(t, "ip", "link", "set", port, "master", "br0")
	if mac != "" {
		ns.run(t, "ip", "link", "set", "eth0", "address", mac)
	}
	return ns
}
