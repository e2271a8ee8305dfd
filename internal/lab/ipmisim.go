package lab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/dodai-dev/dodai/internal/fsutil"
)

// SimConfig is one virtual BMC: OpenIPMI's ipmi_sim serving IPMI v2.0 over
// LAN (RMCP+) on Addr:Port, with one administrator and a chassis_control
// program that powers the machine.
type SimConfig struct {
	Name               string
	Addr               string
	Port               int
	Username, Password string
	// ChassisControl is the program ipmi_sim runs (through sh) for power
	// and boot device, e.g. HookCommand(hook, machineDir); the MC address
	// (0x20) is appended, as OpenIPMI's example does.
	ChassisControl string
}

// Files of a simulator directory.
const (
	simLanConf = "lan.conf"
	simEmu     = "sim.emu"
	simState   = "state"
	simLog     = "ipmi_sim.log"
)

// WriteSim writes ipmi_sim's lan.conf (ipmi_lan(5)) and emulator command
// file (ipmi_sim_cmd(5)) into dir. lan.conf holds the password: 0600.
func WriteSim(dir string, c SimConfig) error {
	for what, s := range map[string]string{"name": c.Name, "address": c.Addr, "username": c.Username, "password": c.Password, "chassis_control": c.ChassisControl} {
		if s == "" || strings.ContainsAny(s, "\"\n\\") {
			return fmt.Errorf("ipmi_sim %s %q: must be non-empty without quotes, backslashes or line breaks", what, s)
		}
	}
	if len(c.Username) > 16 || len(c.Password) > 20 {
		return fmt.Errorf("IPMI allows user names up to 16 and passwords up to 20 characters")
	}
	if err := os.MkdirAll(filepath.Join(dir, simState), 0o700); err != nil {
		return err
	}
	// Cipher suites: ipmi_sim implements RAKP-HMAC-SHA1 etc. It does not
	// answer Get Channel Cipher Suites, so clients that ask first (ipmitool
	// without -C, go-ipmi without a pinned suite) wait for timeouts before
	// falling back; the lab's cluster.yaml pins cipherSuite 3.
	lan := fmt.Sprintf(`# ipmi_sim configuration written by dodai lab
name "%s"
set_working_mc 0x20
  startlan 1
    addr %s %d
    priv_limit admin
    allowed_auths_callback none md5 straight
    allowed_auths_user none md5 straight
    allowed_auths_operator none md5 straight
    allowed_auths_admin none md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "%s 0x20"
  user 2 true "%s" "%s" admin 10 none md5 straight
`, c.Name, c.Addr, c.Port, c.ChassisControl, c.Username, c.Password)
	emu := "mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\nmc_enable 0x20\n"
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, simLanConf), []byte(lan), 0o600); err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(filepath.Join(dir, simEmu), []byte(emu), 0o644)
}

// Proc is a process dodai lab started and must stop: its PID and start
// time (so a reused PID is never killed).
type Proc struct {
	PID       int    `json:"pid"`
	StartTime uint64 `json:"startTime"`
}

// Alive reports whether the process still runs.
func (p Proc) Alive() bool { return p.PID > 1 && alive(p.PID, p.StartTime) }

// Stop ends the process (SIGTERM, SIGKILL after grace) if it still runs.
func (p Proc) Stop(grace time.Duration) error {
	if !p.Alive() {
		return nil
	}
	return stopPID(p.PID, grace)
}

// StartSim starts ipmi_sim for the simulator in dir, detached (its own
// session, output to ipmi_sim.log), optionally inside network namespace
// netns (via `ip netns exec`, which execs, so the PID is ipmi_sim's).
func StartSim(dir, netns string) (Proc, error) {
	argv := []string{"ipmi_sim", "-n", "-c", filepath.Join(dir, simLanConf), "-f", filepath.Join(dir, simEmu), "-s", filepath.Join(dir, simState)}
	if netns != "" {
		argv = append([]string{"ip", "netns", "exec", netns}, argv...)
	}
	bin, err := exec.LookPath(argv[0])
	if err != nil {
		return Proc{}, fmt.Errorf("%s not found: install the Debian packages openipmi (ipmi_sim) and iproute2", argv[0])
	}
	logf, err := os.OpenFile(filepath.Join(dir, simLog), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return Proc{}, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, argv[1:]...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return Proc{}, fmt.Errorf("starting ipmi_sim: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	st, err := startTime(cmd.Process.Pid)
	if err != nil {
		return Proc{}, fmt.Errorf("ipmi_sim exited at once: %s", tailFile(filepath.Join(dir, simLog)))
	}
	// A bad config or a taken port ends ipmi_sim within milliseconds.
	select {
	case err := <-done:
		return Proc{}, fmt.Errorf("ipmi_sim exited at once (%v): %s", err, tailFile(filepath.Join(dir, simLog)))
	case <-time.After(300 * time.Millisecond):
	}
	p := Proc{PID: cmd.Process.Pid, StartTime: st}
	// Not waited for by this process any more: whoever started the lab may
	// exit; the simulator lives on until lab down stops it by PID. The
	// goroutine above reaps it if this process is still around then.
	return p, nil
}

func tailFile(path string) string {
	b, _ := os.ReadFile(path)
	s := strings.TrimSpace(string(b))
	if len(s) > 600 {
		s = "…" + s[len(s)-600:]
	}
	if s == "" {
		return "(no output)"
	}
	return s
}
