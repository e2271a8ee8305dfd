package lab

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/fsutil"
	"github.com/dodai-dev/dodai/internal/machineconfig"
)

// The lab's networks, inside its own namespace (never on the host).
const (
	Bridge      = "br0"  // the boot network: machines' taps, dodai netboot
	BMCLink     = "bmc0" // the management network: one address per BMC
	bootNet     = "10.99.0"
	bmcNet      = "10.99.1"
	stateDir    = "lab"
	stateFile   = "lab.json"
	bmcUser     = "admin"
	probeAssets = "assets"
)

// Options of Up.
type Options struct {
	// Dir is the cluster directory the lab's cluster.yaml goes to.
	Dir           string
	ControlPlanes int
	Workers       int
	// Firmware of every machine: uefi or bios; "mixed" alternates, starting
	// with uefi.
	Firmware  string
	MemoryMiB int
	DiskGiB   int
	// Accel is kvm, tcg or "" (kvm when /dev/kvm is usable).
	Accel string
	// Probe builds the probe system into DIR/assets when that directory
	// doesn't exist (no Talos assets at hand).
	Probe bool
	// Log receives progress lines.
	Log io.Writer
}

// State is what Up made, saved in DIR/lab/lab.json; Down undoes exactly it.
type State struct {
	Netns    string         `json:"netns"`
	Created  time.Time      `json:"created"`
	Accel    string         `json:"accel"`
	Machines []MachineState `json:"machines"`
	// Files Up wrote outside DIR/lab (relative to DIR) with their SHA-256,
	// or "dir" for a directory it created; Down removes them if unchanged.
	Files map[string]string `json:"files"`
}

// MachineState is one lab machine.
type MachineState struct {
	Name     string `json:"name"`
	Role     string `json:"role"`
	Firmware string `json:"firmware"`
	MAC      string `json:"mac"`
	Address  string `json:"address"`
	Tap      string `json:"tap"`
	Dir      string `json:"dir"`
	BMCAddr  string `json:"bmcAddress"`
	BMCDir   string `json:"bmcDir"`
	Sim      Proc   `json:"sim"`
}

func statePath(dir string) string { return filepath.Join(dir, stateDir, stateFile) }

// Load reads a lab's state; os.ErrNotExist when there is no lab in dir.
func Load(dir string) (*State, error) {
	b, err := os.ReadFile(statePath(dir))
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", statePath(dir), err)
	}
	return &s, nil
}

func (s *State) save(dir string) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(statePath(dir), append(b, '\n'), 0o644)
}

