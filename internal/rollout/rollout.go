// Package rollout executes a plan (internal/plan) on a running cluster,
// safely and resumably: control-plane nodes one at a time with the etcd
// leader last (it forfeits leadership first), each disruptive
// control-plane step only with every etcd member healthy, quorum kept and a
// fresh etcd snapshot; workers with at most N unavailable at once. Per node:
// cordon and drain (internal/drain) when the node will reboot, apply the
// config (Talos' own mode) and/or run the Talos upgrade, wait until the node
// is back with the expected Talos version and extensions (read from its
// resources), its Kubernetes Node Ready with the expected kubelet, then
// uncordon. Kubernetes upgrades follow Talos' order: the control-plane
// components node by node, then the kubelets. The platform's HelmReleases
// are applied last and waited for at their new generation. The first
// failure stops the rollout with the node, the step and the cause; the
// state file (state/rollout.json) lets the next run resume.
package rollout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
	"k8s.io/client-go/kubernetes"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/etcd"
	"github.com/dodai-dev/dodai/internal/machineconfig"
	"github.com/dodai-dev/dodai/internal/plan"
	"github.com/dodai-dev/dodai/internal/state"
	"github.com/dodai-dev/dodai/internal/talos"
)

// Step names, as reported in progress, errors and the state file.
const (
	StepEtcd         = "etcd-check"
	StepSnapshot     = "etcd-snapshot"
	StepForfeit      = "forfeit-leadership"
	StepDrain        = "drain"
	StepConfig       = "apply-config"
	StepReboot       = "wait-reboot"
	StepUpgrade      = "upgrade"
	StepUpgradeWait  = "wait-upgrade"
	StepReady        = "wait-node-ready"
	StepUncordon     = "uncordon"
	StepControlPlane = "control-plane"
	StepKubelet      = "kubelet"
	StepInstall      = "install"
	StepPlatform     = "platform"
)

// Stages recorded as done per node.
const (
	stageNode         = "node"
	stageControlPlane = "control-plane"
	stageKubelet      = "kubelet"
)

// Options of a rollout.
type Options struct {
	Source   *cluster.Source
	Renderer *machineconfig.Renderer
	// Talosconfig authenticates to the nodes.
	Talosconfig *clientconfig.Config
	// Kube is the cluster's API (drain, Node readiness, static pods).
	Kube kubernetes.Interface
	// Port of the Talos API (default talos.DefaultPort).
	Port int
	// Nodes restricts the rollout to these nodes (default: all).
	Nodes []string
	// MaxUnavailable workers at once: a count ("3") or a percentage of the
	// workers ("10%", at least one). Default 1.
	MaxUnavailable string
	// StatePath is the rollout state file (state/rollout.json).
	StatePath string
	// SnapshotDir receives the etcd snapshots taken before control-plane
	// steps (cluster.Layout.EtcdSnapshots, state/etcd, where `dodai etcd
	// snapshot` keeps them; etcd.Client.SnapshotRotated); KeepSnapshots of
	// them are kept (default 10).
	SnapshotDir   string
	KeepSnapshots int
	// DrainTimeout bounds each drain (default 5 min).
	DrainTimeout time.Duration
	// NodeTimeout bounds each wait for a node (back from a reboot, Ready,
	// static pods up); default 15 min.
	NodeTimeout time.Duration
	// PollInterval between checks while waiting (default 250 ms).
	PollInterval time.Duration
	// Install, when set, installs the file's nodes that are not installed
	// yet (the bootstrap path) before the rollout.
	Install func(ctx context.Context, nodes []string) error
	// Platform, when set, applies the platform's releases and waits for
	// them (last).
	Platform func(ctx context.Context) error
	// Progress shows steps (default: log lines on Log).
	Progress Progress
	Log      *slog.Logger
}

// StepError is the failure that stopped a rollout.
type StepError struct {
	Node string
	Step string
	Err  error
}

func (e *StepError) Error() string {
	if e.Node == "" {
		return fmt.Sprintf("step %s: %v", e.Step, e.Err)
	}
	return fmt.Sprintf("node %s, step %s: %v", e.Node, e.Step, e.Err)
}

func (e *StepError) Unwrap() error { return e.Err }

// Result of a rollout.
type Result struct {
	// Changed is false when the cluster already matched the file.
	Changed bool `json:"changed"`
	// Resumed names the failure of the previous run this one resumed from.
	Resumed *Failure `json:"resumed,omitempty"`
	// Nodes lists, per node in the order worked on, the steps run.
	Nodes []NodeResult `json:"nodes,omitempty"`
	// Order is the order the nodes were worked on, per stage.
	Order map[string][]string `json:"order,omitempty"`
	// Snapshots taken before control-plane steps.
	Snapshots []string      `json:"snapshots,omitempty"`
	Elapsed   time.Duration `json:"elapsed"`
}

// NodeResult is what a node went through.
type NodeResult struct {
	Name  string        `json:"name"`
	Steps []StepResult  `json:"steps"`
	Took  time.Duration `json:"took"`
}

