package power

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dodai-dev/dodai/internal/netboot/registry"
	"github.com/dodai-dev/dodai/internal/state"
)

// rack is a set of machines behind in-memory BMCs, and the registry dodai
// netboot would write for them: the test moves machines through the stages.
// (The real BMCs and netboot are exercised in test/lab.)
type rack struct {
	mu      sync.Mutex
	on      map[string]bool
	pxe     map[string]bool
	powered []string // node names in power-on order
	maxOn   int      // most machines on at the same time while not yet at kernel
	reg     map[string]state.Machine
	failBMC map[string]bool
}

func newRack() *rack {
	return &rack{on: map[string]bool{}, pxe: map[string]bool{}, reg: map[string]state.Machine{}, failBMC: map[string]bool{}}
}

type rackBMC struct {
	r    *rack
	node string
}

func (r *rack) dial(_ context.Context, t Target) (BMC, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failBMC[t.Node] {
		return nil, errors.New("BMC 192.0.2.1:623 does not answer IPMI")
	}
	return &rackBMC{r: r, node: t.Node}, nil
}

func (b *rackBMC) PowerState(context.Context) (State, error) {
	b.r.mu.Lock()
	defer b.r.mu.Unlock()
	if b.r.on[b.node] {
		return On, nil
	}
	return Off, nil
}

func (b *rackBMC) PowerOn(context.Context) error {
	b.r.mu.Lock()
	defer b.r.mu.Unlock()
	if !b.r.pxe[b.node] {
		return fmt.Errorf("%s: powered on without PXE once", b.node)
	}
	b.r.on[b.node] = true
	b.r.pxe[b.node] = false
	b.r.powered = append(b.r.powered, b.node)
	booting := 0
	for n, on := range b.r.on {
		if st := b.r.reg[n].Stage; on && (st == "" || st == string(registry.StageDHCP) || st == string(registry.StageIPXE)) {
			booting++
		}
	}
	b.r.maxOn = max(b.r.maxOn, booting)
	return nil
}

func (b *rackBMC) PowerOff(context.Context) error {
	b.r.mu.Lock()
	defer b.r.mu.Unlock()
	b.r.on[b.node] = false
	return nil
}

func (b *rackBMC) PowerCycle(ctx context.Context) error {
	b.PowerOff(ctx)
	return b.PowerOn(ctx)
}

func (b *rackBMC) SetPXEOnce(context.Context) error {
	b.r.mu.Lock()
	defer b.r.mu.Unlock()
	b.r.pxe[b.node] = true
	return nil
}

func (b *rackBMC) Close(context.Context) error { return nil }

// see records what netboot would: node's MAC at stage, now.
func (r *rack) see(node, stage string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reg[node] = state.Machine{MAC: mac(node), IP: fmt.Sprintf("10.99.0.%d", id(node)), Stage: stage, LastSeen: time.Now().UTC()}
}

func (r *rack) machines() ([]state.Machine, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []state.Machine
	for _, m := range r.reg {
		out = append(out, m)
	}
	return out, nil
}

func (r *rack) isOn(node string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.on[node]
}

func id(node string) int {
	n := 0
	for _, c := range node {
		n += int(c)
	}
	return n % 250
}

func mac(node string) string { return fmt.Sprintf("52:54:00:00:00:%02x", id(node)) }

func machines(names ...string) []Machine {
	var out []Machine
	for _, n := range names {
		// Upper case in the cluster file, lower case in the registry.
		out = append(out, Machine{Target: Target{Node: n, Protocol: "ipmi", Address: "192.0.2.1", Port: 623}, MACs: []string{strings.ToUpper(mac(n))}})
	}
	return out
}

// netbootSim moves every powered machine through DHCP → iPXE → kernel,
// except those in stall (stopped at the given stage, "" = never seen).
func (r *rack) netbootSim(ctx context.Context, stall map[string]string) {
	go func() {
		for ctx.Err() == nil {
			r.mu.Lock()
			var on []string
			for n, o := range r.on {
				if o {
					on = append(on, n)
				}
			}
			r.mu.Unlock()
			for _, n := range on {
				next := map[string]string{"": "dhcp", "dhcp": "ipxe", "ipxe": "kernel", "kernel": "kernel"}
				r.mu.Lock()
				cur := r.reg[n].Stage
				r.mu.Unlock()
				if s, ok := stall[n]; ok && s == cur {
					continue
				}
				r.see(n, next[cur])
			}
			time.Sleep(30 * time.Millisecond)
		}
	}()
}