// NetnsName is the namespace name Up uses: unique per lab.
func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Up builds the lab: namespace, networks, machine directories with blank
// disks, one running ipmi_sim BMC per machine (machines stay off), the
// probe assets if asked, and cluster.yaml + bmc-credentials.yaml +
// secrets.yaml describing it. Whatever it made is recorded before the next
// step, so a failed Up is undone by Down.
func Up(o Options) (*State, error) {
	if o.ControlPlanes < 1 {
		return nil, errors.New("a lab needs at least one control plane")
	}
	if o.ControlPlanes+o.Workers > 80 {
		return nil, errors.New("at most 80 machines")
	}
	if o.MemoryMiB == 0 {
		o.MemoryMiB = 2048
	}
	if o.DiskGiB == 0 {
		o.DiskGiB = 10
	}
	if o.Firmware == "" {
		o.Firmware = FirmwareUEFI
	}
	if o.Firmware != FirmwareUEFI && o.Firmware != FirmwareBIOS && o.Firmware != "mixed" {
		return nil, fmt.Errorf("--firmware must be uefi, bios or mixed, got %q", o.Firmware)
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	switch o.Accel {
	case "":
		o.Accel = "tcg"
		if f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0); err == nil {
			f.Close()
			o.Accel = "kvm"
		}
	case "kvm", "tcg":
	default:
		return nil, fmt.Errorf("--accel must be kvm or tcg, got %q", o.Accel)
	}
	for _, tool := range []string{"ip", "qemu-system-x86_64", "ipmi_sim"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s not found: install the Debian packages iproute2, qemu-system-x86 and openipmi (hack/deps/power.apt, netboot.apt)", tool)
		}
	}
	if _, err := Load(o.Dir); err == nil {
		return nil, fmt.Errorf("a lab is already up in %s (dodai lab down first)", o.Dir)
	}
	if _, err := os.Stat(filepath.Join(o.Dir, cluster.FileName)); err == nil {
		return nil, fmt.Errorf("%s already has a %s: lab up writes its own; use a new directory", o.Dir, cluster.FileName)
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	if !shellSafe(dir) {
		return nil, fmt.Errorf("cluster directory %q: only letters, digits and /._+,:@=- please (ipmi_sim runs the BMC program through sh)", dir)
	}
	if err := os.MkdirAll(filepath.Join(dir, stateDir), 0o755); err != nil {
		return nil, err
	}
	st := &State{Netns: "dodai-lab-" + randomHex(4), Created: time.Now().UTC(), Accel: o.Accel, Files: map[string]string{}}
	if err := st.save(dir); err != nil {
		return nil, err
	}
	hook, err := WriteHook(filepath.Join(dir, stateDir))
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*State, error) {
		if serr := st.save(dir); serr != nil {
			err = errors.Join(err, serr)
		}
		return st, fmt.Errorf("%w (dodai lab down -C %s removes what was made)", err, o.Dir)
	}
	fmt.Fprintf(o.Log, "namespace %s\n", st.Netns)
	if err := ip("netns", "add", st.Netns); err != nil {
		st.Netns = "" // not ours
		return fail(err)
	}
	nsip := func(args ...string) error { return ip(append([]string{"-n", st.Netns}, args...)...) }
	steps := [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", Bridge, "type", "bridge", "forward_delay", "0", "stp_state", "0"},
		{"addr", "add", bootNet + ".1/24", "dev", Bridge},
		{"link", "set", Bridge, "up"},
		{"link", "add", BMCLink, "type", "bridge"}, // a port-less bridge: dummy links need a kernel module containers may lack
		{"addr", "add", bmcNet + ".1/24", "dev", BMCLink},
		{"link", "set", BMCLink, "up"},
	}
	for _, s := range steps {
		if err := nsip(s...); err != nil {
			return fail(err)
		}
	}
	creds := cluster.BMCCredential{Username: bmcUser, Password: randomHex(8)}
	n := o.ControlPlanes + o.Workers
	for i := 0; i < n; i++ {
		role, name, host := cluster.RoleControlPlane, fmt.Sprintf("cp%d", i+1), 11+i
		if i >= o.ControlPlanes {
			role, name, host = cluster.RoleWorker, fmt.Sprintf("w%d", i-o.ControlPlanes+1), 31+i-o.ControlPlanes
		}
		fw := o.Firmware
		if fw == "mixed" {
			fw = []string{FirmwareUEFI, FirmwareBIOS}[i%2]
		}
		m := MachineState{Name: name, Role: role, Firmware: fw, MAC: fmt.Sprintf("52:54:00:d0:%02x:%02x", i/256, i%256),
			Address: fmt.Sprintf("%s.%d", bootNet, host), Tap: fmt.Sprintf("tap%d", i),
			Dir: filepath.Join(dir, stateDir, "machines", name), BMCAddr: fmt.Sprintf("%s.%d", bmcNet, host),
			BMCDir: filepath.Join(dir, stateDir, "bmc", name)}
		st.Machines = append(st.Machines, m)
		mi := len(st.Machines) - 1
		for _, s := range [][]string{
			{"tuntap", "add", "dev", m.Tap, "mode", "tap"},
			{"link", "set", m.Tap, "master", Bridge, "up"},
			{"addr", "add", m.BMCAddr + "/32", "dev", BMCLink},
		} {
			if err := nsip(s...); err != nil {
				return fail(err)
			}
		}
		vm := VM{Name: st.Netns + "-" + name, Dir: m.Dir, Firmware: fw, MAC: m.MAC, Tap: m.Tap, MemoryMiB: o.MemoryMiB, Accel: o.Accel}
		if err := vm.prepareDisk(o.DiskGiB); err != nil {
			return fail(err)
		}
		if err := WriteMachine(m.Dir, map[string][]string{BootDisk: vm.QEMUArgs(BootDisk), BootPXE: vm.QEMUArgs(BootPXE)}); err != nil {
			return fail(err)
		}
		sc := SimConfig{Name: name, Addr: m.BMCAddr, Port: cluster.DefaultIPMIPort, Username: creds.Username, Password: creds.Password,
			ChassisControl: HookCommand(hook, m.Dir)}
		if err := WriteSim(m.BMCDir, sc); err != nil {
			return fail(err)
		}
		p, err := StartSim(m.BMCDir, st.Netns)
		if err != nil {
			return fail(fmt.Errorf("BMC of %s: %w", name, err))
		}
		st.Machines[mi].Sim = p
		if err := st.save(dir); err != nil {
			return fail(err)
		}
		fmt.Fprintf(o.Log, "machine %s (%s, %s) MAC %s, BMC %s:623 (ipmi_sim pid %d)\n", name, role, fw, m.MAC, m.BMCAddr, p.PID)
	}
	if o.Probe {
		if _, err := os.Stat(filepath.Join(dir, probeAssets)); errors.Is(err, os.ErrNotExist) {
			if _, _, err := BuildProbe(filepath.Join(dir, probeAssets), ProbeOptions{}); err != nil {
				return fail(err)
			}
			st.Files[probeAssets] = "dir"
			fmt.Fprintf(o.Log, "probe system (host kernel + busybox initramfs) in %s\n", filepath.Join(o.Dir, probeAssets))
		}
	}
	if err := writeCluster(dir, st, creds); err != nil {
		return fail(err)
	}
	if err := st.save(dir); err != nil {
		return fail(err)
	}
	return st, nil
}

