package rollout

import (
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"sync"
	"time"

	"github.com/dodai-dev/dodai/internal/plan"
	"github.com/dodai-dev/dodai/internal/state"
)

// State is what a rollout did so far, so that the next apply resumes: the
// nodes dodai cordoned (it uncordons them when their steps finish), an
// operation in flight (a reboot or an upgrade the node may still be busy
// with: the next run waits for it instead of starting another), the steps
// done, and the failure that stopped the last run.
type State struct {
	Started  *time.Time            `json:"started,omitempty"`
	Finished *time.Time            `json:"finished,omitempty"`
	Nodes    map[string]*NodeState `json:"nodes,omitempty"`
	Failure  *Failure              `json:"failure,omitempty"`
}

// NodeState is one node's part.
type NodeState struct {
	// Cordoned is set when dodai cordoned the node (and cleared when it
	// uncordoned it).
	Cordoned bool `json:"cordoned,omitempty"`
	// Inflight is the reboot or upgrade started and not yet seen finished.
	Inflight *Inflight `json:"inflight,omitempty"`
	// Done maps finished stages (node, control-plane, kubelet) to when.
	Done map[string]time.Time `json:"done,omitempty"`
}

// Inflight is a disruptive operation dodai started on a node.
type Inflight struct {
	Step string `json:"step"`
	// BootID before the operation: the node has rebooted once it reports
	// another one.
	BootID string `json:"bootID"`
	// Image and FromVersion of an upgrade.
	Image       string    `json:"image,omitempty"`
	FromVersion string    `json:"fromVersion,omitempty"`
	ToVersion   string    `json:"toVersion,omitempty"`
	At          time.Time `json:"at"`
}

// Failure is the error that stopped a run.
type Failure struct {
	Node  string    `json:"node,omitempty"`
	Step  string    `json:"step"`
	Error string    `json:"error"`
	At    time.Time `json:"at"`
}

// store serializes updates and writes the file atomically (0600) after
// each change.
type store struct {
	mu   sync.Mutex
	path string
	st   State
}

func loadStore(path string) (*store, error) {
	s := &store{path: path}
	if err := state.ReadJSON(path, &s.st); err != nil {
		return nil, err
	}
	if s.st.Nodes == nil {
		s.st.Nodes = map[string]*NodeState{}
	}
	return s, nil
}

func (s *store) update(f func(*State)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	before, _ := json.Marshal(s.st)
	f(&s.st)
	after, _ := json.Marshal(s.st)
	if reflect.DeepEqual(before, after) {
		return nil
	}
	return state.WriteJSON(s.path, s.st)
}

func (s *store) node(name string) NodeState {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.st.Nodes[name]
	if n == nil {
		return NodeState{}
	}
	c := *n
	c.Done = maps.Clone(n.Done)
	if n.Inflight != nil {
		in := *n.Inflight
		c.Inflight = &in
	}
	return c
}

func (s *store) updateNode(name string, f func(*NodeState)) error {
	return s.update(func(st *State) {
		n := st.Nodes[name]
		if n == nil {
			n = &NodeState{}
			st.Nodes[name] = n
		}
		f(n)
		if !n.Cordoned && n.Inflight == nil && len(n.Done) == 0 {
			delete(st.Nodes, name)
		}
	})
}

func (s *store) failure() *Failure {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st.Failure == nil {
		return nil
	}
	f := *s.st.Failure
	return &f
}

func now() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }

// ReadState reads the state file an earlier apply left (empty when none).
func ReadState(path string) (*State, error) {
	s, err := loadStore(path)
	if err != nil {
		return nil, err
	}
	return &s.st, nil
}

// Pending reports whether an earlier apply left work behind: a node it
// cordoned, an operation (reboot, upgrade) it did not see finish, or a
// platform it applied and did not see Ready (the HelmReleases already match
// the file then, so the plan alone shows nothing left to do).
func (s *State) Pending() bool {
	if s.platformPending() {
		return true
	}
	for _, n := range s.Nodes {
		if n.Cordoned || n.Inflight != nil {
			return true
		}
	}
	return false
}

// Adopt turns the plan's unreachable nodes that an earlier apply left in
// the middle of a reboot or an upgrade into nodes to resume: apply waits
// for them (within its node timeout) and checks what they run, instead of
// refusing a node that is simply still booting.
func Adopt(p *plan.Plan, s *State) {
	for _, n := range p.Nodes {
		ns := s.Nodes[n.Name]
		if n.State != plan.StateUnreachable || ns == nil || ns.Inflight == nil {
			continue
		}
		n.State = plan.StateResume
		n.Refusals = nil
		n.Error = fmt.Sprintf("the last apply's %s started %s; waiting for the node (now: %s)",
			ns.Inflight.Step, ns.Inflight.At.Format(time.RFC3339), n.Error)
	}
}

// platformPending: the last run stopped in the platform step.
func (s *State) platformPending() bool {
	return s.Failure != nil && s.Failure.Step == StepPlatform
}
