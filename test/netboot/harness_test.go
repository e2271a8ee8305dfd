// Package netboot_test runs dodai netboot against real clients inside
// network namespaces the tests create: udhcpc and ISC dhclient (dhcp mode),
// a PXE-flavoured udhcpc beside a separate dnsmasq (proxy mode), curl for
// HTTP, and QEMU firmware (SeaBIOS + iPXE ROM, OVMF) booting a test kernel
// and probe initramfs end to end. The server is the real `dodai netboot`
// command: the test binary re-executes itself as dodai inside the
// namespace. Needs root (ip netns) and the packages in hack/deps/netboot.apt.
package netboot_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/dodai-dev/dodai/internal/cli"
	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/machineconfig"
	"github.com/dodai-dev/dodai/internal/testutil"
)

const (
	envMain  = "DODAI_NETBOOT_TEST_MAIN"
	envProbe = "DODAI_NETBOOT_TEST_PROBE"
)

func TestMain(m *testing.M) {
	switch {
	case os.Getenv(envMain) == "1":
		os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	case os.Getenv(envProbe) != "":
		os.Exit(probeMain(os.Getenv(envProbe), os.Args[1:]))
	}
	code := m.Run()
	if secretsDir != "" {
		os.RemoveAll(secretsDir)
	}
	os.Exit(code)
}

// need: netboot integration tests create network namespaces (root) and
// run Debian's tools (hack/test.sh installs hack/deps/netboot.apt).
func need(t *testing.T, tools ...string) {
	t.Helper()
	testutil.NeedRoot(t)
	testutil.NeedTools(t, "hack/deps/netboot.apt", tools...)
}

var nsSeq atomic.Int32

var (
	secretsOnce sync.Once
	secretsDir  string
	secretsErr  error
)

// netns is a network namespace owned by one test.
type netns struct{ name string }

var sweepOnce sync.Once

func newNS(t *testing.T) *netns {
	t.Helper()
	sweepOnce.Do(sweepDeadNamespaces)
	ns := &netns{name: fmt.Sprintf("dodai-nb-%d-%d", os.Getpid(), nsSeq.Add(1))}
	run(t, "ip", "netns", "add", ns.name)
	t.Cleanup(func() { deleteNS(ns.name) })
	ns.run(t, "ip", "link", "set", "lo", "up")
	return ns
}

// deleteNS kills whatever still runs in namespace name (by PID), then
// deletes it.
func deleteNS(name string) {
	out, _ := exec.Command("ip", "netns", "pids", name).Output()
	for _, f := range strings.Fields(string(out)) {
		var pid int
		if _, err := fmt.Sscan(f, &pid); err == nil && pid > 1 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	exec.Command("ip", "netns", "del", name).Run()
}

// sweepDeadNamespaces deletes the namespaces an earlier run of these tests
// left behind when it was killed before its cleanups ran (a timeout's
// SIGKILL): dodai-nb-PID-N where process PID no longer exists. What still
// runs in them (a QEMU, a server) was started by that run.
func sweepDeadNamespaces() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		var pid, seq int
		if n, _ := fmt.Sscanf(f[0], "dodai-nb-%d-%d", &pid, &seq); n != 2 || f[0] != fmt.Sprintf("dodai-nb-%d-%d", pid, seq) {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			deleteNS(f[0])
		}
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (ns *netns) cmd(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.name, name}, args...)...)
}

func (ns *netns) run(t *testing.T, name string, args ...string) string {
	t.Helper()
	return run(t, "ip", append([]string{"netns", "exec", ns.name, name}, args...)...)
}

