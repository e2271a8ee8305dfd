package plan

import (
	"context"
	"fmt"
	"strings"

	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/etcd"
	"github.com/dodai-dev/dodai/internal/state"
)

// EtcdClient reaches etcd through the control-plane nodes of the file (a
// fresh one for each use: a node that just rebooted would leave a cached
// connection in gRPC's reconnect backoff).
func EtcdClient(src *cluster.Source, tc *clientconfig.Config, port int) *etcd.Client {
	bst, _ := state.ReadBootstrap(src.Layout().BootstrapState())
	ec := &etcd.Client{Talosconfig: tc, Port: port}
	for i := range src.Cluster.Spec.Nodes {
		n := &src.Cluster.Spec.Nodes[i]
		if n.Role == cluster.RoleControlPlane {
			ec.Nodes = append(ec.Nodes, etcd.Node{Name: n.Name, Address: NodeAddress(n, bst)})
		}
	}
	return ec
}

// EtcdProblems lists what is wrong with etcd: unhealthy members,
// control-plane nodes without a member, no quorum.
func EtcdProblems(st *etcd.Status) []string {
	var out []string
	for _, m := range st.Members {
		if !m.Healthy {
			who := m.Node
			if who == "" {
				who = m.Name
			}
			out = append(out, fmt.Sprintf("member %s: %s", who, m.Problem))
		}
	}
	for _, np := range st.NotMembers {
		out = append(out, fmt.Sprintf("node %s: %s", np.Node, np.Problem))
	}
	if !st.HasQuorum {
		out = append(out, "no quorum")
	}
	return out
}

// etcd records the etcd health; changes on control-plane nodes are refused
// while any member is unhealthy (each such step takes a member down).
func (o Options) etcd(ctx context.Context, p *Plan) {
	ec := EtcdClient(o.Source, o.Talosconfig, o.Port)
	defer ec.Close()
	cpChanges := false
	for _, n := range p.Nodes {
		if n.Role == cluster.RoleControlPlane && n.State == StateChanges {
			cpChanges = true
		}
	}
	st, err := ec.Status(ctx)
	if err != nil {
		if cpChanges {
			p.Refusals = append(p.Refusals, fmt.Sprintf("cannot read etcd's health: %v", err))
		}
		return
	}
	p.Etcd = &EtcdHealth{Members: len(st.Members), Healthy: st.HealthyMembers, Leader: st.Leader, Problems: EtcdProblems(st)}
	if cpChanges && len(p.Etcd.Problems) > 0 {
		p.Refusals = append(p.Refusals, fmt.Sprintf("etcd is not healthy (%d of %d members healthy): %s; control-plane nodes are not changed until it is",
			p.Etcd.Healthy, p.Etcd.Members, strings.Join(p.Etcd.Problems, "; ")))
	}
}
