package rollout

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/dodai-dev/dodai/internal/etcd"
	"github.com/dodai-dev/dodai/internal/plan"
)

// etcdClient is a fresh client for each use (see plan.EtcdClient).
func (r *runner) etcdClient() *etcd.Client {
	return plan.EtcdClient(r.o.Source, r.o.Talosconfig, r.o.Port)
}

// beforeControlPlane runs the checks before a control-plane node goes down:
// every etcd member healthy, quorum kept without this one, a snapshot
// saved, and leadership moved away if this node leads.
func (r *runner) beforeControlPlane(ctx context.Context, name string) error {
	ec := r.etcdClient()
	defer ec.Close()
	var st *etcd.Status
	if err := r.step(name, StepEtcd, func() (string, error) {
		var err error
		if st, err = ec.Status(ctx); err != nil {
			return "", err
		}
		if err := Healthy(st); err != nil {
			return "", err
		}
		m := st.Member(name)
		if m == nil {
			return "", errors.New("the node runs no etcd member")
		}
		if len(st.Members) > 1 {
			if err := st.CheckDisrupt(m); err != nil {
				return "", err
			}
		}
		return fmt.Sprintf("%d/%d members healthy, leader %s", st.HealthyMembers, len(st.Members), st.Leader), nil
	}); err != nil {
		return err
	}
	if err := r.step(name, StepSnapshot, func() (string, error) {
		info, _, err := ec.SnapshotRotated(ctx, st, r.o.SnapshotDir, r.o.KeepSnapshots)
		if err != nil {
			return "", err
		}
		r.mu.Lock()
		r.snaps = append(r.snaps, info.Path)
		r.mu.Unlock()
		return fmt.Sprintf("%s (revision %d, from %s)", info.Path, info.Revision, info.Node), nil
	}); err != nil {
		return err
	}
	if st.Leader != name || len(st.Members) < 2 {
		return nil
	}
	return r.step(name, StepForfeit, func() (string, error) {
		to, err := ec.ForfeitLeadership(ctx, name)
		if err != nil {
			return "", err
		}
		return "new leader " + to, nil
	})
}

// Healthy refuses etcd with an unhealthy member, a control-plane node
// without a member, or no quorum.
func Healthy(st *etcd.Status) error {
	if problems := plan.EtcdProblems(st); len(problems) > 0 {
		return fmt.Errorf("etcd is not healthy (%d of %d members healthy): %s", st.HealthyMembers, len(st.Members), strings.Join(problems, "; "))
	}
	return nil
}
