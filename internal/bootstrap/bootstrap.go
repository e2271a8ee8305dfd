// Package bootstrap brings the nodes of a cluster file from Talos
// maintenance mode to a working Kubernetes cluster: it finds each node
// (discovery by MAC, or its configured address when already installed),
// resolves its install disk, renders and dry-runs then applies its config,
// waits until it answers the authenticated API on its configured address,
// bootstraps etcd exactly once on the first control-plane node (recorded in
// state/bootstrap.json), waits for etcd and the Kubernetes API to be
// healthy, and writes the kubeconfig. Nodes proceed in parallel; a failing
// node doesn't stop the others. Re-running resumes; re-running when done
// changes nothing.
package bootstrap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/discover"
	"github.com/dodai-dev/dodai/internal/fsutil"
	"github.com/dodai-dev/dodai/internal/machineconfig"
	"github.com/dodai-dev/dodai/internal/phase"
	"github.com/dodai-dev/dodai/internal/poll"
	"github.com/dodai-dev/dodai/internal/state"
	"github.com/dodai-dev/dodai/internal/talos"
)

// Options of a bootstrap run.
type Options struct {
	// Source is the loaded cluster file.
	Source *cluster.Source
	// Renderer renders node configs (with the cluster's stored secrets).
	Renderer *machineconfig.Renderer
	// Nodes restricts the run to these node names (default: all).
	Nodes []string
	// Networks to search for maintenance-mode machines (see
	// discover.TargetsFor: default the host's directly connected
	// networks, plus the addresses netboot and bootstrap recorded).
	Networks []netip.Prefix
	// Port of the Talos API (default talos.DefaultPort).
	Port int
	// PollInterval between retries of waits (default 1s).
	PollInterval time.Duration
	// ProgressInterval between progress messages while waiting (default 10s).
	ProgressInterval time.Duration
	// Sequential applies and waits for one node after the other, as
	// talos-bootstrap does (used by the benchmark for comparison).
	Sequential bool
	// Log receives progress.
	Log *slog.Logger
}

// NodeResult is the outcome for one node.
type NodeResult struct {
	Name    string `json:"name"`
	Role    string `json:"role"`
	Address string `json:"address,omitempty"`
	// Action is what this run did: phase.Applied, phase.Configured
	// (already) or phase.Failed.
	Action phase.Phase `json:"action"`
	Error  string      `json:"error,omitempty"`
}

// Result of a run.
type Result struct {
	Nodes []NodeResult `json:"nodes"`
	// BootstrapCalled says whether this run sent the etcd Bootstrap call.
	BootstrapCalled bool `json:"bootstrapCalled"`
	// Kubeconfig is the path written (empty if unchanged or not reached).
	Kubeconfig string `json:"kubeconfig,omitempty"`
}

// NodeError is a failure of one node.
type NodeError struct {
	Node string
	Err  error
}

func (e *NodeError) Error() string { return "node " + e.Node + ": " + e.Err.Error() }
func (e *NodeError) Unwrap() error { return e.Err }

type runner struct {
	opts   Options
	spec   *cluster.Spec
	log    *slog.Logger
	store  *store
	tc     *clientconfig.Config
	port   int
	poll   time.Duration
	prog   time.Duration
	paths  cluster.Layout
	found  map[string]*talos.Machine // by node name
	mu     sync.Mutex
	up     map[string]chan struct{} // closed when a node answers the authenticated API
	failed map[string]chan struct{} // closed when a node failed before that
	addrs  map[string]string        // configured address per node
	called bool
	// clusterDone is closed when the cluster steps (etcd bootstrap,
	// kubeconfig) ended; clusterOK says whether they succeeded.
	clusterDone chan struct{}
	clusterOK   bool
}

// NodeIP returns the IP of a node's configured static address ("" for DHCP).
func NodeIP(n *cluster.Node) string {
	if n.Address == "" {
		return ""
	}
	if p, err := netip.ParsePrefix(n.Address); err == nil {
		return p.Addr().String()
	}
	if a, err := netip.ParseAddr(n.Address); err == nil {
		return a.String()
	}
	return ""
}

// FirstControlPlane is the node etcd is bootstrapped on.
func FirstControlPlane(spec *cluster.Spec) *cluster.Node {
	for i := range spec.Nodes {
		if spec.Nodes[i].Role == cluster.RoleControlPlane {
			return &spec.Nodes[i]
		}
	}
	return nil
}

