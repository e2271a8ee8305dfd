package plan

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
	"github.com/siderolabs/talos/pkg/machinery/config"
	"google.golang.org/grpc/status"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/dodai-dev/dodai/internal/bootstrap"
	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/machineconfig"
	"github.com/dodai-dev/dodai/internal/state"
	"github.com/dodai-dev/dodai/internal/talos"
	"github.com/dodai-dev/dodai/internal/talos/compat"
)

// Options of Build.
type Options struct {
	Source   *cluster.Source
	Renderer *machineconfig.Renderer
	// Talosconfig authenticates to the nodes.
	Talosconfig *clientconfig.Config
	// Kube is the cluster's API (nil: no kubeconfig; Kubernetes checks are
	// skipped with a warning).
	Kube kubernetes.Interface
	// Port of the Talos API (default talos.DefaultPort).
	Port int
	// Nodes restricts the node part to these names (default: all).
	Nodes []string
	// Timeout bounds each node's queries (default 30 s).
	Timeout time.Duration
	// Platform, when set, computes the platform's HelmRelease changes.
	Platform func(ctx context.Context) ([]*ReleaseChange, error)
	Log      *slog.Logger
}

// Build compares the running cluster with the file.
func Build(ctx context.Context, o Options) (*Plan, error) {
	if o.Port == 0 {
		o.Port = talos.DefaultPort
	}
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Second
	}
	spec := &o.Source.Cluster.Spec
	for _, name := range o.Nodes {
		if !slices.ContainsFunc(spec.Nodes, func(n cluster.Node) bool { return n.Name == name }) {
			return nil, fmt.Errorf("no node %q in %s", name, o.Source.File)
		}
	}
	target, err := TargetImage(*spec)
	if err != nil {
		return nil, err
	}
	bst, err := state.ReadBootstrap(o.Source.Layout().BootstrapState())
	if err != nil {
		return nil, err
	}
	p := &Plan{Cluster: o.Source.Cluster.Metadata.Name}
	var nodes []*cluster.Node
	for i := range spec.Nodes {
		if len(o.Nodes) == 0 || slices.Contains(o.Nodes, spec.Nodes[i].Name) {
			nodes = append(nodes, &spec.Nodes[i])
		}
	}
	p.Nodes = make([]*NodePlan, len(nodes))
	facts := make([]*Facts, len(nodes))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			nctx, cancel := context.WithTimeout(ctx, o.Timeout)
			defer cancel()
			p.Nodes[i], facts[i] = o.node(nctx, n, target, bst)
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	o.kubernetes(ctx, p, nodes, facts)
	o.versions(p, facts)
	o.etcd(ctx, p)
	if o.Kube != nil {
		kn, err := o.Kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			p.Warnings = append(p.Warnings, fmt.Sprintf("listing Kubernetes nodes: %v", err))
		} else {
			for _, k := range kn.Items {
				if !slices.ContainsFunc(spec.Nodes, func(n cluster.Node) bool { return n.Name == k.Name }) {
					p.Unknown = append(p.Unknown, k.Name)
				}
			}
			slices.Sort(p.Unknown)
		}
	}
	if o.Platform != nil {
		rc, err := o.Platform(ctx)
		switch {
		case errors.Is(err, ErrPlatformNotInstalled):
			p.Warnings = append(p.Warnings, err.Error())
		case err != nil:
			p.Refusals = append(p.Refusals, fmt.Sprintf("platform: %v", err))
		}
		p.Platform = rc
	}
	return p, nil
}

// NodeAddress is where a configured node answers: its static address, or
// the one bootstrap recorded (DHCP).
func NodeAddress(n *cluster.Node, bst *state.Bootstrap) string {
	if ip := bootstrap.NodeIP(n); ip != "" {
		return ip
	}
	if bst != nil && bst.Nodes[n.Name] != nil {
		return bst.Nodes[n.Name].Address
	}
	return ""
}

// Connect opens an authenticated client to a configured node.
func Connect(ctx context.Context, tc *clientconfig.Config, addr string, port int) (*client.Client, error) {
	return talos.Authenticated(ctx, tc, talos.Endpoint(addr, port))
}

