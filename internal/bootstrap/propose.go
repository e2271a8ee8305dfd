package bootstrap

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/clusterdir"
	"github.com/dodai-dev/dodai/internal/discover"
	"github.com/dodai-dev/dodai/internal/state"
	"github.com/dodai-dev/dodai/internal/talos"
)

// MaxProposedControlPlanes is how many control-plane nodes the interactive
// mode proposes before it proposes workers (etcd wants an odd number;
// three survive one failure).
const MaxProposedControlPlanes = 3

// Proposal is what the interactive mode (`bootstrap --interactive`)
// proposes for the machines the user picked. The terminal screens only show
// it and let the user change it; every decision is here.
type Proposal struct {
	// Machines in the order they were picked.
	Machines []MachineProposal
	// Protected are the names of nodes that are real machines: a
	// discovered machine has one of their MACs, or bootstrap already worked
	// on them (state/bootstrap.json). Another machine may not take them over
	// by name; any other node (like the placeholder of `dodai init`) may be.
	Protected map[string]bool
}

// MachineProposal is the proposal for one machine.
type MachineProposal struct {
	Machine *talos.Machine
	// Node is the cluster file's node this machine already is (by MAC), or
	// "" for a new machine.
	Node string
	// Edit is the proposed answer: for a known machine its node's settings,
	// for a new one a free name and role; the install disk its selector
	// resolves to, else the first safe disk; the link that carries an
	// address; what the machine uses now for whatever the file leaves open.
	Edit clusterdir.NodeEdit
	// Disks are the disks that may be picked as install disk (UnsafeReason
	// is empty), in the machine's order.
	Disks []talos.Disk
}

// Propose decides the proposal for the picked machines (a subset of the
// discovered ones, which all count when deciding which nodes are real).
// It reads nothing and changes nothing: c is the cluster file, st
// bootstrap's state.
func Propose(c *cluster.Cluster, st *state.Bootstrap, discovered, picked []*talos.Machine) Proposal {
	p := Proposal{Protected: map[string]bool{}}
	cps := 0
	for _, n := range c.Spec.Nodes {
		isMachine := st != nil && st.Nodes[n.Name] != nil
		for _, m := range discovered {
			if owner := discover.NodeFor(m, c); owner != nil && owner.Name == n.Name {
				isMachine = true
			}
		}
		if !isMachine {
			continue
		}
		p.Protected[n.Name] = true
		if n.Role == cluster.RoleControlPlane {
			cps++
		}
	}
	taken := maps.Clone(p.Protected)
	for _, m := range picked {
		mp := MachineProposal{Machine: m}
		for _, d := range m.Disks {
			if UnsafeReason(d) == "" {
				mp.Disks = append(mp.Disks, d)
			}
		}
		a := clusterdir.NodeEdit{MAC: m.MAC}
		if node := discover.NodeFor(m, c); node != nil {
			mp.Node = node.Name
			a.Name, a.Role, a.Address, a.Gateway, a.DNS = node.Name, node.Role, node.Address, node.Gateway, slices.Clone(node.Nameservers)
			if node.Interface != nil {
				// The screens offer canonical MACs; a prefill in another
				// notation would match no choice.
				a.InterfaceMAC = node.Interface.MAC
				if mac, err := cluster.ParseMAC(node.Interface.MAC); err == nil {
					a.InterfaceMAC = mac
				}
			}
			if d, err := ResolveDisk(node, m.Disks); err == nil {
				a.DiskSerial, a.DiskPath = d.Serial, d.DevPath
			}
		} else {
			a.Role, a.Name = cluster.RoleWorker, freeName("w", taken)
			if cps < MaxProposedControlPlanes {
				a.Role, a.Name = cluster.RoleControlPlane, freeName("cp", taken)
				cps++
			}
			taken[a.Name] = true
		}
		if a.DiskPath == "" && len(mp.Disks) > 0 {
			a.DiskSerial, a.DiskPath = mp.Disks[0].Serial, mp.Disks[0].DevPath
		}
		for _, l := range m.Links {
			if a.InterfaceMAC == "" && len(l.Addresses) > 0 {
				a.InterfaceMAC = l.MAC
			}
		}
		if a.InterfaceMAC == "" {
			a.InterfaceMAC = m.MAC
		}
		if a.Address == "" && len(m.Addresses) > 0 {
			a.Address = m.Addresses[0]
		}
		if a.Gateway == "" {
			a.Gateway = m.Gateway
		}
		if len(a.DNS) == 0 {
			a.DNS = slices.Clone(m.DNS)
		}
		mp.Edit = a
		p.Machines = append(p.Machines, mp)
	}
	return p
}

// freeName is the first of prefix1, prefix2, … not taken.
func freeName(prefix string, taken map[string]bool) string {
	for i := 1; ; i++ {
		if name := fmt.Sprint(prefix, i); !taken[name] {
			return name
		}
	}
}

// CheckName says whether a machine may be named name: a valid node name
// that is not another real machine's.
func (p Proposal) CheckName(mp MachineProposal, name string) error {
	if !cluster.ValidName(name) {
		return errors.New("lowercase letters, digits and '-'")
	}
	if name != mp.Node && p.Protected[name] {
		return fmt.Errorf("%s is another machine's node", name)
	}
	return nil
}

// Finish completes an answer the user gave for this machine: the install
// disk is recorded by its serial when it has one (stable across reboots
// and kernels), by its path otherwise. It returns the answer and the disk
// picked (zero when the path names none of the machine's disks).
func (mp MachineProposal) Finish(a clusterdir.NodeEdit) (clusterdir.NodeEdit, talos.Disk) {
	a.DiskSerial = ""
	for _, d := range mp.Machine.Disks {
		if d.DevPath == a.DiskPath {
			a.DiskSerial = d.Serial
			return a, d
		}
	}
	return a, talos.Disk{}
}
