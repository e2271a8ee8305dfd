package lab

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dodai-dev/dodai/internal/fsutil"
)

// Boot devices a machine starts from.
const (
	BootDisk = "disk"
	BootPXE  = "pxe"
)

// Machine is one virtual machine's power plumbing, kept in its directory
// as machine.json. ipmi_sim's chassis_control program (`dodai lab
// bmc-hook DIR`) reads it to power the machine on and off.
type Machine struct {
	Name string `json:"name"`
	// Start is the command line to run per boot device (BootDisk, BootPXE).
	Start map[string][]string `json:"start"`
}

// Files in a machine directory.
const (
	machineFile = "machine.json"
	pidFile     = "power.pid"   // "PID STARTTIME" of the running machine
	nextBoot    = "boot"        // the boot device the BMC set for the next power-on
	bootLog     = "boots.log"   // one line per power-on: RFC 3339 time, device
	consoleLog  = "console.log" // the machine's serial console and output
)

// WriteMachine saves a machine's config in dir.
func WriteMachine(dir string, m Machine) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(filepath.Join(dir, machineFile), append(b, '\n'), 0o644)
}

// ReadMachine loads a machine's config from dir.
func ReadMachine(dir string) (Machine, error) {
	var m Machine
	b, err := os.ReadFile(filepath.Join(dir, machineFile))
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("%s: %w", filepath.Join(dir, machineFile), err)
	}
	return m, nil
}

// Hook is ipmi_sim's chassis_control program for the machine in dir. ipmi_sim
// runs it through popen as `PROGRAM 0x20 get power boot…` or `PROGRAM 0x20
// set power "1" boot "pxe"…` and reads "parm:value" lines from a get
// (OpenIPMI lanserv, extcmd.c and bmc_chassis.c). Parameters: power (0/1),
// reset (pulse), boot (none, pxe, default, cdrom, bios). ipmi_sim does not
// pass the boot flags' "persistent" bit, so every boot device set here
// applies to the next power-on only, as `ipmitool chassis bootdev pxe`
// without options=persistent means. Output other than a get's values goes to
// the machine's console log: ipmi_sim waits for the program's stdout to
// close, so nothing started here may inherit it.
func Hook(dir string, args []string, out io.Writer) error {
	if len(args) < 2 {
		return errors.New("usage: bmc-hook DIR MC get|set|check [PARM [VALUE]]…")
	}
	op, parms := args[1], args[2:]
	switch op {
	case "get":
		for _, p := range parms {
			switch p {
			case "power":
				on, err := Running(dir)
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "power:%d\n", b2i(on))
			case "boot":
				dev := readNextBoot(dir)
				if dev == BootPXE {
					fmt.Fprintln(out, "boot:pxe")
				} else {
					fmt.Fprintln(out, "boot:default")
				}
			default:
				return fmt.Errorf("cannot get %q", p)
			}
		}
		return nil
	case "set":
		if len(parms)%2 != 0 {
			return fmt.Errorf("set wants PARM VALUE pairs, got %q", parms)
		}
		for i := 0; i < len(parms); i += 2 {
			p, v := parms[i], strings.Trim(parms[i+1], `"`)
			var err error
			switch p {
			case "power":
				if v == "1" {
					err = PowerOn(dir)
				} else {
					err = PowerOff(dir)
				}
			case "reset":
				if err = PowerOff(dir); err == nil {
					err = PowerOn(dir)
				}
			case "boot":
				dev := BootDisk
				if v == "pxe" {
					dev = BootPXE
				}
				err = fsutil.WriteFileAtomic(filepath.Join(dir, nextBoot), []byte(dev+"\n"), 0o644)
			case "identify", "shutdown":
				// nothing to show or to shut down gracefully: accepted
			default:
				err = fmt.Errorf("cannot set %q", p)
			}
			if err != nil {
				return err
			}
		}
		return nil
	case "check":
		return errors.New("check is not supported")
	}
	return fmt.Errorf("unknown operation %q", op)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func readNextBoot(dir string) string {
	b, _ := os.ReadFile(filepath.Join(dir, nextBoot))
	return strings.TrimSpace(string(b))
}

// PowerOn starts the machine if it isn't running: from the network if the
// BMC set the next boot to PXE (and then forgets that), else from its disk.
func PowerOn(dir string) error {
	if on, err := Running(dir); err != nil || on {
		return err
	}
	m, err := ReadMachine(dir)
	if err != nil {
		return err
	}
	dev := BootDisk
	if readNextBoot(dir) == BootPXE {
		dev = BootPXE
	}
	argv := m.Start[dev]
	if len(argv) == 0 {
		return fmt.Errorf("machine %s has no command for booting from %s", m.Name, dev)
	}
	logf, err := os.OpenFile(filepath.Join(dir, consoleLog), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "\n=== dodai lab: power on, boot from %s, %s ===\n", dev, time.Now().UTC().Format(time.RFC3339Nano))
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // outlives the hook and ipmi_sim's popen
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting machine %s: %w", m.Name, err)
	}
	pid := cmd.Process.Pid
	st, err := startTime(pid)
	if err != nil {
		cmd.Process.Kill()
		return err
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, pidFile), fmt.Appendf(nil, "%d %d\n", pid, st), 0o644); err != nil {
		cmd.Process.Kill()
		return err
	}
	cmd.Process.Release()
	if dev == BootPXE {
		os.Remove(filepath.Join(dir, nextBoot)) // once
	}
	lf, err := os.OpenFile(filepath.Join(dir, bootLog), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err == nil {
		fmt.Fprintf(lf, "%s %s %d\n", time.Now().UTC().Format(time.RFC3339Nano), dev, pid)
		lf.Close()
	}
	return nil
}

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
	syscall.Kill(pid, syscall.SIGTERM)
	if waitGone(pid, st, grace) {
		return nil
	}
	syscall.Kill(pid, syscall.SIGKILL)
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
