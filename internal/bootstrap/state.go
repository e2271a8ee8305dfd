package bootstrap

import (
	"encoding/json"
	"reflect"
	"sync"
	"time"

	"github.com/dodai-dev/dodai/internal/state"
	"github.com/dodai-dev/dodai/internal/talos"
)

// StateFile is the bootstrap progress file inside the state directory.
const StateFile = "bootstrap.json"

// State is what bootstrap has done so far, so a re-run resumes and never
// bootstraps etcd twice.
type State struct {
	// Nodes by name.
	Nodes map[string]*NodeState `json:"nodes"`
	// Bootstrap records the one etcd bootstrap of the cluster.
	Bootstrap *EtcdBootstrap `json:"bootstrap,omitempty"`
}

// NodeState is one node's progress.
type NodeState struct {
	// MAC the machine was identified by.
	MAC string `json:"mac,omitempty"`
	// MaintenanceAddress the machine had before its config was applied.
	MaintenanceAddress string `json:"maintenanceAddress,omitempty"`
	// Address the configured node answers on.
	Address string `json:"address,omitempty"`
	// TalosVersion the node reported.
	TalosVersion string `json:"talosVersion,omitempty"`
	// Disk confirmed as install disk.
	Disk *DiskRecord `json:"disk,omitempty"`
	// Applied is when the config was sent (set just before the call, and
	// cleared again when the node refused it).
	Applied *time.Time `json:"applied,omitempty"`
	// Configured is when the node first answered the authenticated API.
	Configured *time.Time `json:"configured,omitempty"`
}

// EtcdBootstrap records the etcd bootstrap.
type EtcdBootstrap struct {
	Node string `json:"node"`
	// Requested is set before the first Bootstrap call.
	Requested *time.Time `json:"requested,omitempty"`
	// Done is set once the node accepted it (or said it was already done).
	Done *time.Time `json:"done,omitempty"`
}

// store serializes updates from the per-node goroutines and writes the file
// atomically after each change.
type store struct {
	mu   sync.Mutex
	path string
	st   State
}

func loadStore(clusterDir string) (*store, error) {
	s := &store{path: state.Path(clusterDir, StateFile)}
	if err := state.ReadJSON(s.path, &s.st); err != nil {
		return nil, err
	}
	if s.st.Nodes == nil {
		s.st.Nodes = map[string]*NodeState{}
	}
	return s, nil
}

// node returns a copy of a node's state.
func (s *store) node(name string) NodeState {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.st.Nodes[name]; n != nil {
		return *n
	}
	return NodeState{}
}

func (s *store) bootstrap() EtcdBootstrap {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st.Bootstrap != nil {
		return *s.st.Bootstrap
	}
	return EtcdBootstrap{}
}

// update changes the state and writes it when something changed.
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

func (s *store) updateNode(name string, f func(*NodeState)) error {
	return s.update(func(st *State) {
		n := st.Nodes[name]
		if n == nil {
			n = &NodeState{}
			st.Nodes[name] = n
		}
		f(n)
	})
}

// ReadState reads a cluster directory's bootstrap state (empty when absent).
func ReadState(clusterDir string) (*State, error) {
	s, err := loadStore(clusterDir)
	if err != nil {
		return nil, err
	}
	return &s.st, nil
}

func now() *time.Time {
	t := time.Now().UTC().Truncate(time.Second)
	return &t
}

// ConfirmDisk records the install disk the user picked for a node (the
// interactive mode); bootstrap then refuses any other disk for it.
func ConfirmDisk(clusterDir, node string, d talos.Disk) error {
	s, err := loadStore(clusterDir)
	if err != nil {
		return err
	}
	return s.updateNode(node, func(n *NodeState) { n.Disk = recordOf(d) })
}

// ForgetNode drops what bootstrap recorded about a node that left the
// cluster (`dodai node remove`); with keepDisk (`dodai node reinstall`) the
// machine's identity and confirmed install disk stay, so the reinstall is
// held to the same disk.
func ForgetNode(clusterDir, node string, keepDisk bool) error {
	s, err := loadStore(clusterDir)
	if err != nil {
		return err
	}
	return s.update(func(st *State) {
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
