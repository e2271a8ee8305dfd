package netboot_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestPXEBootBenchmark is the PXE boot benchmark of hack/bench/pxeboot.sh,
// not a test: it runs only when DODAI_PXE_BENCH names a repetition count.
// Each repetition boots QEMU BIOS (SeaBIOS + iPXE ROM) and UEFI (OVMF PXE →
// TFTP snponly.efi → iPXE) into the probe initramfs, once from dodai
// netboot (dhcp mode) and once from the reference setup Cozystack ran,
// dnsmasq (full DHCP + TFTP) with nginx serving the iPXE script, kernel
// and initramfs. The order of the two alternates from one repetition to
// the next. Both get the same speed-ups: IPv6 router advertisements (a
// dnsmasq beside dodai sends them), no ping before offering, and 175.176
// (no-pxedhcp) for iPXE. The machine is not in cluster.yaml, so both boot
// it into maintenance mode (no config). Time: QEMU start until the probe's
// OS got its address by DHCP, then the durations of that boot's phases
// (bootPhases).
// One JSON line per boot goes to DODAI_PXE_BENCH_OUT (hack/bench/report's
// format). DODAI_PXE_BENCH_LOGS names a directory that keeps each boot's
// console log and server log (FIRMWARE-SERVER-REP.qemu.log, ….server.log).
func TestPXEBootBenchmark(t *testing.T) {
	reps, _ := strconv.Atoi(os.Getenv("DODAI_PXE_BENCH"))
	if reps < 1 {
		t.Skip("benchmark: set DODAI_PXE_BENCH=REPETITIONS (hack/bench/pxeboot.sh)")
	}
	need(t, "ip", "qemu-system-x86_64", "dnsmasq", "nginx", "cpio", "gzip", "/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/lib/ipxe/snponly.efi")
	out := os.Getenv("DODAI_PXE_BENCH_OUT")
	if out == "" {
		out = filepath.Join(t.TempDir(), "pxeboot.jsonl")
	}
	kernel, initrd := kernelAndInitramfs(t)
	assets := t.TempDir()
	copyFile(t, kernel, filepath.Join(assets, "kernel-amd64"), 0o644)
	copyFile(t, initrd, filepath.Join(assets, "initramfs-amd64.xz"), 0o644)
	f, err := os.OpenFile(out, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	servers := []string{"dodai", "dnsmasq+nginx"}
	n := 0
	for rep := 1; rep <= reps; rep++ {
		order := servers
		if rep%2 == 0 {
			order = []string{servers[1], servers[0]}
		}
		for _, fw := range []firmware{bios, uefi} {
			for _, s := range order {
				n++
				mac := fmt.Sprintf("52:54:00:%02x:%02x:%02x", os.Getpid()&0xff, (os.Getpid()>>8)&0xff, n)
				load, _ := os.ReadFile("/proc/loadavg")
				var b bootTimes
				name := fmt.Sprintf("%s-%s-%d", fw, s, rep)
				t.Run(name, func(t *testing.T) { b = pxeBootOnce(t, fw, s, assets, mac, name) })
				if b.total == 0 {
					t.FailNow()
				}
				l1, _ := strconv.ParseFloat(strings.Fields(string(load))[0], 64)
				head, _ := json.Marshal(map[string]any{"bench": "pxeboot", "group": string(fw), "server": s, "rep": rep, "load1": l1})
				fmt.Fprintf(f, "%s,\"m\":%s}\n", head[:len(head)-1], b.metrics())
				t.Logf("%s %s rep %d: %s (%s)", fw, s, rep, b.total.Round(10*time.Millisecond), b)
			}
		}
	}
}

// bootPhases are the console lines that end the phases of a PXE boot, in
// the order they appear, and the report's name for the phase each ends:
// the firmware until iPXE starts (SeaBIOS loading its option ROM; OVMF's
// DHCP and TFTP of snponly.efi), iPXE until the kernel's first line on the
// serial console (iPXE's DHCP, its HTTP downloads, the kernel's
// decompression), and the kernel's boot until the probe initramfs' /init.
// The last phase, /init until the probe's DHCP succeeded, ends the boot.
var bootPhases = []struct{ metric, line string }{
	{"firmware_ms", "iPXE initialising devices"},
	{"ipxe_ms", "Linux version"},
	{"kernel_ms", "PROBE: init started"},
}

// bootTimes is one boot's time from QEMU's start until the probe's DHCP
// succeeded, and when each line of bootPhases first appeared (0: not seen).
type bootTimes struct {
	total time.Duration
	marks []time.Duration
}

// metrics is b as the "m" object of a report line: the total first (the
// metric the report computes ratios for), then each phase's duration in
// boot order, when all marks were seen.
func (b bootTimes) metrics() string {
	var m strings.Builder
	fmt.Fprintf(&m, "{%q:%d", "until_os_dhcp_ms", b.total.Milliseconds())
	if !slices.Contains(b.marks, 0) {
		prev := time.Duration(0)
		for i, p := range bootPhases {
			fmt.Fprintf(&m, ",%q:%d", p.metric, (b.marks[i] - prev).Milliseconds())
			prev = b.marks[i]
		}
		fmt.Fprintf(&m, ",%q:%d", "os_dhcp_ms", (b.total - prev).Milliseconds())
	}
	return m.String() + "}"
}

func (b bootTimes) String() string {
	var s []string
	for i, p := range bootPhases {
		s = append(s, fmt.Sprintf("%s at %s", p.line, b.marks[i].Round(10*time.Millisecond)))
	}
	return strings.Join(s, ", ")
}

// mark records the lines of bootPhases that out shows for the first time,
// at d after QEMU's start.
func (b *bootTimes) mark(out string, d time.Duration) {
	for i, p := range bootPhases {
		if b.marks[i] == 0 && strings.Contains(out, p.line) {
			b.marks[i] = d
		}
	}
}

// pxeBootOnce boots one machine from one server setup in a fresh namespace
// and returns the time from QEMU's start until the probe's DHCP succeeded,
// with the boot's phases (polled every 20 ms, so each is late by up to
// that).
func pxeBootOnce(t *testing.T, fw firmware, server, assets, mac, name string) bootTimes {
	work := t.TempDir()
	if keep := os.Getenv("DODAI_PXE_BENCH_LOGS"); keep != "" {
		t.Cleanup(func() {
			os.MkdirAll(keep, 0o755)
			serverLog := "dodai.log"
			if server != "dodai" {
				serverLog = "dnsmasq.log"
			}
			for from, to := range map[string]string{"qemu.log": ".qemu.log", serverLog: ".server.log"} {
				if b, err := os.ReadFile(filepath.Join(work, from)); err == nil {
					os.WriteFile(filepath.Join(keep, strings.ReplaceAll(name, "+", "-")+to), b, 0o644)
				}
			}
		})
	}
	ns := newNS(t)
	ns.run(t, "ip", "link", "add", "br0", "type", "bridge", "forward_delay", "0", "stp_state", "0")
	ns.run(t, "ip", "addr", "add", "10.99.0.1/24", "dev", "br0")
	ns.run(t, "ip", "addr", "add", "fd99::1/64", "dev", "br0", "nodad")
	ns.run(t, "ip", "link", "set", "br0", "up")
	ns.run(t, "ip", "tuntap", "add", "dev", "tap0", "mode", "tap")
	ns.run(t, "ip", "link", "set", "tap0", "master", "br0", "up")

	// Router advertisements for both (iPXE waits ~15 s for one otherwise).
	conf := "port=0\ninterface=br0\nbind-interfaces\nuser=root\nenable-ra\ndhcp-range=fd99::,ra-only,64\n"
	switch server {
	case "dodai":
		// A node with another MAC: this machine is unknown, so it boots
		// into maintenance mode as it does from dnsmasq.
		dir := writeCluster(t, "dhcp", nil, testNode{"node1", "controlplane", "52:54:00:ff:ff:ff", ""})
		startDodai(t, ns, filepath.Join(work, "dodai.log"), "-C", dir, "--interface", "br0", "--mode", "dhcp", "--assets", assets, "--ipxe-dir", "/usr/lib/ipxe")
	default:
		// The reference: dnsmasq's full DHCP + TFTP as Cozystack ran it,
		// with the same speed-ups, and nginx for the HTTP stage.
		conf += fmt.Sprintf(`dhcp-authoritative
dhcp-range=10.99.0.100,10.99.0.199,255.255.255.0,1h
dhcp-option=option:router,10.99.0.1
dhcp-leasefile=%s
no-ping
enable-tftp
tftp-root=/usr/lib/ipxe
dhcp-match=set:ipxe,175
dhcp-userclass=set:ipxe,iPXE
dhcp-match=set:efi64,option:client-arch,7
dhcp-match=set:efi64,option:client-arch,9
dhcp-boot=tag:!ipxe,tag:!efi64,undionly.kpxe,,10.99.0.1
dhcp-boot=tag:!ipxe,tag:efi64,snponly.efi,,10.99.0.1
dhcp-boot=tag:ipxe,http://10.99.0.1:8080/boot.ipxe
dhcp-option=tag:ipxe,encap:175,176,1
`, filepath.Join(work, "dnsmasq.leases"))
		www := filepath.Join(work, "www")
		os.MkdirAll(www, 0o755)
		for _, a := range []string{"kernel-amd64", "initramfs-amd64.xz"} {
			if err := os.Symlink(filepath.Join(assets, a), filepath.Join(www, a)); err != nil {
				t.Fatal(err)
			}
		}
		// The kernel command line dodai's script uses (maintenance mode).
		write(t, filepath.Join(www, "boot.ipxe"), `#!ipxe
kernel http://10.99.0.1:8080/kernel-amd64 initrd=initramfs.xz talos.platform=metal console=tty0 console=ttyS0 init_on_alloc=1 slab_nomerge pti=on printk.devkmsg=on
initrd --name initramfs.xz http://10.99.0.1:8080/initramfs-amd64.xz
boot
`)
		write(t, filepath.Join(work, "nginx.conf"), fmt.Sprintf(`daemon off;
user root;
worker_processes auto;
pid %s/nginx.pid;
error_log %s/nginx.err;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  default_type application/octet-stream;
  server { listen 10.99.0.1:8080; root %s; }
}
`, work, work, www))
		ns.start(t, filepath.Join(work, "nginx.out"), nil, "nginx", "-c", filepath.Join(work, "nginx.conf"))
	}
	write(t, filepath.Join(work, "dnsmasq.conf"), conf)
	dl := filepath.Join(work, "dnsmasq.log")
	dp := ns.start(t, dl, nil, "dnsmasq", "--keep-in-foreground", "--log-facility=-", "--conf-file="+filepath.Join(work, "dnsmasq.conf"), "--pid-file="+filepath.Join(work, "dnsmasq.pid"))
	waitLog(t, dl, "started, version", dp, 10*time.Second)
	if server != "dodai" {
		waitLog(t, dl, "DHCP, IP range", dp, 10*time.Second)
	}

	args := qemuArgs(t, work, fw, mac)
	ql := filepath.Join(work, "qemu.log")
	ctx, cancel := context.WithTimeout(context.Background(), 240*time.Second)
	defer cancel()
	lf, _ := os.Create(ql)
	defer lf.Close()
	q := ns.cmd(ctx, "qemu-system-x86_64", args...)
	q.Stdout, q.Stderr, q.Stdin = lf, lf, nil
	start := time.Now()
	if err := q.Start(); err != nil {
		t.Fatal(err)
	}
	qdone := make(chan error, 1)
	go func() { qdone <- q.Wait() }()
	want := "PROBE: dhcp ok mac=" + mac
	bt := bootTimes{marks: make([]time.Duration, len(bootPhases))}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-qdone:
			b, _ := os.ReadFile(ql)
			if strings.Contains(string(b), want) {
				// Exited between two polls: the times are upper bounds.
				bt.total = time.Since(start)
				bt.mark(string(b), bt.total)
				return bt
			}
			t.Fatalf("%s from %s: qemu ended (%v) before the probe got its address\n%s", fw, server, err, tail(string(b), 3000))
			return bootTimes{}
		case <-tick.C:
			b, _ := os.ReadFile(ql)
			d := time.Since(start)
			bt.mark(string(b), d)
			if strings.Contains(string(b), want) {
				bt.total = d
				cancel()
				<-qdone
				return bt
			}
		}
	}
}