// Run bootstraps the cluster. The returned error joins every node's error
// (each a *NodeError) and cluster-level failures.
func Run(ctx context.Context, opts Options) (*Result, error) {
	r := &runner{opts: opts, spec: &opts.Source.Cluster.Spec, log: opts.Log, paths: opts.Source.Layout(),
		port: opts.Port, poll: opts.PollInterval, prog: opts.ProgressInterval,
		up: map[string]chan struct{}{}, failed: map[string]chan struct{}{}, addrs: map[string]string{}, clusterDone: make(chan struct{})}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.port == 0 {
		r.port = talos.DefaultPort
	}
	if r.poll == 0 {
		r.poll = time.Second
	}
	if r.prog == 0 {
		r.prog = 10 * time.Second
	}
	res := &Result{}
	selected, err := r.selectNodes()
	if err != nil {
		return res, err
	}
	first := FirstControlPlane(r.spec)
	if first == nil {
		return res, errors.New("the cluster has no control-plane node")
	}
	if r.store, err = loadStore(r.paths); err != nil {
		return res, err
	}
	if r.tc, _, err = opts.Renderer.EnsureTalosconfig(r.paths.Talosconfig()); err != nil {
		return res, err
	}
	for i := range r.spec.Nodes {
		n := &r.spec.Nodes[i]
		r.up[n.Name] = make(chan struct{})
		r.failed[n.Name] = make(chan struct{})
		if a := nodeAddress(n, &r.store.st); a != "" {
			r.addrs[n.Name] = a
		}
	}

	// Which selected nodes are already configured? The rest must be found
	// in maintenance mode.
	configured := make([]bool, len(selected))
	var wg sync.WaitGroup
	for i, n := range selected {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if addr := r.addrs[n.Name]; addr != "" {
				configured[i] = r.answers(ctx, addr) == nil
			}
		}()
	}
	wg.Wait()
	var discoverErr error
	if slices.Contains(configured, false) {
		discoverErr = r.discover(ctx)
	}

	results := make([]NodeResult, len(selected))
	errs := make([]error, len(selected))
	var clusterErr error
	var cwg sync.WaitGroup
	cwg.Add(1)
	go func() {
		defer cwg.Done()
		defer close(r.clusterDone)
		kc, err := r.clusterSteps(ctx, first, slices.Contains(selected, first))
		if err != nil {
			clusterErr = err
			return
		}
		res.Kubeconfig = kc
		r.clusterOK = true
	}()
	runNode := func(i int) {
		n := selected[i]
		results[i] = NodeResult{Name: n.Name, Role: n.Role}
		action, err := r.node(ctx, n, configured[i], discoverErr)
		if err != nil && !r.isUp(n.Name) {
			close(r.failed[n.Name])
		}
		if err == nil {
			// Once the cluster is up, the node must report Ready.
			// The cluster steps end by themselves when ctx does; their
			// failure is reported once, as the cluster's.
			<-r.clusterDone
			if r.clusterOK {
				err = r.waitReady(ctx, n)
			}
			if err == nil && r.clusterOK && n.Role == cluster.RoleControlPlane {
				err = r.waitEtcdMember(ctx, n)
			}
		}
		results[i].Action = action
		results[i].Address = r.addr(n.Name)
		if err != nil {
			results[i].Action = phase.Failed
			results[i].Error = err.Error()
			errs[i] = &NodeError{Node: n.Name, Err: err}
			r.log.Error("node failed", "node", n.Name, "error", err)
		}
	}
	if opts.Sequential {
		for i := range selected {
			runNode(i)
		}
	} else {
		for i := range selected {
			wg.Add(1)
			go func() { defer wg.Done(); runNode(i) }()
		}
		wg.Wait()
	}
	cwg.Wait()
	res.Nodes = results
	r.mu.Lock()
	res.BootstrapCalled = r.called
	r.mu.Unlock()

	// One write for every node that answered the authenticated API.
	if err := r.store.update(func(s *state.Bootstrap) {
		for _, n := range selected {
			if !r.isUp(n.Name) {
				continue
			}
			ns := s.Nodes[n.Name]
			if ns == nil {
				ns = &state.Node{}
				s.Nodes[n.Name] = ns
			}
			ns.Address = r.addr(n.Name)
			if ns.Configured == nil {
				ns.Configured = now()
			}
		}
	}); err != nil {
		errs = append(errs, err)
	}
	all := append(errs, clusterErr)
	return res, errors.Join(all...)
}