// StepResult is one step of a node.
type StepResult struct {
	Step   string        `json:"step"`
	Detail string        `json:"detail,omitempty"`
	Took   time.Duration `json:"took"`
}

type runner struct {
	o      Options
	spec   *cluster.Spec
	target *plan.Target
	store  *store
	prog   Progress
	log    *slog.Logger
	etcd   *etcd.Client
	bst    *state.Bootstrap

	mu      sync.Mutex
	results map[string]*NodeResult
	order   []string
	snaps   []string
}

// Order returns the order a rollout works on the plan's nodes: control
// planes one at a time with the etcd leader last, then the workers, which
// run with up to maxUnavailable at once.
func Order(p *plan.Plan, leader string, nodes []string) (controlPlanes, workers []string) {
	for _, n := range p.Nodes {
		if !n.Changes() || n.State == plan.StateNotInstalled || (len(nodes) > 0 && !slices.Contains(nodes, n.Name)) {
			continue
		}
		if n.Role == cluster.RoleControlPlane {
			controlPlanes = append(controlPlanes, n.Name)
		} else {
			workers = append(workers, n.Name)
		}
	}
	if i := slices.Index(controlPlanes, leader); i >= 0 {
		controlPlanes = append(slices.Delete(controlPlanes, i, i+1), leader)
	}
	return controlPlanes, workers
}

// MaxUnavailable resolves "N" or "P%" against the number of workers.
func MaxUnavailable(s string, workers int) (int, error) {
	if s == "" {
		return 1, nil
	}
	if p, ok := strings.CutSuffix(s, "%"); ok {
		v, err := strconv.Atoi(p)
		if err != nil || v <= 0 || v > 100 {
			return 0, fmt.Errorf("--max-unavailable %q: want a count or a percentage between 1%% and 100%%", s)
		}
		return max(1, workers*v/100), nil
	}
	v, err := strconv.Atoi(s)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("--max-unavailable %q: want a positive count or a percentage such as 10%%", s)
	}
	return v, nil
}