// proc is a process started by netns.start.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when it exited (cmd.ProcessState is then set)
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// start runs a long-lived process in the namespace, output to logPath,
// killed (by PID) at cleanup.
func (ns *netns) start(t *testing.T, logPath string, env []string, name string, args ...string) *proc {
	t.Helper()
	lf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	c := exec.Command("ip", append([]string{"netns", "exec", ns.name, name}, args...)...)
	c.Stdout, c.Stderr = lf, lf
	c.Env = append(os.Environ(), env...)
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { c.Wait(); lf.Close(); close(done) }()
	t.Cleanup(func() {
		syscall.Kill(-c.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	return &proc{cmd: c, done: done}
}

// veth connects two namespaces (or a namespace and a bridge port).
func veth(t *testing.T, a *netns, ifA string, b *netns, ifB string) {
	t.Helper()
	a.run(t, "ip", "link", "add", ifA, "type", "veth", "peer", "name", ifB, "netns", b.name)
	a.run(t, "ip", "link", "set", ifA, "up")
	b.run(t, "ip", "link", "set", ifB, "up")
}

// waitLog waits until the file contains s, failing early if the process
// exits.
func waitLog(t *testing.T, path, s string, p *proc, d time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(path)
		if strings.Contains(string(b), s) {
			return string(b)
		}
		if p != nil && p.exited() {
			t.Fatalf("process exited before %q:\n%s", s, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	b, _ := os.ReadFile(path)
	t.Fatalf("timeout waiting for %q in %s:\n%s", s, path, b)
	return ""
}

// writeCluster writes a cluster.yaml and secrets.yaml for tests.
type testNode struct {
	name, role, mac, address string
}

func writeCluster(t *testing.T, mode string, extra []string, nodes ...testNode) string {
	t.Helper()
	dir := t.TempDir()
	var b strings.Builder
	fmt.Fprintf(&b, `apiVersion: dodai.dev/v1alpha1
kind: Cluster
metadata:
  name: nbtest
spec:
  endpoint: https://10.99.0.10:6443
  image:
    extraKernelArgs: [%s]
  boot:
    mode: %s
    subnet: 10.99.0.0/24
    range: {start: 10.99.0.100, end: 10.99.0.199}
    router: 10.99.0.1
    dns: [10.99.0.1]
    leaseTime: 1h
  nodes:
`, strings.Join(extra, ", "), mode)
	for _, n := range nodes {
		fmt.Fprintf(&b, "    - name: %s\n      role: %s\n      macs: [%q]\n      installDisk: {path: /dev/vda}\n", n.name, n.role, n.mac)
		if n.address != "" {
			fmt.Fprintf(&b, "      address: %s\n", n.address)
		}
	}
	write(t, filepath.Join(dir, "cluster.yaml"), b.String())
	// The node configs are rendered from secrets.yaml (as `dodai init`
	// makes it); generated once per test binary, copied into each dir.
	secretsOnce.Do(func() {
		secretsDir, secretsErr = os.MkdirTemp("", "dodai-nb-secrets-")
		if secretsErr == nil {
			_, secretsErr = machineconfig.InitSecrets(secretsDir, cluster.DefaultTalosVersion)
		}
	})
	if secretsErr != nil {
		t.Fatal(secretsErr)
	}
	copyFile(t, filepath.Join(secretsDir, cluster.SecretsFile), filepath.Join(dir, cluster.SecretsFile), 0o600)
	return dir
}

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// fakeAssets writes small kernel/initramfs files (for tests that don't
// boot them).
func fakeAssets(t *testing.T, kernelSize int) string {
	dir := t.TempDir()
	k := bytes.Repeat([]byte("K"), kernelSize)
	for i := range k {
		k[i] = byte(i * 7)
	}
	write(t, filepath.Join(dir, "amd64", "vmlinuz"), string(k))
	write(t, filepath.Join(dir, "amd64", "initramfs.xz"), "initramfs")
	return dir
}

// startDodai runs `dodai netboot` in ns and waits until it serves.
func startDodai(t *testing.T, ns *netns, logPath string, args ...string) *proc {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// -v: the per-machine stage lines the tests look for are debug level.
	c := ns.start(t, logPath, []string{envMain + "=1"}, self, append([]string{"netboot", "--log-format", "json", "-v"}, args...)...)
	waitLog(t, logPath, "netboot server running", c, 20*time.Second)
	return c
}

// stop sends SIGTERM to a process started with ns.start and waits.
func stop(t *testing.T, p *proc) {
	t.Helper()
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatal("process did not stop on SIGTERM within 10s")
	}
}

// ---- probe: a helper mode of the test binary that listens on UDP 68 in
// a client namespace and records every DHCP reply it sees, as JSON lines.

type seenReply struct {
	Type     string `json:"type"`
	Server   string `json:"server"`
	YIAddr   string `json:"yiaddr"`
	File     string `json:"file"`
	Class    string `json:"class"`
	Opt43    []byte `json:"opt43"`
	ClientHW string `json:"chaddr"`
}

func probeMain(mode string, args []string) int {
	if mode == "req4011" {
		return req4011(args)
	}
	if mode == "fwd" {
		return fwdMain(args)
	}
	if mode != "listen" || len(args) != 2 {
		fmt.Fprintln(os.Stderr, "probe: want listen IFACE SECONDS")
		return 2
	}
	var secs int
	fmt.Sscan(args[1], &secs)
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		c.Control(func(fd uintptr) {
			syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
			serr = syscall.SetsockoptString(int(fd), syscall.SOL_SOCKET, syscall.SO_BINDTODEVICE, args[0])
		})
		return serr
	}}
	conn, err := lc.ListenPacket(context.Background(), "udp4", ":68")
	if err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		return 1
	}
	fmt.Println(`{"type":"ready"}`)
	conn.SetReadDeadline(time.Now().Add(time.Duration(secs) * time.Second))
	buf := make([]byte, 1500)
	enc := json.NewEncoder(os.Stdout)
	for {
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			return 0
		}
		m, err := dhcpv4.FromBytes(buf[:n])
		if err != nil || m.OpCode != dhcpv4.OpcodeBootReply {
			continue
		}
		enc.Encode(seenReply{Type: m.MessageType().String(), Server: m.ServerIdentifier().String(), YIAddr: m.YourIPAddr.String(),
			File: m.BootFileName, Class: m.ClassIdentifier(), Opt43: m.GetOneOption(dhcpv4.OptionVendorSpecificInformation), ClientHW: m.ClientHWAddr.String()})
	}
}