func (r *runner) selectNodes() ([]*cluster.Node, error) {
	var out []*cluster.Node
	if len(r.opts.Nodes) == 0 {
		for i := range r.spec.Nodes {
			out = append(out, &r.spec.Nodes[i])
		}
		return out, nil
	}
	for _, name := range r.opts.Nodes {
		if slices.ContainsFunc(out, func(n *cluster.Node) bool { return n.Name == name }) {
			continue // --node w1 --node w1: one worker per node
		}
		i := slices.IndexFunc(r.spec.Nodes, func(n cluster.Node) bool { return n.Name == name })
		if i < 0 {
			return nil, fmt.Errorf("node %q: no such node in %s", name, r.opts.Source.File)
		}
		out = append(out, &r.spec.Nodes[i])
	}
	return out, nil
}

func (r *runner) addr(name string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.addrs[name]
}

func (r *runner) setAddr(name, addr string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.addrs[name] = addr
}

func (r *runner) isUp(name string) bool {
	select {
	case <-r.up[name]:
		return true
	default:
		return false
	}
}

func (r *runner) markUp(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.up[name]:
	default:
		close(r.up[name])
	}
}

// authClient returns a client for a configured node.
func (r *runner) authClient(ctx context.Context, addr string) (*client.Client, error) {
	return talos.Authenticated(ctx, r.tc, talos.Endpoint(addr, r.port))
}

// answers checks once whether the node answers the authenticated API.
func (r *runner) answers(ctx context.Context, addr string) error {
	return Answers(ctx, r.tc, addr, r.port)
}

