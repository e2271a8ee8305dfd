package bootstrap

import (
	"encoding/json"
	"reflect"
	"sync"
	"time"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/state"
	"github.com/dodai-dev/dodai/internal/talos"
)

// store serializes updates of state/bootstrap.json from the per-node
// goroutines and writes the file atomically after each change.
type store struct {
	mu   sync.Mutex
	path string
	st   state.Bootstrap
}

func loadStore(l cluster.Layout) (*store, error) {
	st, err := state.ReadBootstrap(l.BootstrapState())
	if err != nil {
		return nil, err
	}
	return &store{path: l.BootstrapState(), st: *st}, nil
}

// node returns a copy of a node's state.
func (s *store) node(name string) state.Node {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.st.Nodes[name]; n != nil {
		return *n
	}
	return state.Node{}
}

func (s *store) bootstrap() state.EtcdBootstrap {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st.Bootstrap != nil {
		return *s.st.Bootstrap
	}
	return state.EtcdBootstrap{}
}

// update changes the state and writes it when something changed.
func (s *store) update(f func(*state.Bootstrap)) error {
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

func (s *store) updateNode(name string, f func(*state.Node)) error {
	return s.update(func(st *state.Bootstrap) {
		n := st.Nodes[name]
		if n == nil {
			n = &state.Node{}
			st.Nodes[name] = n
		}
		f(n)
	})
}

func now() *time.Time {
	t := time.Now().UTC().Truncate(time.Second)
	return &t
}

// ConfirmDisk records the install disk the user picked for a node (the
// interactive mode); bootstrap then refuses any other disk for it.
func ConfirmDisk(l cluster.Layout, node string, d talos.Disk) error {
	s, err := loadStore(l)
	if err != nil {
		return err
	}
	return s.updateNode(node, func(n *state.Node) { n.Disk = recordOf(d) })
}

// ForgetNode drops what bootstrap recorded about a node that left the
// cluster (`dodai node remove`); with keepDisk (`dodai node reinstall`) the
// machine's identity and confirmed install disk stay, so the reinstall is
// held to the same disk.
func ForgetNode(l cluster.Layout, node string, keepDisk bool) error {
	s, err := loadStore(l)
	if err != nil {
		return err
	}
	return s.update(func(st *state.Bootstrap) {
		n := st.Nodes[node]
		if n == nil {
			return
		}
		if !keepDisk {
			delete(st.Nodes, node)
			return
		}
		n.Applied, n.Configured = nil, nil
	})
}