// TestBootTimesPhases checks how the benchmark cuts a boot into phases:
// each mark is the first poll that shows its line, the phases are the
// differences between marks, and a boot with a mark missing reports only
// its total.
func TestBootTimesPhases(t *testing.T) {
	bt := bootTimes{marks: make([]time.Duration, len(bootPhases))}
	console := []string{
		"SeaBIOS (version 1.16.2)\n",
		"iPXE initialising devices...\n",
		"[    0.000000] Linux version 6.1.0\n",
		"[    2.1] Run /init\nPROBE: init started uptime=2.17[    2.2] tsc: …\n",
		"PROBE: dhcp ok mac=52:54:00:00:00:01 ip=10.99.0.100/24\n",
	}
	out := ""
	for i, c := range console {
		out += c
		bt.mark(out, time.Duration(i+1)*time.Second)
		bt.mark(out, time.Duration(i+1)*time.Second+time.Millisecond) // a later poll changes nothing
	}
	bt.total = 5 * time.Second
	want := `{"until_os_dhcp_ms":5000,"firmware_ms":2000,"ipxe_ms":1000,"kernel_ms":1000,"os_dhcp_ms":1000}`
	if got := bt.metrics(); got != want {
		t.Errorf("metrics = %s, want %s", got, want)
	}
	var m map[string]float64
	if err := json.Unmarshal([]byte(bt.metrics()), &m); err != nil {
		t.Fatalf("metrics are not a JSON object: %v", err)
	}

	partial := bootTimes{marks: make([]time.Duration, len(bootPhases)), total: 3 * time.Second}
	partial.mark("iPXE initialising devices...\nPROBE: dhcp ok\n", time.Second)
	if got, want := partial.metrics(), `{"until_os_dhcp_ms":3000}`; got != want {
		t.Errorf("with the kernel's line missing: metrics = %s, want %s", got, want)
	}
}
