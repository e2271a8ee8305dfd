// Package tftpfirmware boots real UEFI firmware (OVMF under QEMU/TCG) over
// PXE against dodai's TFTP server (internal/tftp), inside a network
// namespace the test creates. dnsmasq serves DHCP only (TFTP off); the
// server process is this test binary re-executed inside the namespace.
package tftpfirmware

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dodai-dev/dodai/internal/testutil"
	"github.com/dodai-dev/dodai/internal/tftp"
)

const helperEnv = "DODAI_TFTPFIRMWARE_SERVER"

// event is what the helper prints per transfer.
type event struct {
	File       string
	Bytes      int64
	BlockSize  int
	WindowSize int
	Err        string
	Abort      bool
}

// TestMain runs the TFTP server when re-executed as the helper.
func TestMain(m *testing.M) {
	if spec := os.Getenv(helperEnv); spec != "" {
		root, addr, _ := strings.Cut(spec, "|")
		enc := json.NewEncoder(os.Stdout)
		// Every transfer's debug line goes to stderr (shown with -v or on a
		// failure); DODAI_TFTPFIRMWARE_NO_GSO=1 sends one datagram per
		// block, to compare with the default segmented sends.
		s := &tftp.Server{Root: root, NoSegmentation: os.Getenv("DODAI_TFTPFIRMWARE_NO_GSO") != "",
			Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})), OnTransfer: func(ev tftp.TransferEvent) {
				e := event{File: ev.File, Bytes: ev.Bytes, BlockSize: ev.BlockSize, WindowSize: ev.WindowSize}
				if ev.Err != nil {
					e.Err, e.Abort = ev.Err.Error(), errors.Is(ev.Err, tftp.ErrClientAbort)
				}
				_ = enc.Encode(e)
			}}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		go func() { _, _ = io.Copy(io.Discard, os.Stdin); cancel() }() // parent gone: stop
		if err := s.ListenAndServe(ctx, addr); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// TestOVMFPXE: OVMF's own PXE client (EDK2 Mtftp4) probes tsize, aborts
// with ERROR 8, then fetches snponly.efi with blksize 1468 and windowsize
// 4 from dodai's server; the NBP then starts (iPXE prints its banner).
func TestOVMFPXE(t *testing.T) {
	testutil.NeedRoot(t)
	const ovmfCode, ovmfVars, nbp = "/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd", "/usr/lib/ipxe/snponly.efi"
	testutil.NeedTools(t, "hack/deps/tftp.apt", "ip", "ss", "dnsmasq", "qemu-system-x86_64", ovmfCode, ovmfVars, nbp)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()

	ns := fmt.Sprintf("dodai-tftpfw-%d", os.Getpid())
	run(t, "ip", "netns", "add", ns)
	var procs []*exec.Cmd
	t.Cleanup(func() {
		for _, c := range procs {
			if c.Process != nil {
				_ = c.Process.Kill()
				_ = c.Wait()
			}
		}
		if out, err := exec.Command("ip", "netns", "pids", ns).Output(); err == nil {
			for _, f := range strings.Fields(string(out)) {
				var pid int
				if _, err := fmt.Sscan(f, &pid); err == nil {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		_ = exec.Command("ip", "netns", "del", ns).Run()
	})
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", "br0", "type", "bridge", "forward_delay", "0", "stp_state", "0"},
		{"addr", "add", "10.99.0.1/24", "dev", "br0"},
		{"link", "set", "br0", "up"},
		{"tuntap", "add", "dev", "tap0", "mode", "tap"},
		{"link", "set", "tap0", "master", "br0", "up"},
	} {
		run(t, append([]string{"ip", "-n", ns}, args...)...)
	}

	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(nbp)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "snponly.efi"), want, 0o644); err != nil {
		t.Fatal(err)
	}
	vars, err := os.ReadFile(ovmfVars)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "vars.fd"), vars, 0o644); err != nil {
		t.Fatal(err)
	}

	// dodai's TFTP server: this binary, inside the namespace.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	srv := exec.CommandContext(ctx, "ip", "netns", "exec", ns, self)
	srv.Env = append(os.Environ(), helperEnv+"="+root+"|10.99.0.1:69")
	srv.Stderr = os.Stderr
	stdin, _ := srv.StdinPipe()
	defer stdin.Close()
	out, err := srv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	procs = append(procs, srv)
	events := make(chan event, 16)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var e event
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				events <- e
			}
		}
		close(events)
	}()

	dhcp := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
		"--port=0", "--interface=br0", "--bind-interfaces", "--dhcp-range=10.99.0.100,10.99.0.199,255.255.255.0,1h",
		"--dhcp-boot=snponly.efi,,10.99.0.1", "--no-ping", "--dhcp-leasefile="+filepath.Join(dir, "leases"),
		"--user=root", "--group=root", "--pid-file="+filepath.Join(dir, "dnsmasq.pid"), "--log-facility="+filepath.Join(dir, "dnsmasq.log"))
	if err := dhcp.Start(); err != nil {
		t.Fatal(err)
	}
	procs = append(procs, dhcp)
	waitUDP(t, ns, "10.99.0.1:69")

	serial := filepath.Join(dir, "serial.log")
	sf, err := os.Create(serial)
	if err != nil {
		t.Fatal(err)
	}
	defer sf.Close()
	qemu := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "qemu-system-x86_64", "-accel", "tcg", "-machine", "q35", "-m", "512",
		"-nographic", "-no-reboot",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+ovmfCode,
		"-drive", "if=pflash,format=raw,unit=1,file="+filepath.Join(dir, "vars.fd"),
		"-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no",
		"-device", "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56,romfile=,bootindex=1")
	qemu.Stdout, qemu.Stderr = sf, sf
	if err := qemu.Start(); err != nil {
		t.Fatal(err)
	}
	procs = append(procs, qemu)

	var probe, full *event
	for full == nil {
		select {
		case e, ok := <-events:
			if !ok {
				t.Fatal("TFTP server exited")
			}
			t.Logf("transfer: %+v", e)
			switch {
			case e.Abort && e.Bytes == 0 && probe == nil:
				probe = &e
			case e.Err == "":
				full = &e
			default:
				t.Fatalf("transfer failed: %+v", e)
			}
		case <-ctx.Done():
			b, _ := os.ReadFile(serial)
			t.Fatalf("no complete TFTP transfer before the deadline; serial:\n%s", tail(b))
		}
	}
	if full.File != "snponly.efi" || full.Bytes != int64(len(want)) || full.BlockSize != 1468 || full.WindowSize < 2 {
		t.Fatalf("transfer %+v: want all %d bytes of snponly.efi with blksize 1468 and a window", full, len(want))
	}
	if probe == nil {
		// OVMF 2022.11 always probes tsize first (netboot reference §8).
		t.Fatal("no tsize probe (a transfer aborted with ERROR 8) before the download")
	}
	// The NBP runs: iPXE's banner on the serial console.
	for {
		b, _ := os.ReadFile(serial)
		if strings.Contains(string(b), "iPXE") {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("iPXE did not start; serial:\n%s", tail(b))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitUDP waits until something listens on addr inside ns.
func waitUDP(t *testing.T, ns, addr string) {
	t.Helper()
	_, port, _ := net.SplitHostPort(addr)
	for i := 0; i < 100; i++ {
		out, _ := exec.Command("ip", "netns", "exec", ns, "ss", "-Hlun", "sport = :"+port).Output()
		if strings.Contains(string(out), addr) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("TFTP server not listening on %s", addr)
}

func tail(b []byte) string {
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return strings.ReplaceAll(string(b), "\r", "")
}
