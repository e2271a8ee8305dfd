// Package lab_test runs the virtual rack end to end: `dodai lab up` (a
// namespace, QEMU machines, one ipmi_sim BMC each), `dodai netboot` inside
// it, `dodai power on --pxe-once` over real IPMI (RMCP+), the machines
// netbooting the probe system to their own Talos config, then `dodai power
// cycle` without --pxe-once and the machines booting from their (blank)
// disks instead of netbooting again, and `dodai lab down` leaving nothing
// running. The test binary re-executes itself as dodai. Needs root and
// hack/deps/{netboot,power}.apt; not in -short.
package lab_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dodai-dev/dodai/internal/cli"
	"github.com/dodai-dev/dodai/internal/lab"
)

const envMain = "DODAI_LAB_TEST_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(envMain) == "1" {
		os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func need(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("QEMU lab test (not in -short)")
	}
	if os.Geteuid() != 0 {
		t.Fatal("the lab test needs root (ip netns, tap devices); run it via hack/test.sh as root")
	}
	for _, tool := range []string{"ip", "qemu-system-x86_64", "ipmi_sim", "ipmitool", "cpio", "gzip", "/usr/share/OVMF/OVMF_CODE_4M.fd", "/bin/busybox"} {
		if _, err := exec.LookPath(tool); err != nil {
			if _, err := os.Stat(tool); err != nil {
				t.Fatalf("%s not found: run hack/test.sh (installs hack/deps/*.apt)", tool)
			}
		}
	}
}

// dodai runs the test binary as dodai (optionally inside the namespace)
// and returns its output.
func dodai(t *testing.T, ctx context.Context, netns string, args ...string) (string, error) {
	t.Helper()
	self, _ := os.Executable()
	argv := append([]string{self}, args...)
	if netns != "" {
		argv = append([]string{"ip", "netns", "exec", netns}, argv...)
	}
	c := exec.CommandContext(ctx, argv[0], argv[1:]...)
	c.Env = append(os.Environ(), envMain+"=1")
	out, err := c.CombinedOutput()
	return string(out), err
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool, dump func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timeout (%s) waiting for %s\n%s", d, what, dump())
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// exited: pid is gone or a zombie. The hook's shell has exited, so a
// stopped QEMU is an orphan that whatever init this host runs reaps when it
// gets to it; until then kill(pid, 0) still succeeds.
func exited(pid int) bool {
	s := read(fmt.Sprintf("/proc/%d/stat", pid))
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return true
	}
	return s[i+2] == 'Z' || s[i+2] == 'X'
}

