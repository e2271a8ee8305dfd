package netboot_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dodai-dev/dodai/api/v1alpha1"
	"github.com/dodai-dev/dodai/internal/incluster/incltest"
	"github.com/dodai-dev/dodai/internal/incluster/netbootstore"
)

// TestInClusterProxyReplicas runs two `dodai netboot --in-cluster --mode
// proxy` processes (a at 10.99.0.1, b at 10.99.0.2) in two network
// namespaces on one bridge beside the site's DHCP server (plain dnsmasq at
// 10.99.0.3, handing out the addresses), both backed by one real
// kube-apiserver. PXE-flavoured clients DISCOVER and REQUEST: dnsmasq
// offers each an address and both replicas offer boot information only
// (no address, the boot file, PXE vendor options); each client then sends
// its port 4011 REQUEST to one replica (a, b, a), and that replica alone
// writes its Machine (the Machine names it as its boot server). Then a
// known machine (cp1) that no replica wrote yet takes an address from
// dnsmasq with its own plain broadcast REQUEST, as Talos' DHCP does: no
// replica answers it, and exactly one replica writes the address into
// its Machine, at once (long before the 30 s offer grace), the other
// writes nothing, also past the grace. Each replica counts its own apiserver writes
// (dodai_netboot_store_writes_total on its /metrics), cross-checked with
// the apiserver's own count.
func TestInClusterProxyReplicas(t *testing.T) {
	need(t, "ip", "busybox", "dnsmasq", "curl")
	const macKnown = "52:54:00:dd:00:01"
	pxeMACs := []string{"52:54:00:dd:01:01", "52:54:00:dd:01:02", "52:54:00:dd:01:03"}
	kc := incltest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	work := t.TempDir()
	dir := writeCluster(t, "proxy", nil, testNode{"cp1", "controlplane", macKnown, ""})
	assets := fakeAssets(t, 1024)
	lab := newLANLab(t, 2, apiReach(t, kc, work))

	// The site's DHCP server: plain dnsmasq (no PXE options).
	site := lab.join(t, "psite", "")
	site.run(t, "ip", "addr", "add", "10.99.0.3/20", "dev", "eth0")
	startSiteDHCP(t, site, work, "255.255.240.0")

	type replica struct{ name, addr, log string }
	reps := []*replica{{name: "a", addr: "10.99.0.1"}, {name: "b", addr: "10.99.0.2"}}
	for i, r := range reps {
		r.log = filepath.Join(work, "dodai-"+r.name+".log")
		startDodai(t, lab.servers[i], r.log, "--in-cluster", "--kubeconfig", kc.Env.Kubeconfig, "--namespace", incltest.Namespace,
			"--server-name", r.name, "-C", dir, "--mode", "proxy", "--interface", "eth0", "--assets", assets, "--ipxe-dir", "/usr/lib/ipxe")
	}
	// Both replicas must see each other running before a machine is
	// written (which replica owns a broadcast REQUEST depends on it).
	pivoted := pivotedCopy(t, dir, kc, incltest.Namespace)
	out := statusReplicas(t, pivoted, 30*time.Second, "a and b running", func(l map[string]string) bool {
		return strings.Contains(l["a"], "10.99.0.1 ") && strings.HasSuffix(l["a"], "running") &&
			strings.Contains(l["b"], "10.99.0.2 ") && strings.HasSuffix(l["b"], "running")
	})
	replicasPart, _, _ := strings.Cut(out, "\n\n")
	t.Logf("dodai status netboot (the replicas):\n%s", replicasPart)

	// The observer reads each replica's /metrics from the LAN.
	obs := lab.client
	obs.run(t, "ip", "addr", "add", "10.99.0.250/20", "dev", "eth0")
	storeWrites := func() map[string]float64 {
		t.Helper()
		w := map[string]float64{}
		for _, r := range reps {
			code, body := curl(t, obs, "http://"+r.addr+":8080/metrics")
			if code != "200" {
				t.Fatalf("metrics of %s: %s", r.name, code)
			}
			found := false
			for _, l := range strings.Split(body, "\n") {
				if v, ok := strings.CutPrefix(l, "dodai_netboot_store_writes_total "); ok {
					f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
					if err != nil {
						t.Fatalf("metrics of %s: %q: %v", r.name, l, err)
					}
					w[r.name], found = f, true
				}
			}
			if !found {
				t.Fatalf("metrics of %s: no dodai_netboot_store_writes_total", r.name)
			}
		}
		return w
	}
	// settled: both replicas' and the apiserver's write counts stood
	// still for a second (bounded).
	settled := func() (map[string]float64, map[string]float64) {
		t.Helper()
		w, api := storeWrites(), apiWrites(t, kc)
		since := time.Now()
		for deadline := time.Now().Add(20 * time.Second); time.Since(since) < time.Second && time.Now().Before(deadline); {
			time.Sleep(250 * time.Millisecond)
			w2, api2 := storeWrites(), apiWrites(t, kc)
			if w2["a"] != w["a"] || w2["b"] != w["b"] || api2["machines"] != api["machines"] {
				w, api, since = w2, api2, time.Now()
			}
		}
		return w, api
	}
	machine := func(mac string) (v1alpha1.Machine, bool) {
		t.Helper()
		var m v1alpha1.Machine
		err := kc.Client.Get(ctx, client.ObjectKey{Namespace: incltest.Namespace, Name: v1alpha1.MachineName(mac)}, &m)
		if err != nil {
			if client.IgnoreNotFound(err) != nil {
				t.Fatal(err)
			}
			return m, false
		}
		return m, true
	}
	self := selfExe(t)
	probe := func(c *netns, name string) string {
		t.Helper()
		p := filepath.Join(work, name+".probe")
		c.start(t, p, []string{envProbe + "=listen"}, self, "eth0", "10")
		waitLog(t, p, "ready", nil, 5*time.Second)
		return p
	}

	// The PXE clients: udhcpc with a PXE class (it takes whichever offer
	// comes first; a real PXE ROM merges dnsmasq's address with a
	// replica's boot offer), then a UEFI-style REQUEST to port 4011 of the
	// replica it chose, from an address of its own.
	w0, api0 := settled()
	chosen := map[string]*replica{}
	var probes []string
	for i, mac := range pxeMACs {
		c := lab.join(t, fmt.Sprintf("q%d", i), mac)
		probes = append(probes, probe(c, fmt.Sprintf("pxe%d", i)))
		udhcpc(t, c, work, fmt.Sprintf("pxe%d", i), "-B", "-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x5d:0000")
		r := reps[i%2]
		chosen[mac] = r
		// (Sent from the observer's namespace, from an address of the
		// client's: the client's port 68 is the probe's until it ends.)
		own := fmt.Sprintf("10.99.1.%d", 10+i)
		obs.run(t, "ip", "addr", "add", own+"/20", "dev", "eth0")
		rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
		cmd := obs.cmd(rctx, self, own, r.addr+":4011", mac)
		cmd.Env = append(os.Environ(), envProbe+"=req4011")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		b, err := cmd.Output()
		rcancel()
		if err != nil {
			t.Fatalf("%s: 4011 request to %s: %v\n%s%s", mac, r.name, err, b, stderr.String())
		}
		var rep seenReply
		if err := json.Unmarshal(b, &rep); err != nil {
			t.Fatalf("%s: 4011 reply %q: %v", mac, b, err)
		}
		if rep.Type != "ACK" || rep.File != "snponly.efi" || rep.YIAddr != "0.0.0.0" || rep.Server != r.addr || rep.Class != "PXEClient" {
			t.Fatalf("%s: 4011 reply of %s: %+v", mac, r.name, rep)
		}
	}
	// Each PXE client's Machine: written by the replica it chose.
	deadline := time.Now().Add(15 * time.Second)
	for _, mac := range pxeMACs {
		for {
			m, ok := machine(mac)
			if ok && m.Status.BootServer == chosen[mac].name {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: Machine %v (found %v), want boot server %s", mac, m.Status, ok, chosen[mac].name)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	w1, api1 := settled()
	t.Logf("PXE clients: store writes a %.0f, b %.0f; the apiserver counted %.0f Machine writes",
		w1["a"]-w0["a"], w1["b"]-w0["b"], api1["machines"]-api0["machines"])
	if w1["a"]-w0["a"] < 1 || w1["b"]-w0["b"] < 1 {
		t.Errorf("PXE clients: store writes a %.0f, b %.0f: each replica was chosen by a client", w1["a"]-w0["a"], w1["b"]-w0["b"])
	}
	if got, want := api1["machines"]-api0["machines"], w1["a"]-w0["a"]+w1["b"]-w0["b"]; got != want {
		t.Errorf("PXE clients: the apiserver counted %.0f Machine writes, the replicas %.0f", got, want)
	}

	// Both replicas answered every PXE client as a proxy: an OFFER with
	// no address, the BIOS boot file and the PXE vendor options; dnsmasq
	// offered the address.
	time.Sleep(500 * time.Millisecond) // late replies
	for i, p := range probes {
		offers := map[string]bool{}
		for _, r := range readProbe(t, p) {
			if r.ClientHW != pxeMACs[i] {
				continue
			}
			switch r.Server {
			case "10.99.0.3":
				if r.Type == "OFFER" && strings.HasPrefix(r.YIAddr, "10.99.0.1") {
					offers["site"] = true
				}
			case "10.99.0.1", "10.99.0.2":
				if r.YIAddr != "0.0.0.0" {
					t.Errorf("%s: replica %s handed out an address: %+v", pxeMACs[i], r.Server, r)
				}
				if r.Type == "OFFER" {
					if r.File != "undionly.kpxe" || r.Class != "PXEClient" || string(r.Opt43) != "\x06\x01\x08\xff" {
						t.Errorf("%s: proxy offer: %+v", pxeMACs[i], r)
					}
					offers[r.Server] = true
				}
			}
		}
		if !offers["site"] || !offers["10.99.0.1"] || !offers["10.99.0.2"] {
			t.Errorf("%s: offers seen %v, want dnsmasq's and both replicas': %+v", pxeMACs[i], offers, readProbe(t, p))
		}
	}

	// The known machine's own DHCP (as Talos sends it: no PXE class, a
	// broadcast REQUEST naming dnsmasq).
	if _, ok := machine(macKnown); ok {
		t.Fatalf("Machine of %s before its REQUEST", macKnown)
	}
	kn := lab.join(t, "qk", macKnown)
	pk := probe(kn, "known")
	start := time.Now()
	e := udhcpc(t, kn, work, "known", "-B")
	if e["serverid"] != "10.99.0.3" || !strings.HasPrefix(e["ip"], "10.99.0.1") {
		t.Fatalf("known machine's lease: %v", e)
	}
	var km v1alpha1.Machine
	for {
		m, ok := machine(macKnown)
		if ok && m.Status.IP == e["ip"] {
			km = m
			break
		}
		if time.Since(start) > 15*time.Second {
			t.Fatalf("known machine's address %s not written within 15s: %v (found %v)", e["ip"], m.Status, ok)
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(start)
	w2, api2 := settled()
	da, db := w2["a"]-w1["a"], w2["b"]-w1["b"]
	t.Logf("known machine's REQUEST: its address %s written by %s %s after udhcpc started; store writes a %.0f, b %.0f; the apiserver counted %.0f",
		e["ip"], km.Status.BootServer, took.Round(time.Millisecond), da, db, api2["machines"]-api1["machines"])
	if took > 10*time.Second {
		t.Errorf("known machine's address written %s after udhcpc started, want well under the 30s grace", took)
	}
	writer := map[bool]string{true: "a", false: "b"}[da > 0]
	if (da > 0) == (db > 0) || km.Status.BootServer != writer {
		t.Errorf("known machine's REQUEST: store writes a %.0f, b %.0f, Machine's boot server %q: want one replica, the boot server, to write", da, db, km.Status.BootServer)
	}
	if got := api2["machines"] - api1["machines"]; got != da+db {
		t.Errorf("known machine's REQUEST: the apiserver counted %.0f Machine writes, the replicas %.0f", got, da+db)
	}
	time.Sleep(500 * time.Millisecond) // late replies
	for _, r := range readProbe(t, pk) {
		if r.Server == "10.99.0.1" || r.Server == "10.99.0.2" {
			t.Errorf("a replica answered the known machine's plain DHCP: %+v", r)
		}
	}
	// Past the offer grace (30 s) of everything a replica only held (the
	// PXE clients' offers and broadcast REQUESTs in the replica they did
	// not choose, the known machine's REQUEST in the replica that does
	// not own it): nobody wrote any of it, since another replica recorded
	// each machine.
	time.Sleep(time.Until(start.Add(netbootstore.DefaultOfferGrace + 2*time.Second)))
	w3, api3 := settled()
	t.Logf("past the offer grace: store writes a %.0f, b %.0f since the known machine's REQUEST; the apiserver counted %.0f",
		w3["a"]-w1["a"], w3["b"]-w1["b"], api3["machines"]-api1["machines"])
	if w3["a"] != w2["a"] || w3["b"] != w2["b"] || api3["machines"] != api2["machines"] {
		t.Errorf("past the offer grace: store writes a %.0f, b %.0f, the apiserver %.0f; want no more after the grace (a %.0f, b %.0f, apiserver %.0f)",
			w3["a"], w3["b"], api3["machines"], w2["a"], w2["b"], api2["machines"])
	}
	// The PXE clients' Machines still name the replica each chose.
	for _, mac := range pxeMACs {
		if m, _ := machine(mac); m.Status.BootServer != chosen[mac].name {
			t.Errorf("%s: Machine's boot server %q, want %s", mac, m.Status.BootServer, chosen[mac].name)
		}
	}
	for _, r := range reps {
		if b, _ := os.ReadFile(r.log); strings.Contains(string(b), `"saving machine"`) {
			t.Errorf("replica %s failed to save machines:\n%s", r.name, tail(string(b), 3000))
		}
	}
}
