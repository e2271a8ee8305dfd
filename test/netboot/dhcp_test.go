package netboot_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// udhcpcScript records the bound lease and configures the address, so the
// client can then talk HTTP from it.
const udhcpcScript = `#!/bin/sh
case "$1" in
bound|renew)
  ip addr flush dev "$interface"
  ip addr add "$ip/${mask:-24}" dev "$interface"
  env | sort > "$0.$1.env"
  ;;
esac
exit 0
`

// dhclientScript does the same for ISC dhclient.
const dhclientScript = `#!/bin/sh
case "$reason" in
BOUND|RENEW|REBOOT|REBIND)
  ip addr flush dev "$interface"
  ip addr add "$new_ip_address/24" dev "$interface"
  env | sort > "$0.env"
  ;;
esac
exit 0
`

func envFile(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("client recorded no lease (%v)", err)
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = v
		}
	}
	return m
}

// bridgeLAN makes a bridge br0 (10.99.0.1/24) in srv and n client
// namespaces each with eth0 (MAC given) on it.
func bridgeLAN(t *testing.T, srv *netns, macs ...string) []*netns {
	t.Helper()
	srv.run(t, "ip", "link", "add", "br0", "type", "bridge", "forward_delay", "0", "stp_state", "0")
	srv.run(t, "ip", "addr", "add", "10.99.0.1/24", "dev", "br0")
	srv.run(t, "ip", "link", "set", "br0", "up")
	var out []*netns
	for i, mac := range macs {
		c := newNS(t)
		port := fmt.Sprintf("p%d", i)
		veth(t, srv, port, c, "eth0")
		srv.run(t, "ip", "link", "set", port, "master", "br0")
		c.run(t, "ip", "link", "set", "eth0", "address", mac)
		out = append(out, c)
	}
	return out
}

