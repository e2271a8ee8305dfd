// Package node takes cluster nodes out of the cluster and puts them back:
// Remove (cordon, drain, leave etcd with the quorum checks, a graceful
// Talos reset that wipes STATE and EPHEMERAL, delete the Kubernetes Node,
// forget the machine in dodai's state), its --force form for a dead machine
// (the etcd member removed by ID through a healthy member, the Node
// deleted), and Reinstall (reset to maintenance mode and install again
// through bootstrap, whose disk-safety rules apply).
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	machineapi "github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/drain"
	"github.com/dodai-dev/dodai/internal/etcd"
	"github.com/dodai-dev/dodai/internal/poll"
	"github.com/dodai-dev/dodai/internal/talos"
)

// Target is the node to act on, as the cluster file and dodai's state know
// it.
type Target struct {
	Node *cluster.Node
	// Address the configured node answers on.
	Address string
	// Index of the node in spec.nodes (for the cluster-file hint).
	Index int
}

// Options of Remove and Reinstall.
type Options struct {
	Target Target
	// Source is the cluster file (for the hint about what to delete).
	Source *cluster.Source
	// Force: Remove handles a dead machine (no drain, no reset; the etcd
	// member is removed by ID through a healthy member) and overrides the
	// "no more redundancy" refusal of etcd's quorum rules.
	Force bool
	// Talosconfig and Port reach the nodes.
	Talosconfig *clientconfig.Config
	Port        int
	// Etcd reaches the control planes' etcd.
	Etcd *etcd.Client
	// Kube is the cluster's Kubernetes API.
	Kube kubernetes.Interface
	// DrainTimeout bounds the drain (default drain.DefaultTimeout).
	DrainTimeout time.Duration
	// ResetTimeout bounds the wait for the reset machine (default 10 min).
	ResetTimeout time.Duration
	// Poll interval of waits (default 1 s).
	Poll time.Duration
	// Forget removes the machine from dodai's state (netboot registry,
	// bootstrap record); called after the Node is deleted.
	Forget func(ctx context.Context) error
	// InMaintenance looks for the reset machine in maintenance mode (by
	// MAC) and returns the address it answers on, "" while it is not
	// there yet. Reinstall waits for it (within ResetTimeout) before it
	// installs: a real machine takes minutes to reboot.
	InMaintenance func(ctx context.Context) (string, error)
	// PowerOn, if set, makes Reinstall hands-free through the node's BMC:
	// the reset powers the machine off instead of rebooting it from its
	// disk, and PowerOn (called once the machine is forgotten in dodai's
	// state) waits until the BMC reports it off, powers it on booting from
	// the network once and follows it through dodai netboot. It returns
	// what the step line shows.
	PowerOn func(ctx context.Context) (string, error)
	Log     *slog.Logger
}

// Step is one thing Remove did, in order.
type Step struct {
	Name   string `json:"step"`
	Detail string `json:"detail,omitempty"`
}

// Result of Remove.
type Result struct {
	Node  string `json:"node"`
	Role  string `json:"role"`
	Steps []Step `json:"steps"`
	// Hint tells the user what to delete from the cluster file.
	Hint string `json:"hint"`
}

func (o *Options) defaults() {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.ResetTimeout <= 0 {
		o.ResetTimeout = 10 * time.Minute
	}
	if o.Port == 0 {
		o.Port = talos.DefaultPort
	}
}

func (r *Result) step(log *slog.Logger, name, detail string) {
	r.Steps = append(r.Steps, Step{Name: name, Detail: detail})
	log.Info(name, "node", r.Node, "detail", detail)
}

// talosClient connects to the target's authenticated API.
func (o *Options) talosClient(ctx context.Context) (*client.Client, error) {
	if o.Target.Address == "" {
		return nil, fmt.Errorf("node %s has no known address", o.Target.Node.Name)
	}
	return talos.Authenticated(ctx, o.Talosconfig, talos.Endpoint(o.Target.Address, o.Port))
}

