package cli

import (
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"

	"github.com/dodai-dev/dodai/internal/bootstrap"
	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/etcd"
	"github.com/dodai-dev/dodai/internal/machineconfig"
	"github.com/dodai-dev/dodai/internal/state"
)

// day2 is what the day-2 commands (etcd, node, health) need from a
// cluster directory: the cluster file, the Talos credentials and where
// each node is.
type day2 struct {
	src      *cluster.Source
	layout   cluster.Layout
	renderer *machineconfig.Renderer
	tc       *clientconfig.Config
	port     int
	state    *state.Bootstrap
}

// openDay2 opens the cluster directory for a day-2 command (which must
// have called g.talosPortFlag).
func (g *Globals) openDay2() (*day2, error) {
	port, err := g.TalosPort()
	if err != nil {
		return nil, err
	}
	src, err := g.Load()
	if err != nil {
		return nil, err
	}
	r, err := machineconfig.New(src)
	if err != nil {
		return nil, err
	}
	tc, err := r.Talosconfig()
	if err != nil {
		return nil, err
	}
	l := src.Layout()
	st, err := state.ReadBootstrap(l.BootstrapState())
	if err != nil {
		return nil, err
	}
	return &day2{src: src, layout: l, renderer: r, tc: tc, port: port, state: st}, nil
}

// address is a node's configured address, else the one bootstrap recorded.
func (d *day2) address(n *cluster.Node) string {
	if ip := bootstrap.NodeIP(n); ip != "" {
		return ip
	}
	if s := d.state.Nodes[n.Name]; s != nil {
		return s.Address
	}
	return ""
}

// node returns the cluster file's node of that name.
func (d *day2) node(name string) *cluster.Node {
	for i := range d.src.Cluster.Spec.Nodes {
		if d.src.Cluster.Spec.Nodes[i].Name == name {
			return &d.src.Cluster.Spec.Nodes[i]
		}
	}
	return nil
}

// etcd returns a client for the control-plane nodes of the file (in file
// order, so the first is where etcd is bootstrapped and recovered).
func (d *day2) etcd() *etcd.Client {
	c := &etcd.Client{Talosconfig: d.tc, Port: d.port}
	for i := range d.src.Cluster.Spec.Nodes {
		n := &d.src.Cluster.Spec.Nodes[i]
		if n.Role == cluster.RoleControlPlane {
			c.Nodes = append(c.Nodes, etcd.Node{Name: n.Name, Address: d.address(n)})
		}
	}
	return c
}