func udhcpc(t *testing.T, c *netns, dir, name string, extra ...string) map[string]string {
	t.Helper()
	script := filepath.Join(dir, name+".sh")
	write(t, script, udhcpcScript)
	os.Chmod(script, 0o755)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	args := append([]string{"udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "5", "-T", "1", "-s", script}, extra...)
	start := time.Now()
	if out, err := c.cmd(ctx, "busybox", args...).CombinedOutput(); err != nil {
		t.Fatalf("udhcpc %v: %v\n%s", extra, err, out)
	}
	t.Logf("udhcpc %s bound in %s", name, time.Since(start).Round(time.Millisecond))
	return envFile(t, script+".bound.env")
}

func dhclient(t *testing.T, c *netns, dir, name string) map[string]string {
	t.Helper()
	script := filepath.Join(dir, name+".sh")
	write(t, script, dhclientScript)
	os.Chmod(script, 0o755)
	os.Remove(script + ".env")
	pidf := filepath.Join(dir, name+".pid")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	out, err := c.cmd(ctx, "dhclient", "-4", "-1", "-v", "-sf", script, "-lf", filepath.Join(dir, name+".leases"), "-pf", pidf, "eth0").CombinedOutput()
	// dhclient daemonizes after binding: kill it by its pidfile.
	if b, e := os.ReadFile(pidf); e == nil {
		var pid int
		fmt.Sscan(string(b), &pid)
		if pid > 1 {
			exec.Command("kill", fmt.Sprint(pid)).Run()
		}
	}
	if err != nil {
		t.Fatalf("dhclient: %v\n%s", err, out)
	}
	t.Logf("dhclient %s bound in %s", name, time.Since(start).Round(time.Millisecond))
	return envFile(t, script+".env")
}

func curl(t *testing.T, c *netns, args ...string) (code string, body string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := c.cmd(ctx, "curl", append([]string{"-sS", "-o", "-", "-w", "\n%{http_code}"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("curl %v: %v\n%s", args, err, out)
	}
	s := string(out)
	i := strings.LastIndex(s, "\n")
	return s[i+1:], s[:i]
}

func TestDHCPModeRealClients(t *testing.T) {
	need(t, "ip", "busybox", "dhclient", "curl")
	const (
		macKnown = "52:54:00:aa:00:01" // cp1, reserved 10.99.0.11
		macD     = "52:54:00:aa:00:02" // dhclient
		macPXE   = "52:54:00:aa:00:03" // PXE-flavoured udhcpc
		macLate  = "52:54:00:aa:00:04" // after the restart
		macCrash = "52:54:00:aa:00:05" // after a crash (SIGKILL)
	)
	dir := writeCluster(t, "dhcp", nil, testNode{"cp1", "controlplane", macKnown, "10.99.0.11/24"})
	assets := fakeAssets(t, 3<<20)
	srv := newNS(t)
	cs := bridgeLAN(t, srv, macKnown, macD, macPXE, macLate, macCrash)
	work := t.TempDir()
	args := []string{"-C", dir, "--interface", "br0", "--mode", "dhcp", "--assets", assets, "--ipxe-dir", "/usr/lib/ipxe"}
	logPath := filepath.Join(work, "dodai.log")
	d := startDodai(t, srv, logPath, args...)

	// udhcpc on the known machine gets its reservation.
	e := udhcpc(t, cs[0], work, "known")
	if e["ip"] != "10.99.0.11" || e["router"] != "10.99.0.1" || e["dns"] != "10.99.0.1" || e["subnet"] != "255.255.255.0" || e["lease"] != "3600" {
		t.Fatalf("known machine lease: %v", e)
	}
	// dhclient gets a pool address.
	ed := dhclient(t, cs[1], work, "dhclient")
	ipD := ed["new_ip_address"]
	if !strings.HasPrefix(ipD, "10.99.0.1") || ipD == "10.99.0.11" {
		t.Fatalf("dhclient lease: %v", ed)
	}
	// A PXE-flavoured client also gets the boot file.
	ep := udhcpc(t, cs[2], work, "pxe", "-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x5d:0000")
	if ep["boot_file"] != "undionly.kpxe" || ep["siaddr"] != "10.99.0.1" || ep["ip"] == ipD {
		t.Fatalf("PXE client lease: %v", ep)
	}

	// HTTP: the known machine fetches its own config from its address...
	code, body := curl(t, cs[0], "http://10.99.0.1:8080/config?mac="+macKnown)
	if code != "200" || !strings.Contains(body, "hostname: cp1") || !strings.Contains(body, "type: controlplane") {
		t.Fatalf("own config: %s %q", code, body)
	}
	// ...nobody else gets it (other address, spoofed mac parameter).
	if code, body := curl(t, cs[1], "http://10.99.0.1:8080/config?mac="+macKnown); code != "403" || strings.Contains(body, "cp1") {
		t.Fatalf("config from another machine: %s %q", code, body)
	}
	if code, _ := curl(t, cs[1], "http://10.99.0.1:8080/config?mac="+macD); code != "403" {
		t.Fatalf("config for unknown machine: %s", code)
	}
	// Script and assets with Range.
	if code, body := curl(t, cs[1], "http://10.99.0.1:8080/boot.ipxe?mac="+macKnown+"&arch=x86_64"); code != "200" || !strings.Contains(body, "talos.config=http://10.99.0.1:8080/config?mac=${mac}") {
		t.Fatalf("script: %s\n%s", code, body)
	}
	want, _ := os.ReadFile(filepath.Join(assets, "amd64", "vmlinuz"))
	if code, body := curl(t, cs[1], "-r", "1000-1999", "http://10.99.0.1:8080/assets/amd64/vmlinuz"); code != "206" || body != string(want[1000:2000]) {
		t.Fatalf("range: %s len %d", code, len(body))
	}
	if code, body := curl(t, cs[1], "http://10.99.0.1:8080/assets/amd64/vmlinuz"); code != "200" || body != string(want) {
		t.Fatalf("full asset: %s, %d bytes, want %d", code, len(body), len(want))
	}
	if code, body := curl(t, cs[1], "http://10.99.0.1:8080/metrics"); code != "200" || !strings.Contains(body, `dodai_netboot_dhcp_requests_total{port="67",reply="ACK",type="REQUEST"}`) || !strings.Contains(body, `dodai_netboot_machines{stage="config"} 1`) {
		t.Fatalf("metrics: %s\n%s", code, body)
	}

	// Restart while machines are up: leases survive.
	stop(t, d)
	if d.cmd.ProcessState.ExitCode() != 0 {
		b, _ := os.ReadFile(logPath)
		t.Fatalf("dodai exit code %d on SIGTERM:\n%s", d.cmd.ProcessState.ExitCode(), b)
	}
	var lf struct {
		Leases []struct{ MAC, IP string }
	}
	b, err := os.ReadFile(filepath.Join(dir, "state", "leases.json"))
	if err != nil || json.Unmarshal(b, &lf) != nil || len(lf.Leases) != 3 { // Close folded the journal in
		t.Fatalf("leases.json: %v %s", err, b)
	}
	var machines struct {
		Machines []struct{ MAC, IP, Stage, Node string }
	}
	b, _ = os.ReadFile(filepath.Join(dir, "state", "machines.json"))
	if json.Unmarshal(b, &machines) != nil || len(machines.Machines) != 3 || machines.Machines[0].Node != "cp1" || machines.Machines[0].Stage != "config" {
		t.Fatalf("machines.json: %s", b)
	}
	d2 := startDodai(t, srv, filepath.Join(work, "dodai2.log"), args...)
	el := udhcpc(t, cs[3], work, "late")
	for _, used := range []string{"10.99.0.11", ipD, ep["ip"]} {
		if el["ip"] == used {
			t.Fatalf("address %s handed out twice after restart", used)
		}
	}
	// dhclient re-requests its address after the restart (INIT-REBOOT) and keeps it.
	ed2 := dhclient(t, cs[1], work, "dhclient")
	if ed2["new_ip_address"] != ipD {
		t.Fatalf("dhclient lost %s after restart: %v", ipD, ed2["new_ip_address"])
	}

	// Crash (SIGKILL, no clean shutdown): the journal still has every
	// lease handed out, including the one bound just before.
	syscall.Kill(-d2.cmd.Process.Pid, syscall.SIGKILL)
	<-d2.done
	startDodai(t, srv, filepath.Join(work, "dodai3.log"), args...)
	ec := udhcpc(t, cs[4], work, "crash")
	for _, used := range []string{"10.99.0.11", ipD, ep["ip"], el["ip"]} {
		if ec["ip"] == used {
			t.Fatalf("address %s handed out twice after a crash", used)
		}
	}
}

func TestProxyModeBesideDnsmasq(t *testing.T) {
	need(t, "ip", "busybox", "dnsmasq", "curl")
	const macPXE, macPlain, macEFI, macDh = "52:54:00:bb:00:01", "52:54:00:bb:00:02", "52:54:00:bb:00:03", "52:54:00:bb:00:04"
	dir := writeCluster(t, "proxy", nil, testNode{"cp1", "controlplane", macPXE, ""})
	srv := newNS(t)
	cs := bridgeLAN(t, srv, macPXE, macPlain, macEFI, macDh)
	work := t.TempDir()
	// The site's DHCP server: plain dnsmasq (no PXE options) in its own namespace.
	site := newNS(t)
	veth(t, srv, "psite", site, "eth0")
	srv.run(t, "ip", "link", "set", "psite", "master", "br0")
	site.run(t, "ip", "addr", "add", "10.99.0.2/24", "dev", "eth0")
	startSiteDHCP(t, site, work, "255.255.255.0")

	dlog := filepath.Join(work, "dodai.log")
	startDodai(t, srv, dlog, "-C", dir, "--interface", "br0", "--assets", fakeAssets(t, 1024), "--ipxe-dir", "/usr/lib/ipxe")
	if b, _ := os.ReadFile(dlog); !strings.Contains(string(b), "machine configs are not served over HTTP (proxy mode)") {
		t.Fatalf("no startup line about config serving:\n%s", b)
	}

	self, _ := os.Executable()
	probe := func(c *netns, name string) string {
		p := filepath.Join(work, name+".probe")
		c.start(t, p, []string{envProbe + "=listen"}, self, "eth0", "6")
		waitLog(t, p, "ready", nil, 5*time.Second)
		return p
	}
	// PXE-flavoured udhcpc: the site server leases, dodai adds boot info.
	p := probe(cs[0], "pxe")
	// udhcpc is no PXE client: it takes whichever offer comes first. From
	// the site server that is an address; from dodai it must be 0.0.0.0
	// plus the boot file (a real PXE ROM merges both offers).
	e := udhcpc(t, cs[0], work, "pxe", "-B", "-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x5d:0000")
	switch e["serverid"] {
	case "10.99.0.2":
		if !strings.HasPrefix(e["ip"], "10.99.0.1") {
			t.Fatalf("site lease: %v", e)
		}
	case "10.99.0.1":
		if e["ip"] != "0.0.0.0" || e["boot_file"] != "undionly.kpxe" || e["opt43"] != "060108ff" {
			t.Fatalf("proxy ACK: ip %s file %s 43 %s", e["ip"], e["boot_file"], e["opt43"])
		}
	default:
		t.Fatalf("lease from %q", e["serverid"])
	}
	// Plain client: only the site server answers.
	pp := probe(cs[1], "plain")
	udhcpc(t, cs[1], work, "plain", "-B")
	// ISC dhclient, a plain client too: its lease comes from the site server.
	pd := probe(cs[3], "dhclient")
	if e := dhclient(t, cs[3], work, "dhclient"); e["new_dhcp_server_identifier"] != "10.99.0.2" || !strings.HasPrefix(e["new_ip_address"], "10.99.0.1") {
		t.Fatalf("dhclient lease beside the proxy: server %s ip %s", e["new_dhcp_server_identifier"], e["new_ip_address"])
	}
	time.Sleep(1500 * time.Millisecond) // let late replies arrive before reading
	var proxyOffer, siteOffer bool
	for _, r := range readProbe(t, p) {
		if r.Server == "10.99.0.2" && r.Type == "OFFER" && strings.HasPrefix(r.YIAddr, "10.99.0.1") {
			siteOffer = true
		}
		if r.Server != "10.99.0.1" {
			continue
		}
		if r.YIAddr != "0.0.0.0" {
			t.Fatalf("proxy handed out an address: %+v", r)
		}
		if r.Type == "OFFER" {
			proxyOffer = true
			if r.File != "undionly.kpxe" || r.Class != "PXEClient" || string(r.Opt43) != "\x06\x01\x08\xff" {
				t.Fatalf("proxy offer: %+v", r)
			}
		}
	}
	if !proxyOffer || !siteOffer {
		t.Fatalf("no proxy offer seen: %+v", readProbe(t, p))
	}
	for _, r := range append(readProbe(t, pp), readProbe(t, pd)...) {
		if r.Server == "10.99.0.1" && (r.ClientHW == macPlain || r.ClientHW == macDh) {
			t.Fatalf("proxy answered a non-PXE client: %+v", r)
		}
	}
	// UEFI-style ProxyDHCP REQUEST to port 4011 from the leased address.
	cs[2].run(t, "ip", "addr", "add", "10.99.0.150/24", "dev", "eth0")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := cs[2].cmd(ctx, self, "10.99.0.150", "10.99.0.1:4011", macEFI)
	cmd.Env = append(os.Environ(), envProbe+"=req4011")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("4011 request: %v\n%s", err, out)
	}
	var r seenReply
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("4011 reply %q: %v", out, err)
	}
	if r.Type != "ACK" || r.File != "snponly.efi" || r.YIAddr != "0.0.0.0" || r.Server != "10.99.0.1" || r.Class != "PXEClient" {
		t.Fatalf("4011 reply: %+v", r)
	}
	// No config over HTTP in proxy mode by default: not even from the
	// address the known machine claimed in its own REQUEST (that is the
	// attack: anyone can claim it). The script boots it into maintenance.
	if code, body := curl(t, cs[2], "http://10.99.0.1:8080/config?mac="+macPXE); code != "404" || strings.Contains(body, "cp1") {
		t.Fatalf("config in proxy mode: %s %q", code, body)
	}
	if code, body := curl(t, cs[2], "http://10.99.0.1:8080/boot.ipxe?mac="+macPXE+"&arch=x86_64"); code != "200" || strings.Contains(body, "talos.config") {
		t.Fatalf("proxy-mode script: %s\n%s", code, body)
	}
}

// startSiteDHCP runs a site's plain DHCP server in ns: dnsmasq on eth0
// handing out 10.99.0.100-199 with netmask mask, no PXE options, its
// files in work (dnsmasq.log, dnsmasq.leases). It returns once dnsmasq
// serves.
func startSiteDHCP(t *testing.T, ns *netns, work, mask string) {
	t.Helper()
	conf := filepath.Join(work, "dnsmasq.conf")
	write(t, conf, fmt.Sprintf("port=0\ninterface=eth0\nbind-interfaces\ndhcp-authoritative\ndhcp-range=10.99.0.100,10.99.0.199,%s,1h\ndhcp-leasefile=%s\nno-ping\nlog-dhcp\nuser=root\n", mask, filepath.Join(work, "dnsmasq.leases")))
	dl := filepath.Join(work, "dnsmasq.log")
	ns.start(t, dl, nil, "dnsmasq", "--keep-in-foreground", "--log-facility=-", "--conf-file="+conf, "--pid-file="+filepath.Join(work, "dnsmasq.pid"))
	waitLog(t, dl, "DHCP, IP range", nil, 10*time.Second)
}