// answers checks once whether the target answers the authenticated API.
func (o *Options) answers(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := o.talosClient(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Version(ctx)
	return err
}

// checkEtcd finds the target's member and applies the removal rules; it
// returns the member (nil when the node runs none) and the status.
func (o *Options) checkEtcd(ctx context.Context) (*etcd.Member, *etcd.Status, error) {
	st, err := o.Etcd.Status(ctx)
	if err != nil {
		return nil, nil, err
	}
	m := st.Member(o.Target.Node.Name)
	if m == nil {
		if !st.HasQuorum {
			return nil, st, fmt.Errorf("etcd has no healthy quorum (%d of %d members healthy): no control-plane node can be removed now; see `dodai etcd status` and `dodai etcd restore`", st.HealthyMembers, len(st.Members))
		}
		return nil, st, nil
	}
	r := st.CheckRemove(m)
	switch {
	case r.Err == nil:
	case r.Forcible && o.Force:
		o.Log.Warn("removing it anyway (--force)", "node", o.Target.Node.Name, "reason", r.Err)
	default:
		return m, st, fmt.Errorf("refusing to remove %s: %w", o.Target.Node.Name, r.Err)
	}
	return m, st, nil
}

// Remove takes the node out of the cluster. The refusals come before any
// change: the last control plane, a removal that breaks etcd quorum, one
// that leaves etcd without the redundancy it has (3 → 2; --force
// overrides), a live node that does not answer (use --force for a dead
// one).
func Remove(ctx context.Context, o Options) (*Result, error) {
	o.defaults()
	n := o.Target.Node
	res := &Result{Node: n.Name, Role: n.Role, Hint: hint(o.Source, o.Target)}
	isCP := n.Role == cluster.RoleControlPlane
	if isCP {
		cps := 0
		for _, x := range o.Source.Cluster.Spec.Nodes {
			if x.Role == cluster.RoleControlPlane {
				cps++
			}
		}
		if cps <= 1 {
			return res, fmt.Errorf("refusing to remove %s: it is the cluster's only control-plane node", n.Name)
		}
	}
	var member *etcd.Member
	if isCP {
		var err error
		if member, _, err = o.checkEtcd(ctx); err != nil {
			return res, err
		}
	}
	if o.Force {
		return res, removeForced(ctx, o, res, member)
	}
	if err := o.answers(ctx); err != nil {
		return res, fmt.Errorf("node %s does not answer the Talos API on %s (%s): if the machine is dead, use --force", n.Name, o.Target.Address, etcd.ShortErr(err))
	}

	// Kubernetes: cordon and drain (PodDisruptionBudgets respected).
	if err := o.drain(ctx, res); err != nil {
		return res, err
	}

	// etcd: hand leadership over, then leave (re-checked right before).
	if isCP && member != nil {
		if member.Leader {
			to, err := o.Etcd.ForfeitLeadership(ctx, n.Name)
			if err != nil {
				return res, err
			}
			res.step(o.Log, "etcd leadership handed over", "to "+to)
		}
		if _, _, err := o.checkEtcd(ctx); err != nil {
			return res, err
		}
		if err := o.Etcd.Leave(ctx, n.Name); err != nil {
			return res, err
		}
		res.step(o.Log, "left etcd", "member "+member.IDHex)
	}

	// Talos: graceful reset wiping STATE and EPHEMERAL, then power off.
	if err := o.reset(ctx, false); err != nil {
		return res, err
	}
	res.step(o.Log, "Talos reset", "STATE and EPHEMERAL wiped, machine powered off")
	if err := o.waitGone(ctx); err != nil {
		return res, err
	}

	if err := o.deleteNode(ctx, res); err != nil {
		return res, err
	}
	return res, o.forget(ctx, res)
}

// removeForced handles a dead machine: nothing is asked of it.
func removeForced(ctx context.Context, o Options, res *Result, member *etcd.Member) error {
	n := o.Target.Node
	if err := o.answers(ctx); err == nil {
		o.Log.Warn("the machine still answers the Talos API; --force neither drains nor resets it: power it off", "node", n.Name)
	}
	if member != nil {
		st, err := o.Etcd.Status(ctx)
		if err != nil {
			return err
		}
		via := ""
		for _, m := range st.Members {
			if m.Healthy && m.Node != "" && m.Node != n.Name {
				via = m.Node
				if m.Leader {
					break
				}
			}
		}
		if via == "" {
			return fmt.Errorf("no healthy etcd member to remove %s's member through", n.Name)
		}
		if err := o.Etcd.RemoveMember(ctx, via, member.ID); err != nil {
			return err
		}
		res.step(o.Log, "etcd member removed by ID", fmt.Sprintf("member %s, through %s", member.IDHex, via))
	}
	if err := o.deleteNode(ctx, res); err != nil {
		return err
	}
	return o.forget(ctx, res)
}

func (o *Options) drain(ctx context.Context, res *Result) error {
	name := o.Target.Node.Name
	if o.Kube == nil {
		return errors.New("no Kubernetes API (kubeconfig) to drain the node with")
	}
	if _, err := o.Kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		res.step(o.Log, "no Kubernetes Node to drain", "")
		return nil
	} else if err != nil {
		return fmt.Errorf("reading Kubernetes Node %s: %w", name, err)
	}
	dr, err := drain.Drain(ctx, o.Kube, name, drain.Options{Timeout: o.DrainTimeout, Log: o.Log})
	if err != nil {
		return fmt.Errorf("%w (the node stays cordoned; fix the cause and run the command again)", err)
	}
	res.step(o.Log, "cordoned and drained", fmt.Sprintf("%d pods evicted in %s", len(dr.Evicted), dr.Elapsed.Round(time.Millisecond)))
	return nil
}

