package power_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dodai-dev/dodai/internal/cli"
	"github.com/dodai-dev/dodai/internal/lab"
	"github.com/dodai-dev/dodai/internal/power"
	"github.com/dodai-dev/dodai/internal/testutil"
)

// sim is one ipmi_sim BMC on loopback in front of a "machine" that is a
// plain process (sleep), started and stopped by the lab's chassis_control
// script (lab.WriteHook): power is observed on that process.
type sim struct {
	dir  string
	port int
	proc lab.Proc
}

func needSim(t *testing.T) {
	t.Helper()
	testutil.Slow(t, "runs ipmi_sim")
	testutil.NeedTools(t, "hack/deps/power.apt", "ipmi_sim", "ipmitool")
}

// freeUDPPort finds a loopback UDP port no one uses right now.
func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

func startSim(t *testing.T, name, pass string) *sim {
	t.Helper()
	dir := t.TempDir()
	hook, err := lab.WriteHook(dir)
	if err != nil {
		t.Fatal(err)
	}
	mdir := filepath.Join(dir, "machine")
	if err := lab.WriteMachine(mdir, map[string][]string{
		lab.BootDisk: {"sleep", "600"},
		lab.BootPXE:  {"sleep", "601"},
	}); err != nil {
		t.Fatal(err)
	}
	s := &sim{dir: mdir}
	for attempt := 0; ; attempt++ {
		s.port = freeUDPPort(t)
		cfg := lab.SimConfig{Name: name, Addr: "127.0.0.1", Port: s.port, Username: "admin", Password: pass,
			ChassisControl: lab.HookCommand(hook, mdir)}
		if err := lab.WriteSim(filepath.Join(dir, "bmc"), cfg); err != nil {
			t.Fatal(err)
		}
		s.proc, err = lab.StartSim(filepath.Join(dir, "bmc"), "")
		if err == nil {
			break
		}
		if attempt == 3 {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		s.proc.Stop(5 * time.Second)
		lab.PowerOff(mdir) // the machine process, by its recorded PID
	})
	return s
}

func (s *sim) target(node, pass string) power.Target {
	return power.Target{Node: node, Protocol: "ipmi", Address: "127.0.0.1", Port: s.port, CipherSuite: 3, Username: "admin", Password: pass}
}