func TestInstallBatches(t *testing.T) {
	r := newRack()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r.netbootSim(ctx, nil)
	names := []string{"cp1", "cp22", "cp333", "w4444", "w55555"}
	start := time.Now()
	rs := Install(ctx, machines(names...), InstallOptions{Batch: 2, Reach: 10 * time.Second, Machines: r.machines,
		Power: Request{Dial: r.dial, Timeout: 5 * time.Second, Poll: 5 * time.Millisecond}, Poll: 10 * time.Millisecond})
	for i, res := range rs {
		if res.Err != nil || res.Node() != names[i] || res.Stage != "kernel" || res.Power.Done != "was off: powered on, PXE once" {
			t.Fatalf("%d: %+v", i, res)
		}
	}
	if r.maxOn > 2 {
		t.Errorf("%d machines booting at once with --power-batch 2", r.maxOn)
	}
	if len(r.powered) != 5 {
		t.Errorf("powered %v", r.powered)
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("took %s", d)
	}
}

// Faults: a dead BMC, a machine that never reaches DHCP, one that stops at
// iPXE, and one whose Ready never comes: each its own clear error within
// the bound, the good machine unaffected and never waiting on them.
func TestInstallFaults(t *testing.T) {
	r := newRack()
	r.failBMC["dead"] = true
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r.netbootSim(ctx, map[string]string{"silent": "", "stuck": "ipxe"})
	ready := func(_ context.Context, node, ip string) error {
		if node == "noapi" {
			return fmt.Errorf("Talos API on %s:50000: connection refused", ip)
		}
		return nil
	}
	start := time.Now()
	rs := Install(ctx, machines("good", "dead", "silent", "stuck", "noapi"), InstallOptions{Reach: 1500 * time.Millisecond, Machines: r.machines, Ready: ready,
		Power: Request{Dial: r.dial, Timeout: 2 * time.Second, Poll: 5 * time.Millisecond}, Poll: 10 * time.Millisecond})
	elapsed := time.Since(start)
	want := map[string]string{
		"dead":   "power: BMC 192.0.2.1:623 does not answer IPMI",
		"silent": fmt.Sprintf("dodai netboot never saw MAC [%s]", strings.ToUpper(mac("silent"))),
		"stuck":  fmt.Sprintf("netboot stopped at stage ipxe (10.99.0.%d)", id("stuck")),
		"noapi":  fmt.Sprintf("netbooted (stage kernel, 10.99.0.%d), but not ready within ", id("noapi")),
	}
	for _, res := range rs {
		if res.Node() == "good" {
			if res.Err != nil || res.Stage != "kernel" || res.Seconds > 1.4 {
				t.Errorf("good: %+v", res)
			}
			continue
		}
		if res.Err == nil || !strings.Contains(res.Error, want[res.Node()]) || (res.Node() == "noapi" && !strings.HasSuffix(res.Error, "connection refused")) {
			t.Errorf("%s: %q, want %q", res.Node(), res.Error, want[res.Node()])
		}
	}
	if r.isOn("dead") {
		t.Error("dead BMC's machine on")
	}
	if elapsed > 4*time.Second {
		t.Errorf("took %s with a 1.5s bound", elapsed)
	}
}

// A stale registry entry (an earlier boot) is not this boot.
func TestInstallIgnoresEarlierBoots(t *testing.T) {
	r := newRack()
	r.see("old", "kernel")
	r.mu.Lock()
	m := r.reg["old"]
	m.LastSeen = time.Now().Add(-time.Hour)
	r.reg["old"] = m
	r.mu.Unlock()
	rs := Install(context.Background(), machines("old"), InstallOptions{Reach: 300 * time.Millisecond, Machines: r.machines,
		Power: Request{Dial: r.dial, Timeout: time.Second, Poll: 5 * time.Millisecond}, Poll: 10 * time.Millisecond})
	if rs[0].Err == nil || !strings.Contains(rs[0].Error, "never saw") {
		t.Fatalf("%+v", rs[0])
	}
}
