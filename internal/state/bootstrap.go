package state

import (
	"maps"
	"time"
)

// Bootstrap is what bootstrap has done so far (state/bootstrap.json), so a
// re-run resumes and never bootstraps etcd twice.
type Bootstrap struct {
	// Nodes by name.
	Nodes map[string]*Node `json:"nodes"`
	// Bootstrap records the one etcd bootstrap of the cluster.
	Bootstrap *EtcdBootstrap `json:"bootstrap,omitempty"`
}

// Node is one node's progress.
type Node struct {
	// MAC the machine was identified by.
	MAC string `json:"mac,omitempty"`
	// MaintenanceAddress the machine had before its config was applied.
	MaintenanceAddress string `json:"maintenanceAddress,omitempty"`
	// Address the configured node answers on.
	Address string `json:"address,omitempty"`
	// TalosVersion the node reported.
	TalosVersion string `json:"talosVersion,omitempty"`
	// Disk confirmed as install disk.
	Disk *Disk `json:"disk,omitempty"`
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

// Disk is the install disk confirmed for a node (by the user in the
// interactive mode, or by the first apply); bootstrap refuses any other.
type Disk struct {
	DevPath string `json:"devPath"`
	Serial  string `json:"serial,omitempty"`
	WWID    string `json:"wwid,omitempty"`
	Model   string `json:"model,omitempty"`
	Size    uint64 `json:"size"`
}

// ReadBootstrap reads a bootstrap state file; a missing file is an empty
// state. A node recorded as null (a hand-edited file) is no record, so
// every entry of Nodes is non-nil.
func ReadBootstrap(path string) (*Bootstrap, error) {
	var b Bootstrap
	if err := ReadJSON(path, &b); err != nil {
		return nil, err
	}
	if b.Nodes == nil {
		b.Nodes = map[string]*Node{}
	}
	maps.DeleteFunc(b.Nodes, func(_ string, n *Node) bool { return n == nil })
	return &b, nil
}

// ReadMachines reads a netboot registry file; a missing file is empty.
func ReadMachines(path string) (*Machines, error) {
	var m Machines
	if err := ReadJSON(path, &m); err != nil {
		return nil, err
	}
	return &m, nil
}
