package etcd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	machineapi "github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dodai-dev/dodai/internal/poll"
	"github.com/dodai-dev/dodai/internal/state"
)

// RestoreOptions configure a disaster recovery from a snapshot.
type RestoreOptions struct {
	// Snapshot is the snapshot file.
	Snapshot string
	// Force restores although etcd still has a healthy quorum (everything
	// written after the snapshot is lost).
	Force bool
	// StateFile records the progress (the recover-from bootstrap must be
	// sent once); a re-run resumes from it.
	StateFile string
	// Poll interval of waits (default 1 s) and Progress interval of their
	// log lines (default 10 s).
	Poll, Progress time.Duration
	Log            *slog.Logger
}

// RestoreResult is what a restore did.
type RestoreResult struct {
	Snapshot *SnapshotInfo `json:"snapshot"`
	// Reset lists the control-plane nodes whose etcd data was wiped so they
	// could be recovered.
	Reset []string `json:"reset,omitempty"`
	// RecoveredOn is the node the snapshot was restored on.
	RecoveredOn string `json:"recoveredOn"`
	// Resumed: an earlier run had already sent the recover bootstrap.
	Resumed bool `json:"resumed,omitempty"`
	// Status after the restore.
	Status *Status `json:"status"`
}

// RestoreRecord is the progress file of a restore.
type RestoreRecord struct {
	Snapshot string     `json:"snapshot"`
	SHA256   string     `json:"sha256"`
	Node     string     `json:"node"`
	Started  time.Time  `json:"started"`
	Sent     *time.Time `json:"recoverSent,omitempty"`
	Done     *time.Time `json:"done,omitempty"`
}

// ErrQuorumHealthy refuses a restore while etcd still works.
var ErrQuorumHealthy = errors.New("etcd still has a healthy quorum")

