package day2_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dodai-dev/dodai/internal/cli"
	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/lab"
	"github.com/dodai-dev/dodai/internal/power"
	"github.com/dodai-dev/dodai/internal/testutil"
)

// envExec makes the test binary play a program (TestMain): "dodai" (the
// CLI, for the netboot server inside a namespace) or "pxe" (a machine's
// network boot, started by its BMC).
const envExec = "DODAI_DAY2_EXEC"

func TestMain(m *testing.M) {
	switch os.Getenv(envExec) {
	case "dodai":
		os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	case "pxe":
		if err := fakePXE(os.Args[1], os.Args[2], os.Args[3]); err != nil {
			fmt.Fprintln(os.Stderr, "pxe:", err)
			os.Exit(1)
		}
		// Booted: the machine runs until its BMC powers it off (a bare
		// select{} would be Go's deadlock, not a running machine).
		time.Sleep(time.Hour)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// fakePXE is what iPXE does once it runs: fetch the machine's script from
// dodai netboot, then the kernel and initramfs it names (the URLs carry
// the MAC, so netboot records the stages). It then leaves marker for the
// test, which brings the fake Talos machine up in maintenance mode.
func fakePXE(base, mac, marker string) error {
	c := &http.Client{Timeout: 30 * time.Second}
	get := func(url string) (string, error) {
		resp, err := c.Get(url)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
		}
		return string(b), err
	}
	script, err := get(base + "/boot.ipxe?arch=x86_64&mac=" + mac)
	if err != nil {
		return err
	}
	n := 0
	sc := bufio.NewScanner(strings.NewReader(script))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || (f[0] != "kernel" && f[0] != "initrd") {
			continue
		}
		for _, a := range f[1:] {
			if strings.HasPrefix(a, "http://") {
				if _, err := get(a); err != nil {
					return err
				}
				n++
				break
			}
		}
	}
	if n != 2 {
		return fmt.Errorf("script names %d of kernel and initrd:\n%s", n, script)
	}
	return os.WriteFile(marker, []byte(mac), 0o644)
}

var nsCounter atomic.Int32