// ipmitool is the reference client: what dodai does must be what it sees.
func (s *sim) ipmitool(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	full := append([]string{"-I", "lanplus", "-C", "3", "-H", "127.0.0.1", "-p", fmt.Sprint(s.port), "-U", "admin", "-P", "secret"}, args...)
	out, err := exec.CommandContext(ctx, "ipmitool", full...).CombinedOutput()
	if err != nil {
		t.Fatalf("ipmitool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (s *sim) running() bool {
	on, _ := lab.Running(s.dir)
	return on
}

func TestIPMIAgainstIpmiSim(t *testing.T) {
	needSim(t)
	a, b := startSim(t, "a", "secret"), startSim(t, "b", "secret")
	targets := []power.Target{a.target("a", "secret"), b.target("b", "secret")}
	run := func(action power.Action, pxe bool, ts ...power.Target) []power.Result {
		t.Helper()
		rs := power.Run(context.Background(), ts, power.Request{Action: action, PXEOnce: pxe, Timeout: 20 * time.Second, Poll: 50 * time.Millisecond})
		for _, r := range rs {
			if r.Err != nil {
				t.Fatalf("%s %s: %v", action, r.Node, r.Err)
			}
		}
		return rs
	}

	rs := run(power.Status, false, targets...)
	if rs[0].Before != power.Off || rs[1].Before != power.Off {
		t.Fatalf("fresh machines not off: %+v", rs)
	}
	if out := a.ipmitool(t, "chassis", "power", "status"); !strings.Contains(out, "Chassis Power is off") {
		t.Fatalf("ipmitool disagrees: %s", out)
	}

	// on --pxe-once: both machines start, booting from the network.
	rs = run(power.PowerOn, true, targets...)
	for i, s := range []*sim{a, b} {
		if rs[i].After != power.On || !s.running() {
			t.Fatalf("%s: after %s, process running %v", rs[i].Node, rs[i].After, s.running())
		}
		if got := lab.Boots(s.dir); !slices.Equal(got, []string{lab.BootPXE}) {
			t.Fatalf("%s boots %v, want [pxe]", rs[i].Node, got)
		}
	}
	if out := a.ipmitool(t, "chassis", "power", "status"); !strings.Contains(out, "Chassis Power is on") {
		t.Fatalf("ipmitool disagrees: %s", out)
	}
	pidA := lab.PID(a.dir)

	// on again: left alone; with --pxe-once it is refused.
	rs = run(power.PowerOn, false, targets[0])
	if rs[0].Done != "already on" || lab.PID(a.dir) != pidA {
		t.Fatalf("second on: %+v", rs[0])
	}
	r := power.Run(context.Background(), targets[:1], power.Request{Action: power.PowerOn, PXEOnce: true, Timeout: 20 * time.Second})[0]
	if r.Err == nil || !strings.Contains(r.Error, "use cycle") {
		t.Fatalf("on --pxe-once of a running machine: %+v", r)
	}

	// cycle without --pxe-once: a new process, booting from disk (the PXE
	// flag was for one boot only).
	run(power.Cycle, false, targets[0])
	if !a.running() || lab.PID(a.dir) == pidA {
		t.Fatalf("cycle: running %v, pid %d (was %d)", a.running(), lab.PID(a.dir), pidA)
	}
	if got := lab.Boots(a.dir); !slices.Equal(got, []string{lab.BootPXE, lab.BootDisk}) {
		t.Fatalf("boots %v, want [pxe disk]", got)
	}

	// off: the process is gone, and ipmitool sees it off.
	run(power.PowerOff, false, targets...)
	if a.running() || b.running() {
		t.Fatal("machines still running after off")
	}
	if out := b.ipmitool(t, "chassis", "power", "status"); !strings.Contains(out, "Chassis Power is off") {
		t.Fatalf("ipmitool disagrees: %s", out)
	}

	// The reference client's bootdev pxe + power on does what dodai's
	// --pxe-once does, and dodai reads the state ipmitool left.
	b.ipmitool(t, "chassis", "bootdev", "pxe")
	b.ipmitool(t, "chassis", "power", "on")
	if got := lab.Boots(b.dir); !slices.Equal(got, []string{lab.BootPXE, lab.BootPXE}) {
		t.Fatalf("ipmitool bootdev pxe + on: boots %v", got)
	}
	if rs := run(power.Status, false, targets[1]); rs[0].Before != power.On {
		t.Fatalf("dodai reads %s after ipmitool's power on", rs[0].Before)
	}
	// dodai's PXE flag is what ipmitool reads back.
	run(power.PowerOff, false, targets[1])
	bmc, err := power.Dial(context.Background(), targets[1])
	if err != nil {
		t.Fatal(err)
	}
	if err := bmc.SetPXEOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	bmc.Close(context.Background())
	if out := b.ipmitool(t, "chassis", "bootparam", "get", "5"); !strings.Contains(out, "Force PXE") {
		t.Fatalf("ipmitool does not see the PXE boot flag:\n%s", out)
	}
}

func TestIPMIFaults(t *testing.T) {
	needSim(t)
	good := startSim(t, "good", "secret")
	wrong := startSim(t, "wrong", "secret")
	// A BMC that never answers: a bound UDP socket that reads nothing.
	dead, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	deadT := power.Target{Node: "dead", Protocol: "ipmi", Address: "127.0.0.1", Port: dead.LocalAddr().(*net.UDPAddr).Port, CipherSuite: 3, Username: "admin", Password: "secret"}
	targets := []power.Target{good.target("good", "secret"), wrong.target("wrong", "not-it"), deadT}
	start := time.Now()
	rs := power.Run(context.Background(), targets, power.Request{Action: power.PowerOn, PXEOnce: true, Timeout: 15 * time.Second, Poll: 50 * time.Millisecond})
	elapsed := time.Since(start)
	if rs[0].Err != nil || !good.running() {
		t.Errorf("the good BMC was affected: %+v", rs[0])
	}
	if rs[1].Err == nil || !strings.Contains(rs[1].Error, "wrong username or password") {
		t.Errorf("wrong password: %+v", rs[1])
	}
	if wrong.running() {
		t.Error("the machine behind the wrong password was powered on")
	}
	if rs[2].Err == nil || !strings.Contains(rs[2].Error, "does not answer IPMI") {
		t.Errorf("dead BMC: %+v", rs[2])
	}
	// ipmitool-like timing: 1 s per try, 5 tries; well inside the bound.
	if elapsed > 12*time.Second || rs[2].Duration > 12*time.Second {
		t.Errorf("took %s (dead BMC %s)", elapsed, rs[2].Duration)
	}
	t.Logf("good %.1fs, wrong password %.1fs, dead %.1fs", rs[0].Seconds, rs[1].Seconds, rs[2].Seconds)
}

// TestPowerCommand runs `dodai power` on a cluster directory: table and
// JSON output, credentials from the file and the environment, exit status.
func TestPowerCommand(t *testing.T) {
	needSim(t)
	a := startSim(t, "cp1", "secret")
	dir := t.TempDir()
	cy := fmt.Sprintf(`apiVersion: dodai.dev/v1alpha1
kind: Cluster
metadata: {name: pw}
spec:
  endpoint: https://10.99.0.11:6443
  nodes:
    - {name: cp1, role: controlplane, macs: ["52:54:00:00:00:11"], address: 10.99.0.11/24, installDisk: {path: /dev/vda}, bmc: {address: 127.0.0.1, port: %d, cipherSuite: 3}}
    - {name: w1, role: worker, macs: ["52:54:00:00:00:12"], installDisk: {path: /dev/vda}, bmc: {address: 127.0.0.1, port: %d, cipherSuite: 3}}
    - {name: w2, role: worker, macs: ["52:54:00:00:00:13"], installDisk: {path: /dev/vda}}
`, a.port, freeUDPPort(t))
	os.WriteFile(filepath.Join(dir, "cluster.yaml"), []byte(cy), 0o644)
	os.WriteFile(filepath.Join(dir, "bmc-credentials.yaml"), []byte("nodes:\n  cp1: {username: admin, password: secret}\n"), 0o600)
	dodai := func(env []string, args ...string) (string, string, int) {
		for _, e := range env {
			k, v, _ := strings.Cut(e, "=")
			t.Setenv(k, v)
		}
		var out, errb bytes.Buffer
		code := cli.Run(context.Background(), append([]string{"-C", dir}, args...), nil, &out, &errb)
		return out.String(), errb.String(), code
	}
	// validate names the node without credentials.
	out, _, code := dodai(nil, "validate")
	if code != 1 || !strings.Contains(out, `spec.nodes[1].bmc: no BMC username or password for node "w1"`) || !strings.Contains(out, "cluster.yaml:8:") {
		t.Fatalf("validate (%d):\n%s", code, out)
	}
	// power on cp1 only: table row, exit 0.
	out, errOut, code := dodai(nil, "power", "on", "--pxe-once", "--node", "cp1", "--timeout", "20s")
	if code != 0 || !strings.Contains(out, "cp1") || !strings.Contains(out, "powered on, PXE once") || !a.running() {
		t.Fatalf("power on (%d):\n%s\n%s", code, out, errOut)
	}
	// all nodes: w1's credentials come from the environment now, but its BMC
	// doesn't answer; w2 has no bmc and is skipped. Exit 1, cp1 still ok.
	out, errOut, code = dodai([]string{"DODAI_BMC_W1_USERNAME=admin", "DODAI_BMC_W1_PASSWORD=secret"}, "power", "status", "-o", "json", "--timeout", "10s")
	if code != 1 || !strings.Contains(errOut, "skipped (no bmc): w2") || !strings.Contains(errOut, "1 of 2 node(s) failed") {
		t.Fatalf("power status (%d):\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(out, `"node": "cp1"`) || !strings.Contains(out, `"before": "on"`) || !strings.Contains(out, `"error": "BMC 127.0.0.1:`) {
		t.Fatalf("json:\n%s", out)
	}
	out, errOut, code = dodai(nil, "power", "off", "--node", "cp1")
	if code != 0 || a.running() {
		t.Fatalf("power off (%d):\n%s\n%s", code, out, errOut)
	}
}
