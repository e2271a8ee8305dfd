package replicas_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/dodai-dev/dodai/internal/incluster/incltest"
	"github.com/dodai-dev/dodai/internal/incluster/replicas"
)

func TestLeaseName(t *testing.T) {
	long := strings.Repeat("x", 300)
	for _, tc := range []struct{ server, want string }{
		{"dodai-netboot-x7k2p", "netboot-dodai-netboot-x7k2p"},
		{"node-1", "netboot-node-1"},
		// Folded names carry a hash of the original name.
		{"Node-1", "netboot-node-1-" + hash8("Node-1")},
		{"node_1", "netboot-node-1-" + hash8("node_1")},
		{"Node_1.example", "netboot-node-1-example-" + hash8("Node_1.example")},
		{"boot server #2", "netboot-boot-server--2-" + hash8("boot server #2")},
		{"-a.-b-", "netboot-a--b-" + hash8("-a.-b-")},
		{"###", "netboot-" + hash8("###")},
		{"", "netboot-" + hash8("")},
		{long, "netboot-" + long[:253-len("netboot-")-9] + "-" + hash8(long)},
	} {
		got := replicas.LeaseName(tc.server)
		if got != tc.want {
			t.Errorf("LeaseName(%q) = %q, want %q", tc.server, got, tc.want)
		}
		if errs := validation.IsDNS1123Subdomain(got); len(errs) > 0 {
			t.Errorf("LeaseName(%q) = %q: %v", tc.server, got, errs)
		}
	}
	// Names that differ only in case or punctuation get different Leases.
	seen := map[string]string{}
	for _, s := range []string{"node-1", "Node-1", "NODE-1", "node_1", "node.1", "node 1", "node-1-", "-node-1"} {
		n := replicas.LeaseName(s)
		if other, ok := seen[n]; ok {
			t.Errorf("LeaseName(%q) = LeaseName(%q) = %q", s, other, n)
		}
		seen[n] = s
	}
}

func hash8(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:4])
}

// Two replicas keep heartbeats against the real apiserver: both are listed
// running with what they announced; one that stops deletes its heartbeat;
// one that died (a heartbeat not renewed within its duration) is listed
// not running.
func TestHeartbeats(t *testing.T) {
	kc := incltest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns := incltest.Namespace
	start := func(r replicas.Replica) (stop func()) {
		hctx, hcancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); replicas.Heartbeat(hctx, kc.Client, ns, r, 200*time.Millisecond, nil) }()
		return func() { hcancel(); <-done }
	}
	list := func() map[string]replicas.Replica {
		t.Helper()
		rs, err := replicas.List(ctx, kc.Client, ns, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]replicas.Replica{}
		for _, r := range rs {
			out[r.Name] = r
		}
		return out
	}
	waitFor := func(what string, cond func(map[string]replicas.Replica) bool) map[string]replicas.Replica {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			if l := list(); cond(l) {
				return l
			} else if time.Now().After(deadline) {
				t.Fatalf("timeout waiting for %s: %+v", what, l)
			}
		}
	}
	stopA := start(replicas.Replica{Name: "a", Address: "10.99.0.1", URL: "http://10.99.0.1:8080", Mode: "dhcp"})
	stopB := start(replicas.Replica{Name: "Node_B", Address: "10.99.0.2", URL: "http://10.99.0.2:8080", Mode: "dhcp"})
	defer stopB()
	l := waitFor("both replicas", func(l map[string]replicas.Replica) bool { return len(l) == 2 })
	if a := l["a"]; !a.Running || a.Address != "10.99.0.1" || a.URL != "http://10.99.0.1:8080" || a.Mode != "dhcp" || time.Since(a.Renewed) > 10*time.Second {
		t.Errorf("a: %+v", a)
	}
	if b := l["Node_B"]; !b.Running || b.Address != "10.99.0.2" {
		t.Errorf("Node_B (holder identity, not the Lease name): %+v", b)
	}
	// Renewed, not only created.
	first := l["a"].Renewed
	waitFor("a's renewal", func(l map[string]replicas.Replica) bool { return l["a"].Renewed.After(first) })

	stopA()
	waitFor("a's heartbeat deleted", func(l map[string]replicas.Replica) bool { _, ok := l["a"]; return !ok && len(l) == 1 })

	// A replica that died: its heartbeat stands, not renewed.
	past := metav1.NewMicroTime(time.Now().Add(-2 * time.Minute))
	secs, holder := int32(30), "c"
	if err := kc.Client.Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: replicas.LeaseName("c"), Labels: map[string]string{replicas.LabelComponent: replicas.Component}},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &secs, RenewTime: &past},
	}); err != nil {
		t.Fatal(err)
	}
	l = list()
	if c, ok := l["c"]; !ok || c.Running || c.Renewed.Sub(past.Time).Abs() > time.Millisecond {
		t.Errorf("dead replica c: %+v (listed %v)", c, ok)
	}
	if !l["Node_B"].Running {
		t.Errorf("Node_B: %+v", l["Node_B"])
	}
}

// Owner: every replica that sees the same running set names the same
// owner whatever the order, a replica leaving moves only the MACs it
// owned, and the MACs spread over the replicas.
func TestOwner(t *testing.T) {
	if got := replicas.Owner("52:54:00:00:00:01", nil); got != "" {
		t.Errorf("Owner over no replica = %q, want \"\"", got)
	}
	if got := replicas.Owner("52:54:00:00:00:01", []string{"a"}); got != "a" {
		t.Errorf("Owner over one replica = %q, want a", got)
	}
	for _, three := range [][3]string{{"a", "b", "c"}, {"dodai-netboot-x7k2p", "dodai-netboot-x7k2q", "dodai-netboot-b4n9z"}} {
		owned := map[string]int{}
		for i := range 3000 {
			mac := fmt.Sprintf("52:54:00:%02x:%02x:%02x", i>>16&0xff, i>>8&0xff, i&0xff)
			o := replicas.Owner(mac, three[:])
			owned[o]++
			if r := replicas.Owner(mac, []string{three[2], three[0], three[1]}); r != o {
				t.Fatalf("%s: owner %s in one order, %s in another", mac, o, r)
			}
			// The second leaves: only its MACs move.
			if o2 := replicas.Owner(mac, []string{three[0], three[2]}); o != three[1] && o2 != o {
				t.Fatalf("%s: owned by %s, moved to %s when %s left", mac, o, o2, three[1])
			}
		}
		t.Logf("3000 MACs over %v: %v", three, owned)
		for _, name := range three {
			if n := owned[name]; n < 850 || n > 1150 {
				t.Errorf("%s owns %d of 3000 MACs, want about 1000: %v", name, n, owned)
			}
		}
	}
}