// Run executes the plan.
func Run(ctx context.Context, o Options, p *plan.Plan) (*Result, error) {
	start := time.Now()
	if p.Refused() {
		return nil, fmt.Errorf("the plan is refused:\n  %s", strings.Join(p.AllRefusals(), "\n  "))
	}
	if o.Port == 0 {
		o.Port = talos.DefaultPort
	}
	if o.NodeTimeout == 0 {
		o.NodeTimeout = 15 * time.Minute
	}
	if o.PollInterval == 0 {
		o.PollInterval = 250 * time.Millisecond
	}
	if o.KeepSnapshots == 0 {
		o.KeepSnapshots = 10
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Progress == nil {
		o.Progress = NewProgress(nil, false, o.Log)
	}
	if o.Kube == nil {
		return nil, errors.New("apply needs the cluster's kubeconfig (drain, Node readiness): run `dodai kubeconfig`")
	}
	st, err := loadStore(o.StatePath)
	if err != nil {
		return nil, err
	}
	r := &runner{o: o, spec: &o.Source.Cluster.Spec, store: st, prog: o.Progress, log: o.Log, results: map[string]*NodeResult{}}
	if r.target, err = plan.TargetImage(*r.spec); err != nil {
		return nil, err
	}
	if r.bst, err = state.ReadBootstrap(o.Source.Layout().BootstrapState()); err != nil {
		return nil, err
	}
	res := &Result{Resumed: st.failure(), Order: map[string][]string{}}
	pending := len(st.st.Nodes) > 0 || st.st.platformPending()
	if !p.Changes() && !pending {
		res.Elapsed = time.Since(start)
		return res, nil
	}
	res.Changed = true
	r.etcd = r.etcdClient()
	defer r.etcd.Close()
	if err := st.update(func(s *State) {
		if s.Started == nil || s.Finished != nil {
			t := now()
			s.Started, s.Finished = &t, nil
		}
	}); err != nil {
		return nil, err
	}
	err = r.run(ctx, p, res)
	res.Elapsed = time.Since(start)
	r.mu.Lock()
	for _, name := range r.order {
		res.Nodes = append(res.Nodes, *r.results[name])
	}
	res.Snapshots = slices.Clone(r.snaps)
	r.mu.Unlock()
	if err != nil {
		var se *StepError
		f := &Failure{Error: err.Error(), At: now()}
		if errors.As(err, &se) {
			f.Node, f.Step, f.Error = se.Node, se.Step, se.Err.Error()
		}
		if ctx.Err() == nil {
			_ = st.update(func(s *State) { s.Failure = f })
		}
		return res, err
	}
	if err := st.update(func(s *State) {
		t := now()
		s.Finished, s.Failure = &t, nil
	}); err != nil {
		return res, err
	}
	return res, nil
}

func (r *runner) run(ctx context.Context, p *plan.Plan, res *Result) error {
	var install []string
	for _, n := range p.Nodes {
		if n.State == plan.StateNotInstalled && (len(r.o.Nodes) == 0 || slices.Contains(r.o.Nodes, n.Name)) {
			install = append(install, n.Name)
		}
	}
	if len(install) > 0 {
		if r.o.Install == nil {
			return &StepError{Node: install[0], Step: StepInstall, Err: errors.New("not installed: run `dodai bootstrap --node " + install[0] + "`")}
		}
		res.Order[StepInstall] = install
		if err := r.o.Install(ctx, install); err != nil {
			return &StepError{Node: strings.Join(install, ","), Step: StepInstall, Err: err}
		}
	}

	leader := ""
	if est, err := r.etcd.Status(ctx); err == nil {
		leader = est.Leader
	}
	cps, workers := Order(p, leader, r.o.Nodes)
	// Nodes left cordoned or mid-operation by an interrupted run are
	// finished too, even when the plan sees nothing left to do on them.
	for name := range r.pendingNodes() {
		n := r.fileNode(name)
		if n == nil || slices.Contains(cps, name) || slices.Contains(workers, name) {
			continue
		}
		if n.Role == cluster.RoleControlPlane {
			cps = append(cps, name)
		} else {
			workers = append(workers, name)
		}
	}
	if i := slices.Index(cps, leader); i >= 0 && i != len(cps)-1 {
		cps = append(slices.Delete(cps, i, i+1), leader)
	}
	maxU, err := MaxUnavailable(r.o.MaxUnavailable, len(workers))
	if err != nil {
		return err
	}

	// 1. Machine configs and Talos images.
	res.Order[stageNode] = append(slices.Clone(cps), workers...)
	for _, name := range cps {
		if err := r.nodeStage(ctx, r.fileNode(name)); err != nil {
			return err
		}
	}
	if err := r.window(ctx, workers, maxU, func(ctx context.Context, name string) error {
		return r.nodeStage(ctx, r.fileNode(name))
	}); err != nil {
		return err
	}

	// 2. Kubernetes: control-plane components node by node, then kubelets.
	if p.Kubernetes != nil {
		for _, name := range cps {
			if err := r.controlPlaneStage(ctx, r.fileNode(name)); err != nil {
				return err
			}
		}
		res.Order[stageControlPlane] = cps
		res.Order[stageKubelet] = append(slices.Clone(cps), workers...)
		for _, name := range cps {
			if err := r.kubeletStage(ctx, r.fileNode(name)); err != nil {
				return err
			}
		}
		if err := r.window(ctx, workers, maxU, func(ctx context.Context, name string) error {
			return r.kubeletStage(ctx, r.fileNode(name))
		}); err != nil {
			return err
		}
	}

	// 3. The platform: its changes, or the wait the last run did not see
	// through (the releases already match the file; they may not be Ready
	// at their new generation).
	resume := res.Resumed != nil && res.Resumed.Step == StepPlatform && len(r.o.Nodes) == 0
	if (len(p.Platform) > 0 || resume) && r.o.Platform != nil {
		r.prog.Start("platform", StepPlatform)
		err := r.o.Platform(ctx)
		r.prog.End("platform", StepPlatform, err)
		if err != nil {
			return &StepError{Step: StepPlatform, Err: err}
		}
	}
	return nil
}

// pendingNodes are the nodes the state file says need finishing.
func (r *runner) pendingNodes() map[string]bool {
	r.store.mu.Lock()
	defer r.store.mu.Unlock()
	out := map[string]bool{}
	for name, n := range r.store.st.Nodes {
		if n.Cordoned || n.Inflight != nil {
			out[name] = true
		}
	}
	return out
}

func (r *runner) fileNode(name string) *cluster.Node {
	for i := range r.spec.Nodes {
		if r.spec.Nodes[i].Name == name {
			return &r.spec.Nodes[i]
		}
	}
	return nil
}

// window runs f on the nodes with at most n at once, starting the next as
// soon as one finishes. The first error stops new starts; nodes already
// started finish; the first error is returned.
func (r *runner) window(ctx context.Context, nodes []string, n int, f func(context.Context, string) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	sem := make(chan struct{}, n)
	failed := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return first != nil
	}
	for _, name := range nodes {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return ctx.Err()
		}
		if failed() {
			<-sem
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := f(ctx, name); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return first
}

// step runs one step of a node with progress and bookkeeping.
func (r *runner) step(node, step string, f func() (string, error)) error {
	r.prog.Start(node, step)
	t := time.Now()
	detail, err := f()
	took := time.Since(t)
	r.prog.End(node, step, err)
	if err != nil {
		return &StepError{Node: node, Step: step, Err: err}
	}
	r.mu.Lock()
	nr := r.results[node]
	if nr == nil {
		nr = &NodeResult{Name: node}
		r.results[node] = nr
		r.order = append(r.order, node)
	}
	nr.Steps = append(nr.Steps, StepResult{Step: step, Detail: detail, Took: took})
	nr.Took += took
	r.mu.Unlock()
	return nil
}
