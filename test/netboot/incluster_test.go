package netboot_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dodai-dev/dodai/api/v1alpha1"
	"github.com/dodai-dev/dodai/internal/incluster/incltest"
	"github.com/dodai-dev/dodai/internal/macaddr"
)

// inClusterMACs is the default DHCP load of TestInClusterReplicas;
// DODAI_INCLUSTER_MACS overrides it.
const inClusterMACs = 2000

// TestInClusterReplicas runs two `dodai netboot --in-cluster --mode dhcp`
// processes in two network namespaces on one bridge, both backed by one
// real kube-apiserver, and puts the repository's DHCP load generator
// (hack/bench/netboot-load) on them from a third: every MAC gets exactly
// one address, no address goes to two MACs, the DHCPLeases say the same,
// and when one server is killed (SIGKILL) a third of the way in, the
// other keeps answering. A second round of the same MACs then gets every
// client its first address back from the survivor, which knows the dead
// replica's bindings only through the apiserver.
//
// The servers reach the apiserver (on the host's loopback) through a
// forwarder: a unix socket the test serves, and a TCP listener on the
// apiserver's loopback address and port inside each server namespace.
func TestInClusterReplicas(t *testing.T) {
	need(t, "ip")
	n := inClusterMACs
	if s := os.Getenv("DODAI_INCLUSTER_MACS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 30 {
			t.Fatalf("DODAI_INCLUSTER_MACS=%q: want a number >= 30", s)
		}
	}
	kc := incltest.Start(t)
	work := t.TempDir()
	load := buildLoad(t, work)
	dir := wideCluster(t, "nbtest")
	assets := fakeAssets(t, 1<<20)
	lab := newLANLab(t, 2, apiReach(t, kc, work))
	type server struct {
		name, addr string
		ns         *netns
		p          *proc
		log        string
	}
	servers := []*server{{name: "a", addr: "10.99.0.1"}, {name: "b", addr: "10.99.0.2"}}
	for i, s := range servers {
		s.ns = lab.servers[i]
		s.log = filepath.Join(work, "dodai-"+s.name+".log")
		s.p = startDodai(t, s.ns, s.log, "--in-cluster", "--kubeconfig", kc.Env.Kubeconfig, "--namespace", incltest.Namespace,
			"--server-name", s.name, "-C", dir, "--interface", "eth0", "--assets", assets, "--ipxe-dir", "/usr/lib/ipxe")
	}
	lanClient := lab.client

	// dodai status netboot of the pivoted cluster lists both replicas.
	pivoted := pivotedCopy(t, dir, kc, incltest.Namespace)
	out := statusReplicas(t, pivoted, 30*time.Second, "a and b running", func(l map[string]string) bool {
		return strings.Contains(l["a"], "10.99.0.1 ") && strings.HasSuffix(l["a"], "running") &&
			strings.Contains(l["b"], "http://10.99.0.2:8080") && strings.HasSuffix(l["b"], "running")
	})
	t.Logf("dodai status netboot:\n%s", out)

	const conc = 16
	// Round 0: other MACs over both servers, both alive, to count the
	// writes as the apiserver counts them: one DHCPLease per handshake,
	// and only the replica that ACKed a client writes its Machine (a
	// create and a status update); the replica that only offered does not.
	n0 := max(n/8, 30)
	w0 := apiWrites(t, kc)
	res0, _ := runLoadSeed(t, lanClient, load, filepath.Join(work, "acks0"), n0, conc, 3, nil)
	if res0.OK != n0 {
		t.Errorf("round 0: %d of %d MACs bound", res0.OK, n0)
	}
	w1 := settledWrites(t, kc, 3*time.Second)
	perLease, perMachine := (w1["dhcpleases"]-w0["dhcpleases"])/float64(res0.OK), (w1["machines"]-w0["machines"])/float64(res0.OK)
	t.Logf("round 0: %+v; apiserver writes per handshake: %.2f (DHCPLeases %.2f, Machines %.2f)", res0, perLease+perMachine, perLease, perMachine)
	if perMachine > 2.3 || perLease > 1.1 {
		t.Errorf("round 0: %.2f Machine and %.2f DHCPLease writes per handshake, want at most 2.3 and 1.1 (one replica writes each client's Machine)", perMachine, perLease)
	}

	// Round 1: the load over both; server a dies a third of the way in.
	acks1 := filepath.Join(work, "acks1")
	res1, killedAt := runLoad(t, lanClient, load, acks1, n, conc, func(acked int) bool {
		if acked < n/3 {
			return false
		}
		syscall.Kill(-servers[0].p.cmd.Process.Pid, syscall.SIGKILL)
		<-servers[0].p.done
		t.Logf("killed server a after %d ACKs", acked)
		return true
	})
	if killedAt < 0 {
		t.Fatalf("the load ended before server a was killed: %+v", res1)
	}
	lines := readAcks(t, acks1)
	t.Logf("round 1: %+v; %d ACK lines", res1, len(lines))
	if res1.OK != len(lines) || res1.OK+res1.Failed != n {
		t.Errorf("round 1: %d OK + %d failed of %d MACs, %d ACK lines", res1.OK, res1.Failed, n, len(lines))
	}
	// Handshakes in flight with a when it died (their REQUEST named a) may
	// fail; nothing else may.
	if res1.Failed > conc {
		t.Errorf("round 1: %d handshakes failed, more than the %d in flight when a died", res1.Failed, conc)
	}
	first := map[string]string{} // MAC → address
	owner := map[string]string{} // address → MAC
	bySrv := map[string]int{}
	for _, l := range lines {
		bySrv[l.server]++
		if m, dup := owner[l.ip]; dup && m != l.mac {
			t.Errorf("round 1: %s handed to both %s and %s", l.ip, m, l.mac)
		}
		owner[l.ip] = l.mac
		if ip, ok := first[l.mac]; ok && ip != l.ip {
			t.Errorf("round 1: %s got %s and %s", l.mac, ip, l.ip)
		}
		first[l.mac] = l.ip
	}
	if bySrv["10.99.0.1"] == 0 || bySrv["10.99.0.2"] == 0 {
		t.Errorf("round 1: ACKs per server %v: the load was not spread over both", bySrv)
	}
	// After the kill (allowing for replies already on the wire), only b.
	for i, l := range lines[min(killedAt+conc, len(lines)):] {
		if l.server != "10.99.0.2" {
			t.Errorf("ACK %d after the kill came from %s", killedAt+conc+i, l.server)
			break
		}
	}
	if after := len(lines) - killedAt; after < n-killedAt-conc {
		t.Errorf("only %d ACKs after the kill for %d MACs left: b did not keep answering", after, n-killedAt)
	}
	t.Logf("round 1: ACKs per server %v, %d handshakes failed", bySrv, res1.Failed)

	// The apiserver holds one DHCPLease per address, for the MAC its ACK
	// named.
	var list v1alpha1.DHCPLeaseList
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := kc.Client.List(ctx, &list, client.InNamespace(incltest.Namespace)); err != nil {
		t.Fatal(err)
	}
	leased := map[string]string{}
	for _, le := range list.Items {
		leased[le.Spec.Address] = le.Spec.MAC
	}
	for ip, mac := range owner {
		if leased[ip] != mac {
			t.Errorf("DHCPLease of %s names %q, the ACK %s", ip, leased[ip], mac)
		}
	}

	// Round 2: the same MACs again, b alone; everyone gets its address back.
	acks2 := filepath.Join(work, "acks2")
	res2, _ := runLoad(t, lanClient, load, acks2, n, conc, nil)
	t.Logf("round 2: %+v", res2)
	if res2.OK != n {
		t.Errorf("round 2: %d of %d MACs bound", res2.OK, n)
	}
	moved := 0
	for _, l := range readAcks(t, acks2) {
		if l.server != "10.99.0.2" {
			t.Errorf("round 2: ACK from %s", l.server)
		}
		if m, dup := owner[l.ip]; dup && m != l.mac {
			t.Errorf("round 2: %s handed to %s, it is %s's", l.ip, l.mac, m)
		}
		owner[l.ip] = l.mac
		if ip, ok := first[l.mac]; ok && ip != l.ip {
			moved++
			if moved <= 5 {
				t.Errorf("round 2: %s got %s, it had %s", l.mac, l.ip, ip)
			}
		}
	}
	if moved > 0 {
		t.Errorf("round 2: %d MACs got another address than in round 1", moved)
	}

	// The registry reaches the apiserver too, written behind the
	// handshakes by the replica that ACKed: every MAC of rounds 0 and 1
	// becomes a Machine (b ACKed each of round 1 in round 2 at the
	// latest); the survivor's log shows no store errors.
	var ms v1alpha1.MachineList
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if err := kc.Client.List(ctx, &ms, client.InNamespace(incltest.Namespace)); err != nil {
			t.Fatal(err)
		}
		if len(ms.Items) >= n+n0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	if len(ms.Items) < n+n0 {
		t.Errorf("%d Machines for %d MACs seen", len(ms.Items), n+n0)
	}
	// a died: its heartbeat stands, unrenewed; b runs.
	out = statusReplicas(t, pivoted, time.Minute, "a not running, b running", func(l map[string]string) bool {
		return strings.Contains(l["a"], "not running") && strings.HasSuffix(l["b"], "running")
	})
	replicasPart, _, _ := strings.Cut(out, "\n\n")
	t.Logf("dodai status netboot after a was killed (the replicas):\n%s", replicasPart)
	stop(t, servers[1].p)
	// b stopped: it took its heartbeat with it.
	statusReplicas(t, pivoted, 10*time.Second, "b gone", func(l map[string]string) bool { _, ok := l["b"]; return !ok })
	if b, _ := os.ReadFile(servers[1].log); strings.Contains(string(b), `"saving machine"`) {
		t.Errorf("server b failed to save machines:\n%s", tail(string(b), 3000))
	}
	// Nothing went into the cluster directory: its state lives in the
	// cluster.
	if es, _ := os.ReadDir(filepath.Join(dir, "state")); len(es) > 0 {
		var names []string
		for _, e := range es {
			names = append(names, e.Name())
		}
		t.Errorf("the in-cluster servers wrote into %s/state: %v", dir, names)
	}
	b, _ := os.ReadFile(servers[1].log)
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "netboot server running") {
			t.Logf("server b: %s", l)
		}
	}
}