// TestNodeReinstallPower: `dodai node reinstall w1 --power` resets the
// worker so that it powers off, waits for its BMC (OpenIPMI's ipmi_sim,
// real IPMI over LAN) to report it off, powers it on booting from the
// network once, follows it through a real `dodai netboot` (its iPXE
// script, kernel and initramfs fetched by MAC), finds it in maintenance
// mode and installs it again. The machine behind the BMC is the fake
// Talos node: powered off when Talos powers off, up in maintenance mode
// once its network boot fetched what netboot served.
func TestNodeReinstallPower(t *testing.T) {
	testutil.NeedTools(t, "hack/deps/power.apt", "ipmi_sim", "ipmitool")
	ctx := testCtx(t, 5*time.Minute)
	tc := newCluster(t, 1, 1)
	w1 := tc.Nodes["w1"]
	mac := tc.macOf(t, "w1")

	// dodai netboot (proxy mode, HTTP on the namespace's loopback) with
	// small stand-ins for the Talos kernel and initramfs.
	ns := fmt.Sprintf("dodai-d2p-%d-%d", os.Getpid(), nsCounter.Add(1))
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	if out, err := exec.Command("ip", "-n", ns, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v: %s", err, out)
	}
	for _, f := range []string{"vmlinuz", "initramfs.xz"} {
		if err := os.MkdirAll(filepath.Join(tc.Dir, "assets", "amd64"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(tc.Dir, "assets", "amd64", f), []byte(strings.Repeat(f, 4096)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	nlog := filepath.Join(t.TempDir(), "netboot.log")
	lf, err := os.Create(nlog)
	if err != nil {
		t.Fatal(err)
	}
	nb := exec.Command("ip", "netns", "exec", ns, self, "-C", tc.Dir, "netboot", "--interface", "lo", "--http-addr", "127.0.0.1:8080", "--no-tftp")
	nb.Env = append(os.Environ(), envExec+"=dodai")
	nb.Stdout, nb.Stderr = lf, lf
	if err := nb.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = nb.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = nb.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = nb.Process.Kill()
			<-done
		}
		lf.Close()
	})

	// The BMC: ipmi_sim on loopback; the lab's chassis_control script
	// starts the machine's command for the boot device it was told.
	bdir := t.TempDir()
	hook, err := lab.WriteHook(bdir)
	if err != nil {
		t.Fatal(err)
	}
	mdir, marker := filepath.Join(bdir, "machine"), filepath.Join(bdir, "netbooted")
	if err := lab.WriteMachine(mdir, map[string][]string{
		lab.BootDisk: {"sleep", "600"},
		lab.BootPXE:  {"env", envExec + "=pxe", "ip", "netns", "exec", ns, self, "http://127.0.0.1:8080", mac, marker},
	}); err != nil {
		t.Fatal(err)
	}
	var port int
	var sim lab.Proc
	for attempt := 0; ; attempt++ {
		port = freeUDPPort(t)
		err := lab.WriteSim(filepath.Join(bdir, "bmc"), lab.SimConfig{Name: "w1", Addr: "127.0.0.1", Port: port, Username: "admin", Password: "s3cret",
			ChassisControl: lab.HookCommand(hook, mdir)})
		if err != nil {
			t.Fatal(err)
		}
		if sim, err = lab.StartSim(filepath.Join(bdir, "bmc"), ""); err == nil {
			break
		}
		if attempt == 3 {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		sim.Stop(5 * time.Second)
		_ = lab.PowerOff(mdir) // the machine's process, by its recorded PID
	})

	// cluster.yaml gets the worker's BMC; its credentials go to
	// bmc-credentials.yaml.
	path := filepath.Join(tc.Dir, cluster.FileName)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	withBMC := strings.Replace(string(b), "    - name: w1\n", fmt.Sprintf("    - name: w1\n      bmc: {address: 127.0.0.1, port: %d, cipherSuite: 3}\n", port), 1)
	if withBMC == string(b) {
		t.Fatalf("no w1 in\n%s", b)
	}
	if err := os.WriteFile(path, []byte(withBMC), 0o644); err != nil {
		t.Fatal(err)
	}

	// The worker runs (booted from its disk, as the BMC sees it).
	target := power.Target{Node: "w1", Protocol: "ipmi", Address: "127.0.0.1", Port: port, CipherSuite: 3, Username: "admin", Password: "s3cret"}
	if r := power.Run(ctx, []power.Target{target}, power.Request{Action: power.PowerOn, Timeout: 30 * time.Second})[0]; r.Err != nil {
		t.Fatalf("power on: %v", r.Err)
	}
	diskPID := lab.PID(mdir)
	if diskPID == 0 {
		t.Fatal("the machine is not running after power on")
	}

	// Without credentials the command refuses before it changes anything.
	code, out, errOut := tc.dodai(ctx, "node", "reinstall", "w1", "--power", "--network", tc.Net, "--poll-interval", "20ms")
	if code == 0 || !strings.Contains(errOut, "no BMC username or password for node \"w1\"") || w1.Count("Reset") != 0 {
		t.Fatalf("reinstall --power without credentials: exit %d, %d resets\n%s%s", code, w1.Count("Reset"), out, errOut)
	}
	if err := os.WriteFile(filepath.Join(tc.Dir, "bmc-credentials.yaml"), []byte("default: {username: admin, password: s3cret}\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	// The machine: off when Talos powers off; up in maintenance mode once
	// its network boot is done.
	machine := make(chan error, 1)
	go func() {
		for {
			select {
			case <-ctx.Done():
				machine <- ctx.Err()
				return
			case <-time.After(20 * time.Millisecond):
			}
			if w1.Phase() != "off" {
				continue
			}
			if _, err := os.Stat(marker); err == nil {
				machine <- w1.PowerOn()
				return
			}
			if lab.PID(mdir) == diskPID {
				if err := lab.PowerOff(mdir); err != nil {
					machine <- err
					return
				}
			}
		}
	}()

	start := time.Now()
	code, out, errOut = tc.dodai(ctx, "node", "reinstall", "w1", "--power", "--network", tc.Net, "--poll-interval", "20ms", "--log-format", "json")
	took := time.Since(start)
	dump := func() string {
		return fmt.Sprintf("%s%s\n--- netboot ---\n%s\n--- machine ---\n%s", out, errOut, read(nlog), read(filepath.Join(mdir, "console.log")))
	}
	if code != 0 {
		t.Fatalf("reinstall --power: exit %d\n%s", code, dump())
	}
	select {
	case err := <-machine:
		if err != nil {
			t.Fatalf("machine: %v\n%s", err, dump())
		}
	case <-ctx.Done():
		t.Fatal("machine never powered on")
	}
	show(t, "node reinstall w1 --power", out, "")
	t.Logf("reinstall --power took %s", took.Round(100*time.Millisecond))

	// Talos was asked to power off, not to reboot from its disk.
	if _, d := callTime(w1, "Reset"); d != "graceful=true reboot=false wipe=STATE,EPHEMERAL mode=ALL" {
		t.Fatalf("w1 reset: %q", d)
	}
	// The BMC saw: on from disk (the test), then on with PXE once.
	if got := lab.Boots(mdir); !slices.Equal(got, []string{lab.BootDisk, lab.BootPXE}) {
		t.Fatalf("boots %v, want [disk pxe]\n%s", got, dump())
	}
	// In order: reset, powered on through the network, back in
	// maintenance mode, installed with a second config.
	want := []string{"Talos reset", "powered on, network boot once", "back in maintenance mode", "installed again"}
	last := -1
	for _, s := range want {
		i := strings.Index(out, s)
		if i < last {
			t.Fatalf("step %q missing or out of order:\n%s", s, dump())
		}
		last = i
	}
	// Powered on only once the BMC said off (not a cycle of a machine
	// still shutting down), and followed until netboot served its kernel.
	if !strings.Contains(out, "was off: powered on, PXE once") || !strings.Contains(errOut, `"msg":"powered off after the reset"`) {
		t.Fatalf("powered on before the machine was off:\n%s", dump())
	}
	if !strings.Contains(out, "netboot stage kernel") && !strings.Contains(out, "netboot stage initramfs") {
		t.Fatalf("the power step does not say how far netboot saw it:\n%s", dump())
	}
	if n := len(w1.Applied()); n != 2 || w1.Phase() != "running" {
		t.Fatalf("w1: %d configs applied, phase %s\n%s", n, w1.Phase(), dump())
	}
}

func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

func read(path string) string {
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err.Error()
	}
	return string(b)
}
