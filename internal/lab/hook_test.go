package lab

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// hookRig is a machine directory whose "machine" is a sleep process, and
// the hook script in front of it, called as ipmi_sim calls it.
type hookRig struct {
	hook, dir string
}

func newHookRig(t *testing.T, start map[string][]string) *hookRig {
	t.Helper()
	base := t.TempDir()
	hook, err := WriteHook(base)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(hook); err != nil || fi.Mode().Perm()&0o100 == 0 {
		t.Fatalf("hook not executable: %v %v", fi, err)
	}
	r := &hookRig{hook: hook, dir: filepath.Join(base, "m1")}
	if err := WriteMachine(r.dir, start); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := PowerOff(r.dir); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return r
}

// call runs the hook as OpenIPMI's extcmd does: `sh -c "PROGRAM 0x20 get
// power"` with stdout a pipe that is read to EOF, then the exit status.
// EOF must come while the machine keeps running: ipmi_sim blocks until it
// does.
func (r *hookRig) call(t *testing.T, args string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := exec.CommandContext(ctx, "sh", "-c", HookCommand(r.hook, r.dir)+" 0x20 "+args)
	var stderr bytes.Buffer
	c.Stderr = &stderr
	out, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	b, _ := io.ReadAll(out)
	err = c.Wait()
	if d := time.Since(begin); d > 10*time.Second {
		t.Fatalf("hook %s held its stdout for %s", args, d)
	}
	if err != nil {
		return string(b), fmt.Errorf("%w: %s", err, stderr.String())
	}
	return string(b), nil
}

func (r *hookRig) must(t *testing.T, args string) string {
	t.Helper()
	out, err := r.call(t, args)
	if err != nil {
		t.Fatalf("hook %s: %v", args, err)
	}
	return out
}

// cmdline is the command line of a running process; a process the hook
// has just forked may not have exec'd yet (its cmdline still that of
// setsid, or empty), so it waits up to 5 s for one that is not.
func cmdline(pid int) string {
	var s string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		s = strings.ReplaceAll(string(b), "\x00", " ")
		if strings.HasPrefix(s, "sleep ") || time.Now().After(deadline) {
			return s
		}
	}
}

func TestHookPowerAndPXEOnce(t *testing.T) {
	r := newHookRig(t, map[string][]string{BootDisk: {"sleep", "600"}, BootPXE: {"sleep", "601"}})
	if got := r.must(t, "get power"); got != "power:0\n" {
		t.Fatalf("fresh machine: %q", got)
	}
	if got := r.must(t, "get power boot"); got != "power:0\nboot:default\n" {
		t.Fatalf("get power boot: %q", got)
	}

	// ipmitool chassis bootdev pxe, then power on: the network, once.
	r.must(t, `set boot "pxe"`)
	if got := r.must(t, "get boot"); got != "boot:pxe\n" {
		t.Fatalf("after set boot pxe: %q", got)
	}
	r.must(t, `set power "1"`)
	pid := PID(r.dir)
	if pid == 0 || cmdline(pid) != "sleep 601 " {
		t.Fatalf("power on from pxe: pid %d %q", pid, cmdline(pid))
	}
	if got := r.must(t, "get power boot"); got != "power:1\nboot:default\n" {
		t.Fatalf("after power on: %q (the PXE flag is for one boot)", got)
	}
	if !strings.Contains(readFile(ConsoleLog(r.dir)), "power on, boot from pxe") {
		t.Fatalf("console log: %q", readFile(ConsoleLog(r.dir)))
	}

	// on again: the same machine.
	r.must(t, `set power "1"`)
	if PID(r.dir) != pid {
		t.Fatalf("second power on replaced pid %d with %d", pid, PID(r.dir))
	}

	// reset: a new process, now from the disk.
	r.must(t, `set reset "1"`)
	pid2 := PID(r.dir)
	if pid2 == 0 || pid2 == pid || cmdline(pid2) != "sleep 600 " || live(pid) {
		t.Fatalf("reset: pid %d (was %d) %q", pid2, pid, cmdline(pid2))
	}
	if got := Boots(r.dir); !slices.Equal(got, []string{BootPXE, BootDisk}) {
		t.Fatalf("boots %v", got)
	}

	// off: gone, and the Go side agrees.
	r.must(t, `set power "0"`)
	if on, err := Running(r.dir); on || err != nil {
		t.Fatalf("after power off: running %v %v", on, err)
	}
	if live(pid2) {
		t.Fatalf("pid %d still alive after power off", pid2)
	}
	if got := r.must(t, "get power"); got != "power:0\n" {
		t.Fatalf("after off: %q", got)
	}
	// A boot device other than pxe means the disk.
	r.must(t, `set boot "cdrom" power "1"`)
	if got := Boots(r.dir); !slices.Equal(got, []string{BootPXE, BootDisk, BootDisk}) {
		t.Fatalf("boots %v", got)
	}
	if n := strings.Count(readFile(filepath.Join(r.dir, "hook.log")), "\n"); n != 11 {
		t.Errorf("hook.log has %d lines, want one per call (11)", n)
	}
}

