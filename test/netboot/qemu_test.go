package netboot_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/dodai-dev/dodai/internal/incluster/incltest"
	"github.com/dodai-dev/dodai/internal/lab"
)

// kernelAndInitramfs returns the probe system (the host's Debian kernel and
// a busybox initramfs that DHCPs, fetches its talos.config and powers off),
// built by the lab package that also netboots it in test/lab.
func kernelAndInitramfs(t *testing.T) (kernel, initramfs string) {
	t.Helper()
	kernel, initramfs, err := lab.BuildProbe(t.TempDir(), lab.ProbeOptions{PowerOff: true})
	if err != nil {
		t.Fatalf("%v (run hack/test.sh to install the test packages)", err)
	}
	return kernel, initramfs
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatalf("%v (run hack/test.sh to install the test packages)", err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	out.Close()
}

type firmware string

const (
	bios firmware = "bios"
	uefi firmware = "uefi"
	// uefiHTTP is OVMF with no TFTP anywhere: PXEv4 and PXEv6 fail, then
	// the firmware's UEFI HTTP boot (option 60 HTTPClient, arch 16) loads
	// snponly.efi from dodai's http:// URL.
	uefiHTTP firmware = "uefi-http"
)

// TestQEMUBoot boots real firmware over a tap in a namespace into the probe
// kernel via dodai netboot: BIOS (SeaBIOS + QEMU's iPXE ROM → HTTP script)
// and UEFI (OVMF PXE → TFTP snponly.efi → iPXE → HTTP script), in proxy mode
// beside a separate DHCP server and in dhcp mode. The machine is listed in
// cluster.yaml, so in dhcp mode (and in proxy mode with --serve-configs) it
// must come up with its own config; in proxy mode by default it must come
// up in maintenance mode, without any config URL.
func TestQEMUBoot(t *testing.T) {
	need(t, "ip", "qemu-system-x86_64", "dnsmasq", "cpio", "gzip", "/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/lib/ipxe/qemu/efi-virtio.rom")
	kernel, initrd := kernelAndInitramfs(t)
	assets := t.TempDir()
	copyFile(t, kernel, filepath.Join(assets, "kernel-amd64"), 0o644)
	copyFile(t, initrd, filepath.Join(assets, "initramfs-amd64.xz"), 0o644)
	for i, c := range []struct {
		fw    firmware
		mode  string
		serve bool // --serve-configs
	}{{uefiHTTP, "dhcp", false}, {bios, "dhcp", false}, {uefi, "proxy", false}, {bios, "proxy", true}, {uefi, "dhcp", false}} { // the slowest first, so it overlaps the others
		name := fmt.Sprintf("%s-%s", c.fw, c.mode)
		if c.serve {
			name += "-serve-configs"
		}
		t.Run(name, func(t *testing.T) {
			if runtime.NumCPU() > 1 {
				t.Parallel() // one TCG vCPU each
			}
			// bios-dhcp also restarts dodai while the machine boots (after
			// its initramfs was sent, before its OS DHCPs and fetches the
			// config): the lease must survive and the config still work.
			restart := c.fw == bios && c.mode == "dhcp"
			qemuBoot(t, c.fw, c.mode, c.serve, assets, fmt.Sprintf("52:54:00:%02x:%02x:%02x", os.Getpid()&0xff, (os.Getpid()>>8)&0xff, i), restart, nil)
		})
	}
}

// qemuBoot boots one machine; with kc, through `dodai netboot
// --in-cluster` over that apiserver (namespace incltest.Namespace) instead
// of the local server.
func qemuBoot(t *testing.T, fw firmware, mode string, serve bool, assets, mac string, restart bool, kc *incltest.Cluster) {
	work := t.TempDir()
	dir := writeCluster(t, mode, nil, testNode{"node1", "controlplane", mac, ""})
	ns := newNS(t)
	ns.run(t, "ip", "link", "add", "br0", "type", "bridge", "forward_delay", "0", "stp_state", "0")
	ns.run(t, "ip", "addr", "add", "10.99.0.1/24", "dev", "br0")
	ns.run(t, "ip", "addr", "add", "fd99::1/64", "dev", "br0", "nodad")
	ns.run(t, "ip", "link", "set", "br0", "up")
	ns.run(t, "ip", "tuntap", "add", "dev", "tap0", "mode", "tap")
	ns.run(t, "ip", "link", "set", "tap0", "master", "br0", "up")

	dl := filepath.Join(work, "dodai.log")
	dodaiArgs := []string{"-C", dir, "--interface", "br0", "--mode", mode, "--assets", assets, "--ipxe-dir", "/usr/lib/ipxe"}
	if fw == uefiHTTP {
		dodaiArgs = append(dodaiArgs, "--no-tftp")
	}
	if serve {
		dodaiArgs = append(dodaiArgs, "--serve-configs")
	}
	if kc != nil {
		// The apiserver (host loopback) through a unix socket and a
		// forwarder on the same address inside the namespace.
		apiReach(t, kc, work)(ns)
		dodaiArgs = append(dodaiArgs, "--in-cluster", "--kubeconfig", kc.Env.Kubeconfig, "--namespace", incltest.Namespace, "--server-name", "qemu")
	}
	wantConfig := mode == "dhcp" || serve
	dproc := startDodai(t, ns, dl, dodaiArgs...)
	dlog, _ := os.ReadFile(dl)
	haveTFTP := !strings.Contains(string(dlog), "TFTP is off")

	// Helper dnsmasq in the server namespace: IPv6 router advertisements
	// (iPXE otherwise waits ~15 s for one) and, until internal/tftp is in
	// this build, TFTP for the iPXE binaries. Never DHCPv4 (dodai owns 67).
	conf := fmt.Sprintf("port=0\ninterface=br0\nbind-interfaces\nuser=root\nenable-ra\ndhcp-range=fd99::,ra-only,64\nlog-facility=%s\n", filepath.Join(work, "helper-dnsmasq.log"))
	if !haveTFTP && fw != uefiHTTP {
		conf += "enable-tftp\ntftp-root=/usr/lib/ipxe\n"
	}
	write(t, filepath.Join(work, "helper.conf"), conf)
	ns.start(t, filepath.Join(work, "helper.out"), nil, "dnsmasq", "--keep-in-foreground", "--conf-file="+filepath.Join(work, "helper.conf"), "--pid-file="+filepath.Join(work, "helper.pid"))

	if mode == "proxy" {
		// The site's DHCP server, separate namespace on the same bridge.
		site := newNS(t)
		veth(t, ns, "psite", site, "eth0")
		ns.run(t, "ip", "link", "set", "psite", "master", "br0")
		site.run(t, "ip", "addr", "add", "10.99.0.2/24", "dev", "eth0")
		sc := fmt.Sprintf("port=0\ninterface=eth0\nbind-interfaces\ndhcp-authoritative\ndhcp-range=10.99.0.100,10.99.0.199,255.255.255.0,1h\ndhcp-leasefile=%s\nno-ping\nuser=root\n", filepath.Join(work, "site.leases"))
		write(t, filepath.Join(work, "site.conf"), sc)
		sl := filepath.Join(work, "site.log")
		site.start(t, sl, nil, "dnsmasq", "--keep-in-foreground", "--log-facility=-", "--log-dhcp", "--conf-file="+filepath.Join(work, "site.conf"), "--pid-file="+filepath.Join(work, "site.pid"))
		waitLog(t, sl, "DHCP, IP range", nil, 10*time.Second)
	}

	args := qemuArgs(t, work, fw, mac)
	ql := filepath.Join(work, "qemu.log")
	deadline := 240 * time.Second
	if fw == uefiHTTP {
		deadline = 360 * time.Second // OVMF's failing PXE attempts come first
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	start := time.Now()
	lf, _ := os.Create(ql)
	q := ns.cmd(ctx, "qemu-system-x86_64", args...)
	q.Stdout, q.Stderr = lf, lf
	q.Stdin = nil
	if err := q.Start(); err != nil {
		t.Fatal(err)
	}
	qdone := make(chan error, 1)
	go func() { qdone <- q.Wait() }()
	dl2 := filepath.Join(work, "dodai-restarted.log")
	if restart {
		waitLog(t, dl, `"stage":"initramfs"`, dproc, 200*time.Second)
		stop(t, dproc)
		startDodai(t, ns, dl2, dodaiArgs...)
	}
	err := <-qdone
	lf.Close()
	elapsed := time.Since(start)
	out, _ := os.ReadFile(ql)
	serverLog, _ := os.ReadFile(dl)
	if restart {
		l2, _ := os.ReadFile(dl2)
		serverLog = append(append(serverLog, "--- restarted ---\n"...), l2...)
	}
	dump := func() string {
		return fmt.Sprintf("--- qemu (%s) ---\n%s\n--- dodai ---\n%s", elapsed.Round(time.Millisecond), tail(string(out), 4000), tail(string(serverLog), 6000))
	}
	if ctx.Err() != nil {
		t.Fatalf("%s/%s: no power-off within the deadline\n%s", fw, mode, dump())
	}
	if err != nil {
		t.Fatalf("qemu: %v\n%s", err, dump())
	}
	s := string(out)
	if !strings.Contains(s, "PROBE: dhcp ok mac="+mac) {
		t.Fatalf("probe kernel did not come up on the network\n%s", dump())
	}
	switch {
	case wantConfig && !strings.Contains(s, "PROBE: config fetched: hostname: node1"):
		t.Fatalf("machine did not get its config\n%s", dump())
	case !wantConfig && !strings.Contains(s, "PROBE: no talos.config: maintenance mode"):
		t.Fatalf("machine did not boot into maintenance mode\n%s", dump())
	}
	if serve && mode == "proxy" && !strings.Contains(string(serverLog), "--serve-configs in proxy mode") {
		t.Errorf("no startup warning about --serve-configs in proxy mode\n%s", dump())
	}
	if restart {
		// The OS got the same address iPXE got before the restart.
		m := regexp.MustCompile(`"stage":"ipxe".*?"ip":"([0-9.]+)"|"ip":"([0-9.]+)","stage":"ipxe"`).FindSubmatch(serverLog)
		if m == nil {
			t.Fatalf("no iPXE address in the log\n%s", dump())
		}
		ip := string(m[1]) + string(m[2])
		if !strings.Contains(s, "PROBE: dhcp ok mac="+mac+" ip="+ip+"/") {
			t.Fatalf("address changed across the restart (iPXE had %s)\n%s", ip, dump())
		}
		l2, _ := os.ReadFile(dl2)
		if !strings.Contains(string(l2), `"msg":"served machine config","node":"node1"`) {
			t.Fatalf("the restarted server did not serve the config\n%s", dump())
		}
	}
	// The chain went through dodai: DHCP decision, script, kernel,
	// initramfs, config (when served).
	wants := []string{`"stage":"ipxe"`, `"stage":"kernel"`, `"stage":"initramfs"`}
	if wantConfig {
		wants = append(wants, `"stage":"config"`, `"msg":"served machine config","node":"node1"`)
	} else if strings.Contains(string(serverLog), `"msg":"served machine config"`) {
		t.Errorf("a config was served in proxy mode without --serve-configs\n%s", dump())
	}
	for _, want := range wants {
		if !strings.Contains(string(serverLog), want) {
			t.Errorf("server log lacks %s\n%s", want, dump())
		}
	}
	if fw == uefiHTTP && (!strings.Contains(s, "Start HTTP Boot over IPv4") || !strings.Contains(string(serverLog), `"stage":"dhcp"`)) {
		t.Errorf("no UEFI HTTP boot\n%s", dump())
	}
	if fw == uefi {
		// OVMF loaded snponly.efi over TFTP: from dodai's own TFTP server
		// when this build has one, else from the helper dnsmasq.
		if haveTFTP {
			if !regexp.MustCompile(`"msg":"TFTP transfer complete".*"file":"snponly.efi"`).Match(serverLog) {
				t.Errorf("no complete TFTP transfer of snponly.efi in the server log\n%s", dump())
			}
		} else if hl, _ := os.ReadFile(filepath.Join(work, "helper-dnsmasq.log")); !strings.Contains(string(hl), "snponly.efi") {
			t.Errorf("UEFI did not load snponly.efi over TFTP\n%s", hl)
		}
	}
	if kc != nil {
		inClusterState(t, kc, mac, wantConfig)
	}
	t.Logf("%s/%s: booted (config: %v) in %s", fw, mode, wantConfig, elapsed.Round(100*time.Millisecond))
	if os.Getenv("NB_DUMP") != "" {
		t.Log(dump())
	}
}

// qemuArgs is the QEMU command line of a netboot test machine: one TCG
// vCPU, 512 MiB, a virtio NIC with mac on tap0, booting from the network
// with fw (SeaBIOS + QEMU's iPXE ROM, or OVMF with a private copy of its
// variables in work).
func qemuArgs(t *testing.T, work string, fw firmware, mac string) []string {
	t.Helper()
	args := []string{"-accel", "tcg", "-m", "512", "-nographic", "-no-reboot",
		"-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no"}
	if fw == bios {
		return append(args, "-boot", "n", "-device", "virtio-net-pci,netdev=n0,mac="+mac)
	}
	vars := filepath.Join(work, "vars.fd")
	copyFile(t, "/usr/share/OVMF/OVMF_VARS_4M.fd", vars, 0o644)
	return append(args, "-machine", "q35",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
		"-drive", "if=pflash,format=raw,unit=1,file="+vars,
		// romfile= drops QEMU's iPXE ROM: OVMF does PXE itself.
		"-device", "virtio-net-pci,netdev=n0,mac="+mac+",romfile=,bootindex=1")
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