type ackLine struct{ mac, ip, server string }

func readAcks(t *testing.T, path string) []ackLine {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []ackLine
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(l)
		if len(f) != 3 {
			continue
		}
		hw, err := macaddr.Parse(f[0][0:2] + ":" + f[0][2:4] + ":" + f[0][4:6] + ":" + f[0][6:8] + ":" + f[0][8:10] + ":" + f[0][10:12])
		if err != nil {
			t.Fatalf("ack line %q: %v", l, err)
		}
		out = append(out, ackLine{mac: hw.String(), ip: f[1], server: f[2]})
	}
	return out
}

type loadResult struct {
	OK        int     `json:"ok"`
	Failed    int     `json:"failed"`
	Retries   int     `json:"retries"`
	NAKs      int     `json:"naks"`
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"handshakes_per_second"`
}

// runLoad runs the load generator in ns (seed 7: the same MACs every
// round); during the run, during(acked) is called every 20 ms until it
// returns true, and the ACK count at that moment is returned (-1 if never).
func runLoad(t *testing.T, ns *netns, bin, acks string, n, c int, during func(acked int) bool) (loadResult, int) {
	t.Helper()
	return runLoadSeed(t, ns, bin, acks, n, c, 7, during)
}

// runLoadSeed is runLoad with another seed (other MACs).
func runLoadSeed(t *testing.T, ns *netns, bin, acks string, n, c, seed int, during func(acked int) bool) (loadResult, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := ns.cmd(ctx, bin, "-mode", "dhcp", "-i", "eth0", "-n", strconv.Itoa(n), "-c", strconv.Itoa(c), "-seed", strconv.Itoa(seed), "-acks", acks)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	at := -1
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var err error
wait:
	for {
		select {
		case err = <-done:
			break wait
		case <-tick.C:
			if during != nil && at < 0 {
				if k := countLines(acks); during(k) {
					at = k
				}
			}
		}
	}
	if err != nil {
		t.Fatalf("load generator: %v\n%s%s", err, out.String(), errb.String())
	}
	var r loadResult
	if err := json.Unmarshal([]byte(out.String()), &r); err != nil {
		t.Fatalf("load result %q: %v", out.String(), err)
	}
	return r, at
}

func countLines(path string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
	}
	return n
}

func selfExe(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return self
}

// forwardUnix serves sock, forwarding each connection to the TCP address
// to (the apiserver), until the test ends.
func forwardUnix(t *testing.T, sock, to string) {
	t.Helper()
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go pipe(c, func() (net.Conn, error) { return net.Dial("tcp", to) })
		}
	}()
}

// pipe copies between c and a connection dial opens, both ways, until
// either side closes.
func pipe(c net.Conn, dial func() (net.Conn, error)) {
	defer c.Close()
	u, err := dial()
	if err != nil {
		return
	}
	defer u.Close()
	done := make(chan struct{}, 2)
	go func() { io.Copy(u, c); done <- struct{}{} }()
	go func() { io.Copy(c, u); done <- struct{}{} }()
	<-done
}

// fwdMain is the probe mode "fwd LISTEN SOCK": inside a server's network
// namespace, it listens on TCP LISTEN and forwards each connection to the
// unix socket SOCK.
func fwdMain(args []string) int {
	if len(args) != 2 {
		fmt.Fprintln(os.Stderr, "probe: want fwd LISTEN-ADDR UNIX-SOCKET")
		return 2
	}
	ln, err := net.Listen("tcp", args[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		return 1
	}
	fmt.Println("ready")
	for {
		c, err := ln.Accept()
		if err != nil {
			return 1
		}
		go pipe(c, func() (net.Conn, error) { return net.Dial("unix", args[1]) })
	}
}