func writeCluster(dir string, st *State, creds cluster.BMCCredential) error {
	var b strings.Builder
	fmt.Fprintf(&b, `# A dodai lab (dodai lab up): QEMU machines in network namespace %s.
# Run dodai inside it: ip netns exec %s dodai …
apiVersion: dodai.dev/v1alpha1
kind: Cluster
metadata:
  name: lab
spec:
  endpoint: https://%s:6443
  image:
    # QEMU without KVM on a busy host: the kernel's IO-APIC timer check can
    # fail ("IO-APIC + timer doesn't work") and panic; skip it.
    extraKernelArgs: [no_timer_check]
  boot:
    interface: %s
    mode: dhcp
    subnet: %s.0/24
    range: {start: %s.100, end: %s.199}
    router: %s.1
  nodes:
`, st.Netns, st.Netns, st.Machines[0].Address, Bridge, bootNet, bootNet, bootNet, bootNet)
	for _, m := range st.Machines {
		fmt.Fprintf(&b, "    - name: %s\n      role: %s\n      macs: [%q]\n      address: %s/24\n      installDisk: {path: /dev/vda}\n      bmc: {address: %s, cipherSuite: 3}   # ipmi_sim, %s firmware\n",
			m.Name, m.Role, m.MAC, m.Address, m.BMCAddr, m.Firmware)
	}
	credsYAML := fmt.Sprintf("# BMC credentials of the lab's ipmi_sim BMCs (written by dodai lab up)\ndefault:\n  username: %s\n  password: %s\n", creds.Username, creds.Password)
	for name, content := range map[string]struct {
		s    string
		mode os.FileMode
	}{cluster.FileName: {b.String(), 0o644}, cluster.BMCCredentialsFile: {credsYAML, 0o600}} {
		if err := fsutil.CreateExclusive(filepath.Join(dir, name), []byte(content.s), content.mode); err != nil {
			return err
		}
		st.Files[name] = sha(content.s)
	}
	created, err := machineconfig.InitSecrets(dir, cluster.DefaultTalosVersion)
	if err != nil {
		return err
	}
	if created {
		raw, err := os.ReadFile(filepath.Join(dir, cluster.SecretsFile))
		if err != nil {
			return err
		}
		st.Files[cluster.SecretsFile] = sha(string(raw))
	}
	return nil
}

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// Down stops and removes what Up recorded: each machine's QEMU process
// and BMC simulator (by PID and start time), the namespace (by its
// recorded name), the lab directory, and the files Up wrote if they are
// unchanged (changed ones are kept and reported). Processes Up did not
// start that still run inside the namespace are reported, not killed.
func Down(dir string, log io.Writer) error {
	st, err := Load(dir)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("no lab in %s (no %s)", dir, statePath(dir))
	}
	if err != nil {
		return err
	}
	if log == nil {
		log = io.Discard
	}
	var errs []error
	for _, m := range st.Machines {
		if pid := PID(m.Dir); pid != 0 {
			fmt.Fprintf(log, "%s: stopping QEMU (pid %d)\n", m.Name, pid)
		}
		if err := PowerOff(m.Dir); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", m.Name, err))
		}
		if m.Sim.Alive() {
			fmt.Fprintf(log, "%s: stopping ipmi_sim (pid %d)\n", m.Name, m.Sim.PID)
			if err := m.Sim.Stop(5 * time.Second); err != nil {
				errs = append(errs, fmt.Errorf("%s BMC: %w", m.Name, err))
			}
		}
	}
	if st.Netns != "" {
		if out, _ := exec.Command("ip", "netns", "pids", st.Netns).Output(); len(strings.TrimSpace(string(out))) > 0 {
			fmt.Fprintf(log, "still running in %s, not started by lab up (stop them): pids %s\n", st.Netns, strings.Join(strings.Fields(string(out)), " "))
		}
		if err := ip("netns", "del", st.Netns); err != nil && !strings.Contains(err.Error(), "No such file") {
			errs = append(errs, err)
		} else {
			fmt.Fprintf(log, "namespace %s deleted\n", st.Netns)
		}
	}
	if len(errs) > 0 {
		if err := st.save(dir); err != nil {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	}
	for name, sum := range st.Files {
		p := filepath.Join(dir, name)
		if sum == "dir" {
			os.RemoveAll(p)
			continue
		}
		raw, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err == nil && sha(string(raw)) == sum {
			os.Remove(p)
		} else {
			fmt.Fprintf(log, "kept %s: changed since lab up\n", p)
		}
	}
	if err := os.RemoveAll(filepath.Join(dir, stateDir)); err != nil {
		return err
	}
	fmt.Fprintf(log, "lab in %s removed\n", dir)
	return nil
}

// MachineStatus is one row of Status.
type MachineStatus struct {
	MachineState
	Power string   `json:"power"`
	PID   int      `json:"pid,omitempty"`
	BMCUp bool     `json:"bmcUp"`
	Boots []string `json:"boots"`
}

// Status reports each machine: power (its QEMU process), BMC simulator,
// the boots so far.
func Status(dir string) (*State, []MachineStatus, error) {
	st, err := Load(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("no lab in %s", dir)
	}
	if err != nil {
		return nil, nil, err
	}
	var out []MachineStatus
	for _, m := range st.Machines {
		s := MachineStatus{MachineState: m, Power: "off", BMCUp: m.Sim.Alive(), Boots: Boots(m.Dir)}
		if pid := PID(m.Dir); pid != 0 {
			s.Power, s.PID = "on", pid
		}
		out = append(out, s)
	}
	return st, out, nil
}