// A recorded PID that now belongs to another process (same PID, other start
// time) is not the machine: reported off, never signalled.
func TestHookReusedPID(t *testing.T) {
	r := newHookRig(t, map[string][]string{BootDisk: {"sleep", "600"}, BootPXE: {"sleep", "601"}})
	me := os.Getpid()
	st, err := startTime(me)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(r.dir, pidFile), fmt.Appendf(nil, "%d %d\n", me, st+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := r.must(t, "get power"); got != "power:0\n" {
		t.Fatalf("foreign pid: %q", got)
	}
	r.must(t, `set power "0"`) // must not signal this test process
	if on, _ := Running(r.dir); on {
		t.Fatal("Running with a foreign pid")
	}
	r.must(t, `set power "1"`)
	if pid := PID(r.dir); pid == 0 || pid == me {
		t.Fatalf("power on over a stale record: pid %d", pid)
	}
}

func TestHookErrors(t *testing.T) {
	r := newHookRig(t, map[string][]string{BootDisk: {"/nonexistent/qemu"}, BootPXE: {"sleep", "601"}})
	for _, args := range []string{"get fan", `set power`, `set speed "3"`, "check power", ""} {
		if out, err := r.call(t, args); err == nil {
			t.Errorf("hook %q succeeded: %q", args, out)
		}
	}
	// A machine that cannot start is an error the BMC passes on, not "on".
	out, err := r.call(t, `set power "1"`)
	if err == nil || !strings.Contains(err.Error(), "exited at once") {
		// setsid may still be starting when the hook looks: then the
		// machine is gone by the next get.
		time.Sleep(200 * time.Millisecond)
		if got := r.must(t, "get power"); got != "power:0\n" {
			t.Fatalf("unstartable machine: %q %v, then %q", out, err, got)
		}
	}
	if err := os.Remove(filepath.Join(r.dir, "start-pxe")); err != nil {
		t.Fatal(err)
	}
	r.must(t, `set boot "pxe"`)
	if _, err := r.call(t, `set power "1"`); err == nil || !strings.Contains(err.Error(), "no start-pxe") {
		t.Fatalf("missing command: %v", err)
	}
}

func TestWriteMachineRejects(t *testing.T) {
	dir := t.TempDir()
	for name, start := range map[string]map[string][]string{
		"no pxe":     {BootDisk: {"qemu"}},
		"empty arg":  {BootDisk: {"qemu", ""}, BootPXE: {"qemu"}},
		"line break": {BootDisk: {"qemu"}, BootPXE: {"qemu", "-name", "a\nb"}},
	} {
		if err := WriteMachine(filepath.Join(dir, strings.ReplaceAll(name, " ", "-")), start); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for s, want := range map[string]bool{"/tmp/x/lab-1/m_2.d": true, "/a b": false, "/a;b": false, "/a'b": false, "/a$b": false, "": false, "/ä": false} {
		if shellSafe(s) != want {
			t.Errorf("shellSafe(%q) = %v", s, !want)
		}
	}
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// live: pid runs and is no zombie.
func live(pid int) bool {
	_, err := startTime(pid)
	return err == nil
}