// reset sends a graceful reset wiping STATE and EPHEMERAL; reboot brings
// the machine back in maintenance mode, else it powers off.
func (o *Options) reset(ctx context.Context, reboot bool) error {
	c, err := o.talosClient(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	err = c.ResetGeneric(cctx, &machineapi.ResetRequest{Graceful: true, Reboot: reboot,
		SystemPartitionsToWipe: []*machineapi.ResetPartitionSpec{{Label: "STATE", Wipe: true}, {Label: "EPHEMERAL", Wipe: true}}})
	if err != nil {
		return fmt.Errorf("resetting %s: %s", o.Target.Node.Name, etcd.ShortErr(err))
	}
	return nil
}

// waitGone waits until the reset machine no longer answers the
// authenticated API (its config is gone).
func (o *Options) waitGone(ctx context.Context) error {
	err := poll.Until(ctx, poll.Options{Interval: o.Poll, Timeout: o.ResetTimeout}, func(ctx context.Context) (bool, error) {
		return o.answers(ctx) != nil, nil
	})
	if err != nil {
		return fmt.Errorf("node %s still answers the authenticated Talos API after the reset: %w", o.Target.Node.Name, err)
	}
	return nil
}

func (o *Options) deleteNode(ctx context.Context, res *Result) error {
	if o.Kube == nil {
		res.step(o.Log, "no Kubernetes API: the Node object was not deleted", "")
		return nil
	}
	err := o.Kube.CoreV1().Nodes().Delete(ctx, o.Target.Node.Name, metav1.DeleteOptions{})
	switch {
	case apierrors.IsNotFound(err):
		res.step(o.Log, "Kubernetes Node already gone", "")
	case err != nil:
		return fmt.Errorf("deleting Kubernetes Node %s: %w", o.Target.Node.Name, err)
	default:
		res.step(o.Log, "Kubernetes Node deleted", "")
	}
	return nil
}

func (o *Options) forget(ctx context.Context, res *Result) error {
	if o.Forget == nil {
		return nil
	}
	if err := o.Forget(ctx); err != nil {
		return err
	}
	res.step(o.Log, "forgotten in dodai's state", "netboot registry and bootstrap record")
	return nil
}

// hint says what to delete from the cluster file.
func hint(src *cluster.Source, t Target) string {
	where := fmt.Sprintf("spec.nodes[%d]", t.Index)
	if src == nil {
		return fmt.Sprintf("delete node %s (%s) from the cluster file", t.Node.Name, where)
	}
	pos := src.Pos(where)
	loc := src.File
	if pos.Line > 0 {
		loc = fmt.Sprintf("%s:%d", src.File, pos.Line)
	}
	return fmt.Sprintf("delete node %s from the cluster file (%s, %s), or bootstrap and apply will install it again", t.Node.Name, loc, where)
}

// Reinstall resets the node to maintenance mode and installs it again with
// install (bootstrap for this node, whose disk-safety rules apply: the disk
// confirmed before must still be the one). A control plane leaves etcd
// first (refused when that would break quorum) and install waits for its
// new member. The Kubernetes Node is drained before and deleted after the
// reset; the reinstalled kubelet registers it again.
func Reinstall(ctx context.Context, o Options, install func(ctx context.Context) error) (*Result, error) {
	o.defaults()
	n := o.Target.Node
	res := &Result{Node: n.Name, Role: n.Role}
	isCP := n.Role == cluster.RoleControlPlane
	var member *etcd.Member
	if isCP {
		st, err := o.Etcd.Status(ctx)
		if err != nil {
			return res, err
		}
		if member = st.Member(n.Name); member != nil {
			// The member comes back after the install: only a removal that
			// breaks quorum is refused.
			if r := st.CheckRemove(member); r.Err != nil && !r.Forcible {
				return res, fmt.Errorf("refusing to reinstall %s: %w", n.Name, r.Err)
			}
		} else if !st.HasQuorum {
			return res, fmt.Errorf("etcd has no healthy quorum: reinstalling a control-plane node now could not rejoin it; see `dodai etcd status`")
		}
	}
	if err := o.answers(ctx); err != nil {
		return res, fmt.Errorf("node %s does not answer the Talos API on %s (%s): boot it into maintenance mode and run `dodai bootstrap --node %s`", n.Name, o.Target.Address, etcd.ShortErr(err), n.Name)
	}
	if err := o.drain(ctx, res); err != nil {
		return res, err
	}
	if member != nil {
		if member.Leader {
			to, err := o.Etcd.ForfeitLeadership(ctx, n.Name)
			if err != nil {
				return res, err
			}
			res.step(o.Log, "etcd leadership handed over", "to "+to)
		}
		if err := o.Etcd.Leave(ctx, n.Name); err != nil {
			return res, err
		}
		res.step(o.Log, "left etcd", "member "+member.IDHex)
	}
	if err := o.reset(ctx, o.PowerOn == nil); err != nil {
		return res, err
	}
	if o.PowerOn == nil {
		res.step(o.Log, "Talos reset", "STATE and EPHEMERAL wiped, rebooting into maintenance mode")
	} else {
		res.step(o.Log, "Talos reset", "STATE and EPHEMERAL wiped, powering off")
	}
	if err := o.waitGone(ctx); err != nil {
		return res, err
	}
	if err := o.deleteNode(ctx, res); err != nil {
		return res, err
	}
	if o.Forget != nil {
		if err := o.Forget(ctx); err != nil {
			return res, err
		}
	}
	if o.PowerOn != nil {
		detail, err := o.PowerOn(ctx)
		if err != nil {
			return res, fmt.Errorf("powering %s on to boot from the network: %w", n.Name, err)
		}
		res.step(o.Log, "powered on, network boot once", detail)
	}
	if o.InMaintenance != nil {
		var addr string
		err := poll.Until(ctx, poll.Options{Interval: o.Poll, Timeout: o.ResetTimeout,
			OnProgress: func(p poll.Progress) {
				o.Log.Info("waiting for the machine in maintenance mode", "node", n.Name, "elapsed", p.Elapsed.Round(time.Second), "last", p.Last)
			},
		}, func(ctx context.Context) (bool, error) {
			a, err := o.InMaintenance(ctx)
			addr = a
			return a != "", err
		})
		if err != nil {
			return res, fmt.Errorf("node %s did not come back in maintenance mode after the reset: %w", n.Name, err)
		}
		res.step(o.Log, "back in maintenance mode", addr)
	}
	if err := install(ctx); err != nil {
		return res, fmt.Errorf("installing %s again: %w", n.Name, err)
	}
	res.step(o.Log, "installed again", "")
	return res, nil
}