func (o Options) node(ctx context.Context, n *cluster.Node, target *Target, bst *state.Bootstrap) (*NodePlan, *Facts) {
	np := &NodePlan{Name: n.Name, Role: n.Role, Address: NodeAddress(n, bst)}
	installed := bst.Nodes[n.Name] != nil && bst.Nodes[n.Name].Configured != nil
	if np.Address == "" {
		np.State = StateNotInstalled
		return np, nil
	}
	c, err := Connect(ctx, o.Talosconfig, np.Address, o.Port)
	var f *Facts
	if err == nil {
		defer c.Close()
		f, err = ReadFacts(ctx, c)
	}
	if err != nil {
		if !installed {
			np.State = StateNotInstalled
			return np, nil
		}
		np.State, np.Error = StateUnreachable, talosError(err)
		np.Refusals = append(np.Refusals, "does not answer the Talos API on "+np.Address+": "+np.Error)
		return np, nil
	}
	np.TalosVersion, np.Extensions = f.TalosVersion, f.Extensions
	up, refusals, warnings := target.UpgradeFor(f)
	np.Upgrade = up
	np.Refusals = append(np.Refusals, refusals...)
	np.Warnings = append(np.Warnings, warnings...)
	// Rendered once for the release the node runs: the config change, the
	// Kubernetes change and the upgrade's new form all start from it.
	rendered, err := renderNode(o.Renderer, n, f)
	if err == nil {
		err = o.nodeConfig(ctx, c, n, f, rendered, np)
	}
	if err != nil {
		np.Refusals = append(np.Refusals, err.Error())
	}
	if up != nil && rendered != nil {
		if up.NewForm, err = NewForm(o.Renderer, n, f, rendered, up.ToVersion); err != nil {
			np.Refusals = append(np.Refusals, err.Error())
		}
	}
	np.State = StateUnchanged
	if np.Upgrade != nil || np.Config != nil || np.Kubernetes != nil {
		np.State = StateChanges
	}
	return np, f
}

// nodeConfig fills the config and Kubernetes parts of a node's plan from
// the node's rendered config (renderNode).
func (o Options) nodeConfig(ctx context.Context, c *client.Client, n *cluster.Node, f *Facts, rendered config.Provider, np *NodePlan) error {
	want, err := forStage(rendered, f, StageNode)
	if err != nil {
		return err
	}
	eq, err := Equal(f.Config, want)
	if err != nil {
		return err
	}
	if !eq {
		diff, secrets, err := RedactedDiff(f.Config, want)
		if err != nil {
			return err
		}
		mode, answer, err := DryRun(ctx, c, want)
		if err != nil {
			return fmt.Errorf("Talos refuses the new config: %s", talosError(err))
		}
		np.Config = &ConfigChange{Diff: diff, SecretsChanged: secrets, Mode: ModeName(mode), TalosAnswer: answer}
		if np.Upgrade != nil && mode == machine.ApplyConfigurationRequest_REBOOT {
			np.Config.Mode = "staged"
			np.Config.TalosAnswer += "; staged and applied by the upgrade's reboot"
		}
	}
	full, err := forStage(rendered, f, StageKubelet)
	if err != nil {
		return err
	}
	run, wantIm := imagesOf(f.Config.RawV1Alpha1()), imagesOf(full.RawV1Alpha1())
	k := &NodeKubernetes{}
	if n.Role == cluster.RoleControlPlane && run.apiServer != wantIm.apiServer {
		k.ControlPlane = &VersionChange{From: ImageTag(run.apiServer), To: ImageTag(wantIm.apiServer)}
	}
	if run.kubelet != wantIm.kubelet {
		k.Kubelet = &VersionChange{From: ImageTag(run.kubelet), To: ImageTag(wantIm.kubelet)}
	}
	if k.ControlPlane != nil || k.Kubelet != nil {
		np.Kubernetes = k
	}
	return nil
}

// kubernetes fills the cluster-wide Kubernetes change: from the version
// the control plane runs to the file's, checked for skew and removed APIs.
func (o Options) kubernetes(ctx context.Context, p *Plan, nodes []*cluster.Node, facts []*Facts) {
	from := ""
	for i, n := range nodes {
		if n.Role != cluster.RoleControlPlane || facts[i] == nil {
			continue
		}
		v := ImageTag(imagesOf(facts[i].Config.RawV1Alpha1()).apiServer)
		if from == "" || lessVersion(v, from) {
			from = v
		}
	}
	to := o.Source.Cluster.Spec.KubernetesVersion
	changed := false
	for _, np := range p.Nodes {
		if np.Kubernetes != nil {
			changed = true
		}
	}
	if !changed || from == "" {
		return
	}
	kc := &KubernetesChange{From: from, To: to}
	p.Kubernetes = kc
	if err := compat.CheckKubernetesUpgrade(from, to); err != nil {
		p.Refusals = append(p.Refusals, o.located(fieldKubernetes, err))
		return
	}
	if from == to {
		return
	}
	if o.Kube == nil {
		p.Warnings = append(p.Warnings, "no kubeconfig: cannot check the apiserver for removed APIs in use")
		return
	}
	apis, err := RemovedAPIsInUse(ctx, o.Kube, to)
	if err != nil {
		p.Warnings = append(p.Warnings, err.Error())
		return
	}
	kc.RemovedAPIs = apis
	if len(apis) > 0 {
		var s []string
		for _, a := range apis {
			s = append(s, a.String())
		}
		p.Warnings = append(p.Warnings, fmt.Sprintf("Kubernetes %s removes APIs that clients still request: %v (update those clients first)", to, s))
	}
}

func lessVersion(a, b string) bool {
	aa, ab, err1 := minor(a)
	ba, bb, err2 := minor(b)
	if err1 != nil || err2 != nil {
		return a < b
	}
	return aa < ba || (aa == ba && ab < bb)
}

// talosError shortens gRPC errors for messages: "Code: message".
func talosError(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return "timed out"
	}
	if s, ok := status.FromError(err); ok {
		return s.Code().String() + ": " + s.Message()
	}
	return err.Error()
}
