package faketalos

import "fmt"

// PowerOn boots a machine that is off (a reset without reboot powered it
// off) the way a network boot of Talos does: into maintenance mode on its
// maintenance address, with no config. The caller plays the machine's
// firmware: it calls PowerOn once the machine netbooted.
func (n *Node) PowerOn() error {
	n.mu.Lock()
	if n.phase != "off" {
		phase := n.phase
		n.mu.Unlock()
		return fmt.Errorf("node %s is %s, not off", n.opts.Name, phase)
	}
	n.cfg = nil
	n.phase = "booting"
	n.mu.Unlock()
	n.record(Call{Method: "PowerOn", Phase: "off"})
	return n.serveMaintenance()
}
