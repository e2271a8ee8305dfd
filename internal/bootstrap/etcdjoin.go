package bootstrap

import (
	"context"
	"time"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/etcd"
)

// waitEtcdMember waits until a control-plane node runs a healthy etcd
// member (a node that joins an existing cluster is not done before).
func (r *runner) waitEtcdMember(ctx context.Context, n *cluster.Node) error {
	c := &etcd.Client{Talosconfig: r.tc, Port: r.port}
	defer c.Close()
	for i := range r.spec.Nodes {
		cp := &r.spec.Nodes[i]
		if cp.Role == cluster.RoleControlPlane && r.addr(cp.Name) != "" {
			c.Nodes = append(c.Nodes, etcd.Node{Name: cp.Name, Address: r.addr(cp.Name)})
		}
	}
	start := time.Now()
	lastLog := start
	m, err := c.WaitHealthyMember(ctx, n.Name, r.poll, func(problem string) {
		if time.Since(lastLog) >= r.prog {
			lastLog = time.Now()
			r.log.Info("waiting for the node's etcd member", "node", n.Name, "state", problem, "elapsed", time.Since(start).Round(time.Second))
		}
	})
	if err != nil {
		return err
	}
	r.log.Info("etcd member healthy", "node", n.Name, "member", m.IDHex, "took", time.Since(start).Round(time.Millisecond))
	return nil
}