func readProbe(t *testing.T, path string) []seenReply {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []seenReply
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r seenReply
		if json.Unmarshal(sc.Bytes(), &r) == nil && r.Type != "ready" {
			out = append(out, r)
		}
	}
	return out
}

// req4011 sends a UEFI-style ProxyDHCP REQUEST (arch 7, PXEClient) from
// LOCALIP:68 to SERVER:4011 and prints the reply as JSON.
func req4011(args []string) int {
	if len(args) != 3 {
		fmt.Fprintln(os.Stderr, "probe: want req4011 LOCALIP SERVER:PORT MAC")
		return 2
	}
	hw, err := net.ParseMAC(args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(args[0]), Port: 68})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer conn.Close()
	req, err := dhcpv4.New(dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithClientIP(net.ParseIP(args[0])),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003000")),
		dhcpv4.WithGeneric(dhcpv4.OptionClientSystemArchitectureType, []byte{0, 7}))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dst, err := net.ResolveUDPAddr("udp4", args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if _, err := conn.WriteTo(req.ToBytes(), dst); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 1500)
	n, _, err := conn.ReadFrom(buf)
	if err != nil {
		fmt.Fprintln(os.Stderr, "no reply:", err)
		return 1
	}
	m, err := dhcpv4.FromBytes(buf[:n])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	json.NewEncoder(os.Stdout).Encode(seenReply{Type: m.MessageType().String(), Server: m.ServerIdentifier().String(), YIAddr: m.YourIPAddr.String(),
		File: m.BootFileName, Class: m.ClassIdentifier(), Opt43: m.GetOneOption(dhcpv4.OptionVendorSpecificInformation), ClientHW: m.ClientHWAddr.String()})
	return 0
}