// discover finds the cluster's nodes in maintenance mode by MAC.
func (r *runner) discover(ctx context.Context) error {
	start := time.Now()
	tg, machines, err := discover.Find(ctx, r.paths, r.opts.Source.Cluster, r.opts.Networks, discover.Options{Port: r.port, Log: r.log})
	if err != nil {
		return fmt.Errorf("discovering maintenance-mode machines: %w", err)
	}
	r.found = map[string]*talos.Machine{}
	for _, m := range machines {
		if n := discover.NodeFor(m, r.opts.Source.Cluster); n != nil {
			r.found[n.Name] = m
		}
	}
	r.log.Info("discovery done", "machines", len(machines), "matched", len(r.found), "networks", fmt.Sprint(tg.Networks), "hosts", len(tg.Hosts), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// node brings one node to the point where it answers the authenticated API
// on its configured address, and says what it did: phase.Applied or
// phase.Configured (it already was).
func (r *runner) node(ctx context.Context, n *cluster.Node, configured bool, discoverErr error) (phase.Phase, error) {
	log := r.log.With("node", n.Name)
	if configured {
		log.Info("already configured: answers the authenticated Talos API", "address", r.addr(n.Name))
		r.markUp(n.Name)
		return phase.Configured, nil
	}
	if discoverErr != nil {
		return "", discoverErr
	}
	m := r.found[n.Name]
	if prev := r.store.node(n.Name); m == nil && prev.Applied != nil && r.addr(n.Name) != "" {
		// A previous run applied the config; the node is still rebooting.
		log.Info("config was applied by an earlier run; waiting for the node", "address", r.addr(n.Name))
		if err := r.waitUp(ctx, n.Name, r.addr(n.Name), prev.MaintenanceAddress); err != nil {
			return "", err
		}
		r.markUp(n.Name)
		return phase.Applied, nil
	}
	if m == nil {
		where := "on the scanned networks"
		if a := r.addr(n.Name); a != "" {
			where += ", nor answering the authenticated API on " + a
		}
		return "", fmt.Errorf("machine with MAC %s not found in maintenance mode %s (is it booted from the Talos image? see `dodai discover`)", strings.Join(n.MACs, "/"), where)
	}
	addr, err := ApplyConfig(ctx, ApplyOptions{Spec: r.spec, Renderer: r.opts.Renderer, Port: r.port, Log: r.log}, n, m, storeRecord{r.store, n.Name})
	if err != nil {
		return "", err
	}
	r.setAddr(n.Name, addr)
	if err := r.waitUp(ctx, n.Name, addr, m.Address); err != nil {
		return "", err
	}
	r.markUp(n.Name)
	return phase.Applied, nil
}

// waitUp waits until the node answers the authenticated API on addr.
func (r *runner) waitUp(ctx context.Context, name, addr, oldAddr string) error {
	err := poll.Until(ctx, r.pollOptions(func(p poll.Progress) {
		old := "gone"
		if c, err := net.DialTimeout("tcp", talos.Endpoint(oldAddr, r.port), time.Second); err == nil {
			c.Close()
			old = "still answering"
		}
		r.log.Info("waiting for the node to come back configured", "node", name, "address", addr,
			"elapsed", p.Elapsed.Round(time.Second), "maintenanceAddress", oldAddr+" ("+old+")", "last", shortErr(p.Last))
	}), func(ctx context.Context) (bool, error) {
		err := r.answers(ctx, addr)
		return err == nil, err
	})
	var perr *poll.Error
	if errors.As(err, &perr) {
		return fmt.Errorf("config applied, but the node did not answer the authenticated Talos API on %s %s (waited %s; last error: %s)",
			talos.Endpoint(addr, r.port), within(ctx), perr.Elapsed.Round(time.Millisecond), shortErr(perr.Last))
	}
	if err != nil {
		return err
	}
	r.log.Info("node is up", "node", name, "address", addr)
	return nil
}

// pollOptions are the options of every wait of a run; progress, if not
// nil, is logged every ProgressInterval.
func (r *runner) pollOptions(progress func(poll.Progress)) poll.Options {
	return poll.Options{Interval: r.poll, Every: r.prog, OnProgress: progress}
}

func shortErr(err error) string {
	if err == nil {
		return "none"
	}
	if s, ok := status.FromError(err); ok {
		return s.Code().String() + ": " + s.Message()
	}
	return err.Error()
}

func grpcErr(err error) error {
	if s, ok := status.FromError(err); ok {
		return fmt.Errorf("%s (%s)", s.Message(), s.Code())
	}
	return err
}

// clusterSteps bootstraps etcd on the first control plane once it is up,
// confirms etcd, waits for the Kubernetes API and writes the kubeconfig.
func (r *runner) clusterSteps(ctx context.Context, first *cluster.Node, selected bool) (string, error) {
	if !selected {
		// Not part of this run: it must already be configured.
		addr := r.addr(first.Name)
		if addr == "" || r.answers(ctx, addr) != nil {
			if r.store.bootstrap().Done != nil {
				return "", nil
			}
			return "", fmt.Errorf("etcd is bootstrapped on %s, the first control-plane node, which is not configured yet: run bootstrap for it too", first.Name)
		}
		r.markUp(first.Name)
	}
	select {
	case <-r.up[first.Name]:
	case <-r.failed[first.Name]:
		return "", fmt.Errorf("etcd not bootstrapped: %s, the first control-plane node, failed (see its error)", first.Name)
	case <-ctx.Done():
		return "", fmt.Errorf("etcd not bootstrapped: %s, the first control-plane node, did not come up %s", first.Name, within(ctx))
	}
	addr := r.addr(first.Name)
	c, err := r.authClient(ctx, addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if err := r.bootstrapEtcd(ctx, c, first.Name); err != nil {
		return "", &NodeError{Node: first.Name, Err: err}
	}
	if err := r.confirmEtcd(ctx, c, first.Name); err != nil {
		return "", &NodeError{Node: first.Name, Err: err}
	}
	kc, err := r.kubeconfig(ctx, c, first.Name)
	if err != nil {
		return "", &NodeError{Node: first.Name, Err: err}
	}
	return kc, nil
}

func etcdRunning(ctx context.Context, c *client.Client) (bool, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	svcs, err := c.ServiceInfo(ctx, "etcd")
	if err != nil {
		return false, "", err
	}
	if len(svcs) == 0 || svcs[0].Service == nil {
		return false, "not present", nil
	}
	s := svcs[0].Service
	healthy := s.GetHealth().GetHealthy()
	return s.State == "Running" && healthy, fmt.Sprintf("%s (healthy=%v)", s.State, healthy), nil
}

// retryable bootstrap refusals (talos v1alpha1_server.go).
func retryableBootstrap(err error) bool {
	s, ok := status.FromError(err)
	if !ok {
		return false
	}
	switch s.Code() {
	case codes.Unavailable, codes.DeadlineExceeded:
		// Transient (connection reset, slow node). Retrying cannot bootstrap
		// twice: a Bootstrap that did arrive makes the next one AlreadyExists.
		return true
	case codes.FailedPrecondition:
	default:
		return false
	}
	return strings.Contains(s.Message(), "bootstrap is not available yet") || strings.Contains(s.Message(), "time is not in sync")
}

// bootstrapEtcd sends Bootstrap at most until accepted, never when the
// state file (or etcd itself) says it is done.
func (r *runner) bootstrapEtcd(ctx context.Context, c *client.Client, node string) error {
	bs := r.store.bootstrap()
	if bs.Done != nil {
		r.log.Info("etcd already bootstrapped", "node", bs.Node, "at", bs.Done.Format(time.RFC3339))
		return nil
	}
	// A previous run may have sent it and died before recording it.
	if ok, _, err := etcdRunning(ctx, c); err == nil && ok {
		r.log.Info("etcd already running; recording bootstrap as done", "node", node)
		return r.store.update(func(s *state.Bootstrap) {
			s.Bootstrap = &state.EtcdBootstrap{Node: node, Requested: bs.Requested, Done: now()}
		})
	}
	if err := r.store.update(func(s *state.Bootstrap) {
		if s.Bootstrap == nil || s.Bootstrap.Requested == nil {
			s.Bootstrap = &state.EtcdBootstrap{Node: node, Requested: now()}
		}
	}); err != nil {
		return err
	}
	// Retried while the node refuses for a reason that passes (not ready
	// yet, time not in sync, a transient error); any other refusal is final.
	var lastRefusal error
	err := poll.Until(ctx, r.pollOptions(func(p poll.Progress) {
		r.log.Info("node not ready for bootstrap yet, retrying", "node", node, "reason", shortErr(p.Last), "elapsed", p.Elapsed.Round(time.Second))
	}), func(ctx context.Context) (bool, error) {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := c.Bootstrap(cctx, &machine.BootstrapRequest{})
		cancel()
		r.mu.Lock()
		r.called = true
		r.mu.Unlock()
		switch {
		case err == nil:
			r.log.Info("etcd bootstrapped", "node", node)
			return true, nil
		case status.Code(err) == codes.AlreadyExists:
			r.log.Info("etcd was already bootstrapped", "node", node, "detail", shortErr(err))
			return true, nil
		case ctx.Err() != nil:
			// The run's timeout hit during the call: the wait ends with
			// why it kept being refused before.
			return false, err
		case retryableBootstrap(err):
			if lastRefusal == nil {
				r.log.Info("node not ready for bootstrap yet, retrying", "node", node, "reason", shortErr(err))
			}
			lastRefusal = err
			return false, err
		default:
			return false, poll.Stop(fmt.Errorf("bootstrapping etcd: %w", grpcErr(err)))
		}
	})
	var perr *poll.Error
	if errors.As(err, &perr) {
		why := shortErr(perr.Last)
		if lastRefusal != nil {
			why = shortErr(lastRefusal)
		}
		return fmt.Errorf("etcd bootstrap not accepted %s (waited %s): %s", within(ctx), perr.Elapsed.Round(time.Millisecond), why)
	}
	if err != nil {
		return err
	}
	return r.store.update(func(s *state.Bootstrap) { s.Bootstrap.Done = now() })
}

// confirmEtcd waits until etcd runs healthy and lists members (the
// bootstrap intent is lost if the node reboots before etcd starts).
func (r *runner) confirmEtcd(ctx context.Context, c *client.Client, node string) error {
	var last string
	err := poll.Until(ctx, r.pollOptions(func(p poll.Progress) {
		r.log.Info("waiting for etcd", "node", node, "state", last, "elapsed", p.Elapsed.Round(time.Second))
	}), func(ctx context.Context) (bool, error) {
		ok, st, err := etcdRunning(ctx, c)
		if err == nil && ok {
			mctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			resp, merr := c.EtcdMemberList(mctx, &machine.EtcdMemberListRequest{})
			cancel()
			if merr == nil && len(resp.GetMessages()) > 0 && len(resp.GetMessages()[0].GetMembers()) > 0 {
				r.log.Info("etcd is healthy", "node", node, "members", len(resp.GetMessages()[0].GetMembers()))
				return true, nil
			}
			err = merr
		}
		last = st
		if err != nil {
			last = shortErr(err)
		}
		return false, err
	})
	if err != nil {
		return fmt.Errorf("etcd did not become healthy %s (last: %s)", within(ctx), last)
	}
	return nil
}

// kubeconfig fetches the admin kubeconfig, waits for /readyz and writes it.
// A kubeconfig already in the cluster directory that reaches a ready API is
// kept: Talos issues a new client certificate on every Kubeconfig call, so
// fetching again would rewrite the file on every run.
func (r *runner) kubeconfig(ctx context.Context, c *client.Client, node string) (string, error) {
	if old, err := os.ReadFile(r.paths.Kubeconfig()); err == nil {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := Readyz(rctx, old)
		cancel()
		if err == nil {
			r.log.Info("kubeconfig is current: the Kubernetes API is ready with it", "node", node)
			return "", nil
		}
		r.log.Info("fetching a new kubeconfig", "node", node, "reason", shortErr(err))
	}
	var kc []byte
	err := poll.Until(ctx, r.pollOptions(nil), func(ctx context.Context) (bool, error) {
		kctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		var err error
		kc, err = c.Kubeconfig(kctx)
		return err == nil, err
	})
	var perr *poll.Error
	if errors.As(err, &perr) && perr.Last != nil {
		return "", fmt.Errorf("fetching kubeconfig: %w", grpcErr(perr.Last))
	}
	if err != nil {
		return "", fmt.Errorf("fetching kubeconfig: %w", err)
	}
	if err := r.waitReadyz(ctx, kc); err != nil {
		return "", err
	}
	written, err := WriteKubeconfig(r.paths, kc)
	if err != nil || !written {
		return "", err
	}
	return r.paths.Kubeconfig(), nil
}

// WriteKubeconfig writes the cluster directory's kubeconfig (0600,
// atomically) when its content changed, and says whether it did.
func WriteKubeconfig(l cluster.Layout, kc []byte) (bool, error) {
	path := l.Kubeconfig()
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, kc) {
		return false, nil
	}
	if err := fsutil.WriteFileAtomic(path, kc, 0o600); err != nil {
		return false, err
	}
	return true, nil
}

// Readyz checks the Kubernetes API's /readyz with the kubeconfig.
func Readyz(ctx context.Context, kc []byte) error {
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kc)
	if err != nil {
		return fmt.Errorf("kubeconfig from the node is invalid: %w", err)
	}
	cfg.Timeout = 5 * time.Second
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return err
	}
	u, err := url.JoinPath(cfg.Host, "/readyz")
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: %s: %s", u, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

func (r *runner) waitReadyz(ctx context.Context, kc []byte) error {
	if err := WaitReadyz(ctx, kc, r.pollOptions(nil), r.log); err != nil {
		return err
	}
	r.log.Info("Kubernetes API is ready")
	return nil
}

// WaitReadyz waits (poll.Until with o) until the Kubernetes API of kc
// answers /readyz, logging the wait every o.Every; bootstrap and etcd
// restore wait for the API this way.
func WaitReadyz(ctx context.Context, kc []byte, o poll.Options, log *slog.Logger) error {
	o.OnProgress = func(p poll.Progress) {
		log.Info("waiting for the Kubernetes API", "error", shortErr(p.Last), "elapsed", p.Elapsed.Round(time.Second))
	}
	err := poll.Until(ctx, o, func(ctx context.Context) (bool, error) {
		err := Readyz(ctx, kc)
		return err == nil, err
	})
	var perr *poll.Error
	if errors.As(err, &perr) {
		return fmt.Errorf("the Kubernetes API did not become ready %s: %w", within(ctx), perr.Last)
	}
	return err
}

// waitReady waits until a configured node is healthy (phase.Healthy:
// running and Ready).
func (r *runner) waitReady(ctx context.Context, n *cluster.Node) error {
	addr := r.addr(n.Name)
	c, err := r.authClient(ctx, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	stage := phase.Unknown
	err = poll.Until(ctx, r.pollOptions(func(p poll.Progress) {
		r.log.Info("waiting for node to report ready", "node", n.Name, "stage", stage, "error", p.Last)
	}), func(ctx context.Context) (bool, error) {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		s, ready, err := talos.MachineStatus(sctx, c.COSI)
		if err != nil {
			return false, err
		}
		stage = s
		return phase.Healthy(s, ready), nil
	})
	if err != nil {
		return fmt.Errorf("node did not report Ready %s (stage %q)", within(ctx), stage)
	}
	return nil
}

// within ends a "did not … " message: the run's timeout expired, or the
// run was interrupted.
func within(ctx context.Context) string {
	if errors.Is(ctx.Err(), context.Canceled) {
		return "before dodai was interrupted"
	}
	return "within the timeout"
}
