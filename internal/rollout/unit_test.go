package rollout

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dodai-dev/dodai/internal/plan"
)

func TestMaxUnavailable(t *testing.T) {
	for _, tt := range []struct {
		in      string
		workers int
		want    int
		err     string
	}{
		{"", 50, 1, ""},
		{"1", 50, 1, ""},
		{"7", 50, 7, ""},
		{"10%", 50, 5, ""},
		{"10%", 5, 1, ""}, // at least one
		{"100%", 3, 3, ""},
		{"33%", 10, 3, ""},
		{"0", 5, 0, "positive count"},
		{"-1", 5, 0, "positive count"},
		{"0%", 5, 0, "percentage between"},
		{"101%", 5, 0, "percentage between"},
		{"x%", 5, 0, "percentage between"},
		{"lots", 5, 0, "positive count"},
	} {
		got, err := MaxUnavailable(tt.in, tt.workers)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%q of %d: %d %v, want %d", tt.in, tt.workers, got, err, tt.want)
		}
	}
}

func TestOrder(t *testing.T) {
	p := &plan.Plan{Nodes: []*plan.NodePlan{
		{Name: "cp1", Role: "controlplane", State: plan.StateChanges},
		{Name: "cp2", Role: "controlplane", State: plan.StateChanges},
		{Name: "cp3", Role: "controlplane", State: plan.StateUnchanged},
		{Name: "cp4", Role: "controlplane", State: plan.StateChanges},
		{Name: "w1", Role: "worker", State: plan.StateChanges},
		{Name: "w2", Role: "worker", State: plan.StateNotInstalled},
		{Name: "w3", Role: "worker", State: plan.StateChanges},
	}}
	cps, ws := Order(p, "cp1", nil)
	if !slices.Equal(cps, []string{"cp2", "cp4", "cp1"}) || !slices.Equal(ws, []string{"w1", "w3"}) {
		t.Fatalf("order %v %v", cps, ws)
	}
	// The leader unchanged: nothing moves.
	if cps, _ := Order(p, "cp3", nil); !slices.Equal(cps, []string{"cp1", "cp2", "cp4"}) {
		t.Fatalf("order %v", cps)
	}
	cps, ws = Order(p, "cp1", []string{"cp1", "w3"})
	if !slices.Equal(cps, []string{"cp1"}) || !slices.Equal(ws, []string{"w3"}) {
		t.Fatalf("--node order %v %v", cps, ws)
	}
}

func TestWindow(t *testing.T) {
	r := &runner{}
	var nodes []string
	for i := range 20 {
		nodes = append(nodes, fmt.Sprintf("w%d", i))
	}
	var cur, peak atomic.Int32
	var mu sync.Mutex
	var done []string
	err := r.window(context.Background(), nodes, 4, func(_ context.Context, n string) error {
		c := cur.Add(1)
		for {
			p := peak.Load()
			if c <= p || peak.CompareAndSwap(p, c) {
				break
			}
		}
		time.Sleep(5 * time.Millisecond)
		cur.Add(-1)
		mu.Lock()
		done = append(done, n)
		mu.Unlock()
		return nil
	})
	if err != nil || len(done) != 20 || peak.Load() != 4 {
		t.Fatalf("window: %v, %d done, peak %d", err, len(done), peak.Load())
	}

	// The first failure stops new starts; started nodes finish.
	var started atomic.Int32
	err = r.window(context.Background(), nodes, 2, func(_ context.Context, n string) error {
		started.Add(1)
		if n == "w3" {
			return errors.New("w3 broke")
		}
		time.Sleep(20 * time.Millisecond)
		return nil
	})
	if err == nil || err.Error() != "w3 broke" || started.Load() > 6 {
		t.Fatalf("window after a failure: %v, %d started", err, started.Load())
	}
}

func TestStateFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "rollout.json")
	s, err := loadStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.updateNode("w1", func(n *NodeState) { n.Cordoned = true; n.Inflight = &Inflight{Step: StepUpgrade, BootID: "b1"} }); err != nil {
		t.Fatal(err)
	}
	s2, err := loadStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := s2.node("w1"); !n.Cordoned || n.Inflight == nil || n.Inflight.BootID != "b1" {
		t.Fatalf("reloaded: %+v", n)
	}
	// A node with nothing pending leaves the file.
	if err := s2.updateNode("w1", func(n *NodeState) { n.Cordoned, n.Inflight = false, nil }); err != nil {
		t.Fatal(err)
	}
	if len(s2.st.Nodes) != 0 {
		t.Fatalf("nodes left: %+v", s2.st.Nodes)
	}
}

func TestPending(t *testing.T) {
	for _, tt := range []struct {
		name string
		st   State
		want bool
	}{
		{"empty", State{}, false},
		{"nodes done", State{Nodes: map[string]*NodeState{"w1": {Done: map[string]time.Time{stageNode: time.Now()}}}}, false},
		{"cordoned", State{Nodes: map[string]*NodeState{"w1": {Cordoned: true}}}, true},
		{"in flight", State{Nodes: map[string]*NodeState{"w1": {Inflight: &Inflight{Step: StepUpgrade}}}}, true},
		{"failed drain, nothing left", State{Failure: &Failure{Node: "w1", Step: StepDrain}}, false},
		// The releases were applied and never seen Ready: the plan shows
		// nothing, the wait is still owed.
		{"failed platform wait", State{Failure: &Failure{Step: StepPlatform}}, true},
	} {
		if got := tt.st.Pending(); got != tt.want {
			t.Errorf("%s: Pending() = %v, want %v", tt.name, got, tt.want)
		}
	}
}
