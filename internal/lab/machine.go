package lab

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Boot devices a machine starts from.
const (
	BootDisk = "disk"
	BootPXE  = "pxe"
)

// Files in a machine directory (HookScript writes them).
const (
	pidFile    = "power.pid"   // "PID STARTTIME" of the running machine
	bootLog    = "boots.log"   // one line per power-on: RFC 3339 time, device, PID
	consoleLog = "console.log" // the machine's output and the hook's messages
)

// PowerOff stops the machine (SIGTERM, then SIGKILL after 5 s): a hard
// power-off, the guest is not asked.
func PowerOff(dir string) error {
	pid, ok, err := machinePID(dir)
	if err != nil || !ok {
		return err
	}
	if err := stopPID(pid, 5*time.Second); err != nil {
		return err
	}
	return removeIfExists(filepath.Join(dir, pidFile))
}

// Running reports whether the machine's recorded process is alive (the
// same process: its start time must match, so a reused PID doesn't count).
func Running(dir string) (bool, error) {
	_, ok, err := machinePID(dir)
	return ok, err
}

// PID is the machine's running process, or 0.
func PID(dir string) int {
	pid, ok, _ := machinePID(dir)
	if !ok {
		return 0
	}
	return pid
}

func machinePID(dir string) (int, bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, pidFile))
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	var pid int
	var st uint64
	if _, err := fmt.Sscan(string(b), &pid, &st); err != nil || pid <= 1 {
		return 0, false, nil
	}
	return pid, alive(pid, st), nil
}

// Boots lists the machine's power-ons (device per line of boots.log).
func Boots(dir string) []string {
	f, err := os.Open(filepath.Join(dir, bootLog))
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fs := strings.Fields(sc.Text()); len(fs) >= 2 {
			out = append(out, fs[1])
		}
	}
	return out
}

// ConsoleLog is the path of the machine's console output.
func ConsoleLog(dir string) string { return filepath.Join(dir, consoleLog) }

// startTime is field 22 of /proc/PID/stat (clock ticks since boot).
func startTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // the command name may contain spaces
	if i < 0 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	if f[0] == "Z" || f[0] == "X" {
		return 0, fmt.Errorf("process %d has exited", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// alive: the process exists, isn't a zombie and started at st.
func alive(pid int, st uint64) bool {
	got, err := startTime(pid)
	return err == nil && got == st
}

// stopPID sends SIGTERM, waits up to grace, then SIGKILL and waits again.
func stopPID(pid int, grace time.Duration) error {
	st, err := startTime(pid)
	if err != nil {
		return nil // already gone
	}
	_ = syscall.Kill(pid, syscall.SIGTERM) // ESRCH if it just exited: waitGone sees that
	if waitGone(pid, st, grace) {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	if waitGone(pid, st, 5*time.Second) {
		return nil
	}
	return fmt.Errorf("process %d did not exit after SIGKILL", pid)
}

func waitGone(pid int, st uint64, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if !alive(pid, st) {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return !alive(pid, st)
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