// Restore recovers etcd from a snapshot when quorum is lost, in guided,
// checked steps: (1) check the snapshot (sha256 trailer, database, revision);
// (2) refuse while etcd still has a healthy quorum, unless Force; (3) every
// control-plane node must answer the Talos API; (4) each control plane whose
// etcd still has data is reset (EPHEMERAL wiped, reboot), until all wait for
// a bootstrap; (5) upload the snapshot to the first control-plane node and
// send the recover-from bootstrap (recorded before the call, exactly once);
// (6) wait until its member is healthy; (7) wait until the other control
// planes have rejoined as healthy members. A re-run after a failure resumes.
func (c *Client) Restore(ctx context.Context, o RestoreOptions) (*RestoreResult, error) {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.Progress <= 0 {
		o.Progress = 10 * time.Second
	}
	if len(c.Nodes) == 0 {
		return nil, errors.New("the cluster has no control-plane node")
	}
	first := c.Nodes[0]
	step := func(i int, what string, args ...any) { log.Info(fmt.Sprintf("step %d/7: %s", i, what), args...) }

	step(1, "checking the snapshot", "file", o.Snapshot)
	info, err := Check(o.Snapshot)
	if err != nil {
		return nil, err
	}
	log.Info("snapshot is intact", "revision", info.Revision, "keys", info.TotalKeys, "hash", fmt.Sprintf("%08x", info.Hash), "sha256", info.SHA256[:16])
	res := &RestoreResult{Snapshot: info, RecoveredOn: first.Name}

	var rec RestoreRecord
	if o.StateFile != "" {
		if err := state.ReadJSON(o.StateFile, &rec); err != nil {
			return nil, err
		}
	}
	resume := rec.Sent != nil && rec.Done == nil && rec.SHA256 == info.SHA256 && rec.Node == first.Name
	save := func() error {
		if o.StateFile == "" {
			return nil
		}
		return state.WriteJSON(o.StateFile, rec)
	}

	if resume {
		res.Resumed = true
		log.Info("resuming: an earlier run already sent the recover bootstrap", "node", rec.Node, "at", rec.Sent.Format(time.RFC3339))
	} else {
		step(2, "checking that etcd has lost quorum")
		st, err := c.Status(ctx)
		if err != nil {
			return nil, err
		}
		if st.HasQuorum {
			if !o.Force {
				return nil, fmt.Errorf("%w (%d of %d members healthy, leader %s): a restore would throw away everything written since the snapshot; use --force to do it anyway", ErrQuorumHealthy, st.HealthyMembers, len(st.Members), st.Leader)
			}
			log.Warn("etcd has a healthy quorum, restoring anyway (--force): changes since the snapshot will be lost", "healthy", st.HealthyMembers, "members", len(st.Members))
		} else {
			log.Info("etcd has no healthy quorum", "healthy", st.HealthyMembers, "members", len(st.Members), "needed", st.Quorum)
		}

		step(3, "checking that every control-plane node answers")
		states, err := c.etcdServiceStates(ctx)
		if err != nil {
			return nil, err
		}

		step(4, "bringing every control-plane node to a recoverable state (etcd waiting for a bootstrap)")
		for _, n := range c.Nodes {
			if states[n.Name] == "Preparing" {
				log.Info("recoverable: etcd waits for a bootstrap", "node", n.Name)
				continue
			}
			log.Info("resetting the node's etcd data (EPHEMERAL wiped, reboot)", "node", n.Name, "etcd", states[n.Name])
			if err := c.call(ctx, n, func(ctx context.Context, cc *client.Client) error {
				return cc.ResetGeneric(ctx, &machineapi.ResetRequest{Graceful: false, Reboot: true,
					SystemPartitionsToWipe: []*machineapi.ResetPartitionSpec{{Label: "EPHEMERAL", Wipe: true}}})
			}); err != nil {
				return res, fmt.Errorf("resetting %s: %s", n.Name, ShortErr(err))
			}
			res.Reset = append(res.Reset, n.Name)
		}
		for _, name := range res.Reset {
			n, _ := c.Node(name)
			if err := c.waitEtcdState(ctx, n, "Preparing", o, log); err != nil {
				return res, err
			}
		}

		step(5, "restoring the snapshot on the first control-plane node", "node", first.Name)
		now := time.Now().UTC().Truncate(time.Second)
		rec = RestoreRecord{Snapshot: o.Snapshot, SHA256: info.SHA256, Node: first.Name, Started: now}
		if err := c.recoverBootstrap(ctx, first, o, &rec, save, log); err != nil {
			return res, err
		}
	}

	step(6, "waiting for the restored member", "node", first.Name)
	if _, err := c.waitMember(ctx, first.Name, o, log); err != nil {
		return res, err
	}
	step(7, "waiting for the other control-plane nodes to rejoin")
	for _, n := range c.Nodes[1:] {
		if _, err := c.waitMember(ctx, n.Name, o, log); err != nil {
			return res, err
		}
	}
	st, err := c.Status(ctx)
	if err != nil {
		return res, err
	}
	res.Status = st
	done := time.Now().UTC().Truncate(time.Second)
	rec.Done = &done
	if err := save(); err != nil {
		return res, err
	}
	return res, nil
}

// etcdServiceStates reads the etcd service state of every control plane;
// every node must answer.
func (c *Client) etcdServiceStates(ctx context.Context) (map[string]string, error) {
	out := map[string]string{}
	var errs []error
	for _, n := range c.Nodes {
		s, err := c.etcdServiceState(ctx, n)
		if err != nil {
			errs = append(errs, fmt.Errorf("node %s (%s) does not answer the Talos API: %s", n.Name, n.Address, ShortErr(err)))
			continue
		}
		out[n.Name] = s
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("every control-plane node must answer before a restore (power them on; a machine that is gone must be taken out of cluster.yaml): %w", errors.Join(errs...))
	}
	return out, nil
}

func (c *Client) etcdServiceState(ctx context.Context, n Node) (string, error) {
	var svc string
	err := c.call(ctx, n, func(ctx context.Context, cc *client.Client) error {
		svcs, err := cc.ServiceInfo(ctx, "etcd")
		if err != nil {
			return err
		}
		if len(svcs) == 0 || svcs[0].Service == nil {
			svc = "absent"
			return nil
		}
		svc = svcs[0].Service.GetState()
		return nil
	})
	return svc, err
}