func read(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// labWithNetboot brings a lab up and starts `dodai netboot` inside it; both
// are undone at cleanup (lab down, netboot's process group by PID). It
// returns the lab directory, its state, netboot's log and a function that
// stops netboot (also safe to call before the cleanup).
func labWithNetboot(t *testing.T, ctx context.Context, upArgs ...string) (string, *lab.State, string, func()) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "lab")
	out, err := dodai(t, ctx, "", append([]string{"lab", "up", "-C", dir}, upArgs...)...)
	st, lerr := lab.Load(dir)
	if lerr == nil {
		t.Cleanup(func() {
			if _, err := lab.Load(dir); err != nil {
				return // already down
			}
			if out, err := dodai(t, context.Background(), "", "lab", "down", "-C", dir); err != nil {
				t.Errorf("lab down: %v\n%s", err, out)
			}
		})
	}
	if err != nil {
		t.Fatalf("lab up: %v\n%s", err, out)
	}
	nlog := filepath.Join(t.TempDir(), "netboot.log")
	lf, _ := os.Create(nlog)
	self, _ := os.Executable()
	nb := exec.Command("ip", "netns", "exec", st.Netns, self, "netboot", "-C", dir, "--log-format", "json")
	nb.Env = append(os.Environ(), envMain+"=1")
	nb.Stdout, nb.Stderr = lf, lf
	nb.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := nb.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { nb.Wait(); lf.Close(); close(done) }()
	stop := sync.OnceFunc(func() {
		syscall.Kill(-nb.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			syscall.Kill(-nb.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	// Registered after lab down's cleanup, so it runs before it.
	t.Cleanup(stop)
	waitFor(t, "netboot to serve", 30*time.Second, func() bool { return strings.Contains(read(nlog), "netboot server running") }, func() string { return read(nlog) })
	return dir, st, nlog, stop
}

func TestLabPXEOnce(t *testing.T) {
	need(t)
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	dir, st, nlog, stopNetboot := labWithNetboot(t, ctx, "--controlplanes", "1", "--workers", "1", "--firmware", "mixed", "--probe", "--memory", "384", "--disk", "1", "--accel", "tcg")
	if len(st.Machines) != 2 || st.Machines[0].Firmware != lab.FirmwareUEFI || st.Machines[1].Firmware != lab.FirmwareBIOS {
		t.Fatalf("machines %+v", st.Machines)
	}
	// The lab's own cluster file is valid, credentials included.
	if out, err := dodai(t, ctx, "", "validate", "-C", dir); err != nil {
		t.Fatalf("validate: %v\n%s", err, out)
	}

	dump := func() string {
		var b strings.Builder
		for _, m := range st.Machines {
			fmt.Fprintf(&b, "--- %s serial ---\n%s\n", m.Name, tail(read(lab.SerialLog(m.Dir)), 3000))
			fmt.Fprintf(&b, "--- %s console ---\n%s\n", m.Name, tail(read(lab.ConsoleLog(m.Dir)), 1000))
		}
		fmt.Fprintf(&b, "--- netboot ---\n%s\n", tail(read(nlog), 4000))
		return b.String()
	}

	// Power on with --pxe-once through the BMCs, as JSON.
	start := time.Now()
	out, err := dodai(t, ctx, st.Netns, "power", "on", "--pxe-once", "-C", dir, "-o", "json")
	if err != nil {
		t.Fatalf("power on: %v\n%s", err, out)
	}
	var rs []struct {
		Node, Done, After string
	}
	if err := json.Unmarshal([]byte(out[strings.Index(out, "["):]), &rs); err != nil || len(rs) != 2 {
		t.Fatalf("power on output: %v\n%s", err, out)
	}
	for i, m := range st.Machines {
		if rs[i].Done != "powered on, PXE once" || rs[i].After != "on" || lab.PID(m.Dir) == 0 {
			t.Fatalf("%s: %+v, pid %d", m.Name, rs[i], lab.PID(m.Dir))
		}
	}
	// Each machine netboots through dodai netboot to its own config.
	for _, m := range st.Machines {
		want := "PROBE: config fetched: hostname: " + m.Name
		waitFor(t, m.Name+" to netboot", 8*time.Minute, func() bool { return strings.Contains(read(lab.SerialLog(m.Dir)), want) }, dump)
		t.Logf("%s (%s) netbooted to its config %s after power on", m.Name, m.Firmware, time.Since(start).Round(time.Second))
	}
	for _, m := range st.Machines {
		if !strings.Contains(read(nlog), `"msg":"served machine config","node":"`+m.Name+`"`) {
			t.Fatalf("netboot did not serve %s its config\n%s", m.Name, dump())
		}
	}

	// Cycle without --pxe-once: the PXE flag was for one boot only, so the
	// machines now boot from their blank disks and never ask dodai netboot.
	mark := len(read(nlog))
	serialMark := map[string]int{}
	for _, m := range st.Machines {
		serialMark[m.Name] = len(read(lab.SerialLog(m.Dir)))
	}
	out, err = dodai(t, ctx, st.Netns, "power", "cycle", "-C", dir, "--timeout", "150s")
	if err != nil || strings.Count(out, "power cycled") != 2 {
		t.Fatalf("power cycle: %v\n%s", err, out)
	}
	for _, m := range st.Machines {
		if got := lab.Boots(m.Dir); !slices.Equal(got, []string{lab.BootPXE, lab.BootDisk}) {
			t.Fatalf("%s boots %v, want [pxe disk]", m.Name, got)
		}
		// Firmware reached the end of its disk-only boot order.
		want := "No bootable device" // SeaBIOS
		if m.Firmware == lab.FirmwareUEFI {
			want = "Shell>" // OVMF falls back to its shell
		}
		waitFor(t, m.Name+" to give up on its blank disk", 5*time.Minute, func() bool {
			return strings.Contains(read(lab.SerialLog(m.Dir))[serialMark[m.Name]:], want)
		}, dump)
		if s := read(lab.SerialLog(m.Dir))[serialMark[m.Name]:]; strings.Contains(s, "PROBE:") || strings.Contains(s, "iPXE") {
			t.Fatalf("%s netbooted again after the cycle\n%s", m.Name, dump())
		}
	}
	if after := read(nlog)[mark:]; strings.Contains(after, `"msg":"machine"`) {
		t.Fatalf("dodai netboot saw machines again after the cycle:\n%s", after)
	}

	// off through the BMC: the QEMU processes are gone.
	pids := []int{lab.PID(st.Machines[0].Dir), lab.PID(st.Machines[1].Dir)}
	if out, err := dodai(t, ctx, st.Netns, "power", "off", "-C", dir); err != nil {
		t.Fatalf("power off: %v\n%s", err, out)
	}
	for i, pid := range pids {
		if pid == 0 || !exited(pid) {
			t.Fatalf("%s: QEMU pid %d still there after power off", st.Machines[i].Name, pid)
		}
	}

	// lab down: BMCs stopped, namespace and files gone.
	sims := []lab.Proc{st.Machines[0].Sim, st.Machines[1].Sim}
	stopNetboot()
	if out, err := dodai(t, ctx, "", "lab", "down", "-C", dir); err != nil {
		t.Fatalf("lab down: %v\n%s", err, out)
	}
	for _, p := range sims {
		if p.Alive() {
			t.Errorf("ipmi_sim %d still running after lab down", p.PID)
		}
	}
	if err := exec.Command("ip", "netns", "pids", st.Netns).Run(); err == nil {
		t.Errorf("namespace %s still exists", st.Netns)
	}
	for _, f := range []string{"cluster.yaml", "bmc-credentials.yaml", "secrets.yaml", "lab", "assets"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			t.Errorf("%s left behind", f)
		}
	}
	if _, err := lab.Load(dir); err == nil {
		t.Error("lab state left behind")
	}
}