// waitEtcdState polls a node's etcd service until it is in the given state.
func (c *Client) waitEtcdState(ctx context.Context, n Node, want string, o RestoreOptions, log *slog.Logger) error {
	start := time.Now()
	var seen string
	err := poll.Until(ctx, poll.Options{Interval: o.Poll, Every: o.Progress, OnProgress: func(p poll.Progress) {
		log.Info("waiting for the node to come back with etcd waiting for a bootstrap", "node", n.Name, "now", seen, "elapsed", p.Elapsed.Round(time.Second))
	}}, func(ctx context.Context) (bool, error) {
		s, err := c.etcdServiceState(ctx, n)
		if err == nil && s == want {
			return true, nil
		}
		seen = s
		if err != nil {
			seen = ShortErr(err)
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("node %s did not come back with etcd waiting for a bootstrap in time (last: %s)", n.Name, seen)
	}
	log.Info("node is back, etcd waits for a bootstrap", "node", n.Name, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// recoverBootstrap uploads the snapshot and sends Bootstrap{recover_etcd},
// retrying while the node is not ready for it.
func (c *Client) recoverBootstrap(ctx context.Context, n Node, o RestoreOptions, rec *RestoreRecord, save func() error, log *slog.Logger) error {
	var last error
	err := poll.Until(ctx, poll.Options{Interval: o.Poll, Every: o.Progress, OnProgress: func(p poll.Progress) {
		log.Info("node not ready for the recovery yet, retrying", "node", n.Name, "reason", ShortErr(last), "elapsed", p.Elapsed.Round(time.Second))
	}}, func(ctx context.Context) (bool, error) {
		if rec.Sent != nil {
			// An earlier attempt sent the bootstrap and got no answer: if
			// etcd left its waiting state, the node took it.
			if s, err := c.etcdServiceState(ctx, n); err == nil && s != "Preparing" {
				log.Info("the recover bootstrap was taken: etcd starts from the snapshot", "node", n.Name, "etcd", s)
				return true, nil
			}
		}
		err := c.call(ctx, n, func(ctx context.Context, cc *client.Client) error {
			if err := recoverOn(ctx, cc, o.Snapshot); err != nil {
				return err
			}
			// Recorded before the call: the recovery must not run twice.
			t := time.Now().UTC().Truncate(time.Second)
			rec.Sent = &t
			if err := save(); err != nil {
				return err
			}
			return cc.Bootstrap(ctx, &machineapi.BootstrapRequest{RecoverEtcd: true})
		})
		if err == nil || status.Code(err) == codes.AlreadyExists {
			// AlreadyExists: an earlier call got through (etcd has data).
			log.Info("snapshot restored: etcd starts from it", "node", n.Name)
			return true, nil
		}
		if !retryableRecover(err) {
			if rec.Sent != nil {
				// Refused for good: nothing to resume.
				rec.Sent = nil
				_ = save()
			}
			return false, poll.Stop(fmt.Errorf("recovering etcd on %s: %s", n.Name, ShortErr(err)))
		}
		last = err
		return false, nil
	})
	var pe *poll.Error
	if errors.As(err, &pe) {
		return fmt.Errorf("recovering etcd on %s: not accepted in time: %s", n.Name, ShortErr(last))
	}
	return err
}

func retryableRecover(err error) bool {
	s, ok := status.FromError(err)
	if !ok {
		return false
	}
	switch s.Code() {
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	case codes.FailedPrecondition:
		m := s.Message()
		return strings.Contains(m, "not ready for recovery yet") || strings.Contains(m, "bootstrap is not available yet") || strings.Contains(m, "time is not in sync")
	}
	return false
}

func (c *Client) waitMember(ctx context.Context, node string, o RestoreOptions, log *slog.Logger) (*Member, error) {
	start := time.Now()
	last := time.Now()
	m, err := c.WaitHealthyMember(ctx, node, o.Poll, func(problem string) {
		if time.Since(last) >= o.Progress {
			last = time.Now()
			log.Info("waiting for etcd member", "node", node, "state", problem, "elapsed", time.Since(start).Round(time.Second))
		}
	})
	if err == nil {
		log.Info("etcd member healthy", "node", node, "id", m.IDHex, "took", time.Since(start).Round(time.Millisecond))
	}
	return m, err
}
