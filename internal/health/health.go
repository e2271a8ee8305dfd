// Package health answers "is my cluster all right?" in one report: etcd
// (quorum, leader, every member, alarms), the control-plane components on
// every control-plane node, every node of the cluster file (Talos answering
// with the expected version and extensions, its Kubernetes Node Ready with
// the expected kubelet version), the platform's HelmReleases (the platform's
// one readiness rule) and the netboot server when it runs. Every failure
// carries a named kind, so scripts and `apply` can tell a member down from a
// version skew.
package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cosi-project/runtime/pkg/safe"
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/etcd"
	"github.com/dodai-dev/dodai/internal/platform/status"
	"github.com/dodai-dev/dodai/internal/poll"
	"github.com/dodai-dev/dodai/internal/state"
	"github.com/dodai-dev/dodai/internal/talos"
)

// Failure kinds: every failed check names one.
const (
	EtcdNoQuorum         = "etcd-no-quorum"
	EtcdMemberDown       = "etcd-member-down"
	EtcdAlarm            = "etcd-alarm"
	EtcdNotMember        = "etcd-not-member"
	EtcdStaleMember      = "etcd-stale-member"
	KubernetesAPIDown    = "kubernetes-api-down"
	ControlPlaneDown     = "control-plane-component-down"
	TalosUnreachable     = "talos-unreachable"
	NodeMissing          = "node-missing"
	NodeNotReady         = "node-not-ready"
	VersionSkew          = "version-skew"
	ExtensionMissing     = "extension-missing"
	ExtensionUnexpected  = "extension-unexpected"
	PlatformNotInstalled = "platform-not-installed"
	ReleaseMissing       = "release-missing"
	ReleaseNotReady      = "release-not-ready"
	NetbootDown          = "netboot-down"
)

// Areas of the report, in order.
const (
	AreaEtcd         = "etcd"
	AreaControlPlane = "control-plane"
	AreaNode         = "node"
	AreaPlatform     = "platform"
	AreaNetboot      = "netboot"
)

// Check is one line of the report.
type Check struct {
	Area    string `json:"area"`
	Subject string `json:"subject"`
	OK      bool   `json:"ok"`
	// Kind names the failure ("" when OK).
	Kind   string `json:"kind,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// Report is the whole answer.
type Report struct {
	Checks  []Check   `json:"checks"`
	Healthy bool      `json:"healthy"`
	Time    time.Time `json:"time"`
}

// Problems returns the failed checks.
func (r *Report) Problems() []Check {
	var out []Check
	for _, c := range r.Checks {
		if !c.OK {
			out = append(out, c)
		}
	}
	return out
}

// Kinds returns the distinct failure kinds, sorted.
func (r *Report) Kinds() []string {
	var out []string
	for _, c := range r.Problems() {
		if !slices.Contains(out, c.Kind) {
			out = append(out, c.Kind)
		}
	}
	slices.Sort(out)
	return out
}

// ControlPlaneComponents are the static pods Talos runs on every
// control-plane node (mirrored into kube-system with label k8s-app).
var ControlPlaneComponents = []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler"}

// Options say what to check and how to reach it.
type Options struct {
	Source *cluster.Source
	// Addresses of the nodes by name (configured or recorded).
	Addresses map[string]string
	// Talosconfig and Port reach the nodes.
	Talosconfig *clientconfig.Config
	Port        int
	// Etcd reaches the control planes' etcd.
	Etcd *etcd.Client
	// Kube and Dynamic reach Kubernetes (nil: no kubeconfig, reported).
	Kube    kubernetes.Interface
	Dynamic dynamic.Interface
	// KubeErr is why there is no Kubernetes client.
	KubeErr error
	// Releases are the platform's HelmReleases ("namespace/name") the
	// cluster file asks for; none: the platform is not checked.
	Releases []string
	// NetbootRunFile is where a running netboot server describes itself.
	NetbootRunFile string
	// Timeout bounds each call (default 10 s).
	Timeout time.Duration
	Log     *slog.Logger
}

// Run checks everything once.
func Run(ctx context.Context, o Options) *Report {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	var mu sync.Mutex
	var checks []Check
	add := func(cs ...Check) {
		mu.Lock()
		defer mu.Unlock()
		checks = append(checks, cs...)
	}
	var wg sync.WaitGroup
	for _, f := range []func(context.Context, Options) []Check{checkEtcd, checkControlPlane, checkNodes, checkPlatform, checkNetboot} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			add(f(ctx, o)...)
		}()
	}
	wg.Wait()
	order := []string{AreaEtcd, AreaControlPlane, AreaNode, AreaPlatform, AreaNetboot}
	slices.SortStableFunc(checks, func(a, b Check) int {
		return slices.Index(order, a.Area) - slices.Index(order, b.Area)
	})
	rep := &Report{Checks: checks, Healthy: true, Time: time.Now().UTC()}
	for _, c := range checks {
		rep.Healthy = rep.Healthy && c.OK
	}
	return rep
}

// Wait runs the checks until the cluster is healthy or ctx ends, calling
// progress with each unhealthy report; it returns the last report.
func Wait(ctx context.Context, o Options, interval time.Duration, progress func(*Report)) *Report {
	if interval <= 0 {
		interval = 2 * time.Second
	}
	var rep *Report
	// The report says what is wrong; the poll error adds nothing to it.
	_ = poll.Until(ctx, poll.Options{Interval: interval}, func(ctx context.Context) (bool, error) {
		rep = Run(ctx, o)
		if !rep.Healthy && progress != nil {
			progress(rep)
		}
		return rep.Healthy, nil
	})
	if rep == nil {
		// ctx had ended before the first check.
		rep = Run(ctx, o)
	}
	return rep
}

func ok(area, subject, detail string) Check {
	return Check{Area: area, Subject: subject, OK: true, Detail: detail}
}

func fail(area, subject, kind, detail string) Check {
	return Check{Area: area, Subject: subject, Kind: kind, Detail: detail}
}

func checkEtcd(ctx context.Context, o Options) []Check {
	if o.Etcd == nil || len(o.Etcd.Nodes) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*o.Timeout)
	defer cancel()
	st, err := o.Etcd.Status(ctx)
	if err != nil {
		return []Check{fail(AreaEtcd, "quorum", EtcdNoQuorum, err.Error())}
	}
	var out []Check
	voting := 0
	for _, m := range st.Members {
		if !m.Learner {
			voting++
		}
	}
	if st.HasQuorum {
		out = append(out, ok(AreaEtcd, "quorum", fmt.Sprintf("%d of %d members healthy, leader %s", st.HealthyMembers, voting, st.Leader)))
	} else {
		d := fmt.Sprintf("%d of %d members healthy, %d needed", st.HealthyMembers, voting, st.Quorum)
		if st.Leader == "" {
			d += ", no leader"
		}
		out = append(out, fail(AreaEtcd, "quorum", EtcdNoQuorum, d))
	}
	for _, m := range st.Members {
		subject := "member " + m.Node
		if m.Node == "" {
			subject = "member " + m.IDHex
		}
		switch {
		case m.Healthy:
			d := "healthy"
			if m.Leader {
				d = "leader"
			}
			if m.Status != nil {
				d += ", DB " + etcd.HumanSize(m.Status.DBSize)
			}
			out = append(out, ok(AreaEtcd, subject, d))
		case len(m.Alarms) > 0:
			out = append(out, fail(AreaEtcd, subject, EtcdAlarm, "alarm "+strings.Join(m.Alarms, ", ")))
		case m.Node == "":
			out = append(out, fail(AreaEtcd, subject, EtcdStaleMember, fmt.Sprintf("%s (%s): %s", m.Name, m.IDHex, m.Problem)))
		default:
			out = append(out, fail(AreaEtcd, subject, EtcdMemberDown, m.Problem))
		}
	}
	for _, p := range st.NotMembers {
		if st.Member(p.Node) == nil {
			out = append(out, fail(AreaEtcd, "member "+p.Node, EtcdNotMember, p.Problem))
		}
	}
	return out
}

func controlPlanes(spec *cluster.Spec) []string {
	var out []string
	for _, n := range spec.Nodes {
		if n.Role == cluster.RoleControlPlane {
			out = append(out, n.Name)
		}
	}
	return out
}

func checkControlPlane(ctx context.Context, o Options) []Check {
	if o.Kube == nil {
		d := "no Kubernetes client"
		if o.KubeErr != nil {
			d = o.KubeErr.Error()
		}
		return []Check{fail(AreaControlPlane, "kubernetes-api", KubernetesAPIDown, d)}
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	body, err := o.Kube.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	if err != nil {
		return []Check{fail(AreaControlPlane, "kubernetes-api", KubernetesAPIDown, "/readyz: "+firstLine(err.Error()))}
	}
	out := []Check{ok(AreaControlPlane, "kubernetes-api", "/readyz "+strings.TrimSpace(string(body)))}
	pods, err := o.Kube.CoreV1().Pods(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{LabelSelector: "k8s-app in (" + strings.Join(ControlPlaneComponents, ",") + ")"})
	if err != nil {
		return append(out, fail(AreaControlPlane, "components", KubernetesAPIDown, "listing kube-system pods: "+err.Error()))
	}
	for _, node := range controlPlanes(&o.Source.Cluster.Spec) {
		for _, comp := range ControlPlaneComponents {
			subject := comp + " on " + node
			i := slices.IndexFunc(pods.Items, func(p corev1.Pod) bool { return p.Labels["k8s-app"] == comp && p.Spec.NodeName == node })
			if i < 0 {
				out = append(out, fail(AreaControlPlane, subject, ControlPlaneDown, "no "+comp+" pod on the node"))
				continue
			}
			p := &pods.Items[i]
			if ready, why := podReady(p); !ready {
				out = append(out, fail(AreaControlPlane, subject, ControlPlaneDown, p.Name+": "+why))
				continue
			}
			out = append(out, ok(AreaControlPlane, subject, p.Name+" Ready"))
		}
	}
	return out
}

func podReady(p *corev1.Pod) (bool, string) {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			if c.Status == corev1.ConditionTrue {
				return true, ""
			}
			return false, strings.TrimSpace(fmt.Sprintf("%s %s %s", p.Status.Phase, c.Reason, c.Message))
		}
	}
	return false, fmt.Sprintf("%s, no Ready condition", p.Status.Phase)
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// nodeFacts is what a node's Talos API reports.
type nodeFacts struct {
	version    string
	extensions []string // siderolabs/<name>
	err        error
}

// talosFacts reads the Talos version and the system extensions a node runs.
func talosFacts(ctx context.Context, o Options, addr string) nodeFacts {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	c, err := talos.Authenticated(ctx, o.Talosconfig, talos.Endpoint(addr, o.Port))
	if err != nil {
		return nodeFacts{err: err}
	}
	defer c.Close()
	var f nodeFacts
	if f.version, err = talos.Version(ctx, c.COSI); err != nil {
		return nodeFacts{err: err}
	}
	l, err := safe.StateListAll[*runtime.ExtensionStatus](ctx, c.COSI)
	if err != nil {
		return nodeFacts{err: fmt.Errorf("reading extensions: %w", err)}
	}
	for e := range l.All() {
		switch name := e.TypedSpec().Metadata.Name; name {
		case "", "schematic", "modules.dep":
			// The Image Factory's schematic marker and Talos' module index.
		default:
			f.extensions = append(f.extensions, "siderolabs/"+name)
		}
	}
	slices.Sort(f.extensions)
	return f
}

func checkNodes(ctx context.Context, o Options) []Check {
	spec := &o.Source.Cluster.Spec
	facts := make([]nodeFacts, len(spec.Nodes))
	var wg sync.WaitGroup
	for i := range spec.Nodes {
		addr := o.Addresses[spec.Nodes[i].Name]
		if addr == "" {
			facts[i] = nodeFacts{err: errors.New("no known address: never installed (dodai bootstrap --node " + spec.Nodes[i].Name + ")")}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			facts[i] = talosFacts(ctx, o, addr)
		}()
	}
	var kubeNodes map[string]*corev1.Node
	var kubeErr error
	if o.Kube != nil {
		kctx, cancel := context.WithTimeout(ctx, o.Timeout)
		l, err := o.Kube.CoreV1().Nodes().List(kctx, metav1.ListOptions{})
		cancel()
		if err == nil {
			kubeNodes = map[string]*corev1.Node{}
			for i := range l.Items {
				kubeNodes[l.Items[i].Name] = &l.Items[i]
			}
		}
		kubeErr = err
	}
	wg.Wait()
	wantExt := slices.Clone(spec.Image.Extensions)
	slices.Sort(wantExt)
	var out []Check
	for i := range spec.Nodes {
		n := &spec.Nodes[i]
		f := facts[i]
		var probs []Check
		var good []string
		if f.err != nil {
			probs = append(probs, fail(AreaNode, n.Name, TalosUnreachable, "Talos API: "+etcd.ShortErr(f.err)))
		} else {
			if spec.TalosVersion != "" && f.version != spec.TalosVersion {
				probs = append(probs, fail(AreaNode, n.Name, VersionSkew, fmt.Sprintf("runs Talos %s, cluster file says %s", f.version, spec.TalosVersion)))
			} else {
				good = append(good, "Talos "+f.version)
			}
			for _, e := range wantExt {
				if !slices.Contains(f.extensions, e) {
					probs = append(probs, fail(AreaNode, n.Name, ExtensionMissing, "extension "+e+" is not running (the node's image lacks it)"))
				}
			}
			for _, e := range f.extensions {
				if !slices.Contains(wantExt, e) {
					probs = append(probs, fail(AreaNode, n.Name, ExtensionUnexpected, "runs extension "+e+", which the cluster file does not list"))
				}
			}
			if len(f.extensions) > 0 {
				good = append(good, "extensions "+strings.Join(f.extensions, ","))
			}
		}
		switch kn := kubeNodes[n.Name]; {
		case o.Kube == nil || kubeErr != nil:
			// Reported once, under control-plane.
		case kn == nil:
			probs = append(probs, fail(AreaNode, n.Name, NodeMissing, "no Kubernetes Node "+n.Name))
		default:
			if ready, why := nodeReady(kn); !ready {
				probs = append(probs, fail(AreaNode, n.Name, NodeNotReady, why))
			} else {
				good = append(good, "Ready")
			}
			kv := kn.Status.NodeInfo.KubeletVersion
			if spec.KubernetesVersion != "" && kv != spec.KubernetesVersion {
				probs = append(probs, fail(AreaNode, n.Name, VersionSkew, fmt.Sprintf("kubelet %s, cluster file says %s", kv, spec.KubernetesVersion)))
			} else {
				good = append(good, "kubelet "+kv)
			}
		}
		if len(probs) == 0 {
			out = append(out, ok(AreaNode, n.Name, strings.Join(good, ", ")))
		}
		out = append(out, probs...)
	}
	return out
}

func nodeReady(n *corev1.Node) (bool, string) {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			if c.Status == corev1.ConditionTrue {
				return true, ""
			}
			return false, strings.TrimSpace(fmt.Sprintf("Ready=%s %s %s", c.Status, c.Reason, c.Message))
		}
	}
	return false, "no Ready condition"
}

func checkPlatform(ctx context.Context, o Options) []Check {
	if len(o.Releases) == 0 || o.Dynamic == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	rep, err := status.Collect(ctx, o.Dynamic, time.Now())
	if errors.Is(err, status.ErrNoFlux) {
		return []Check{fail(AreaPlatform, "flux", PlatformNotInstalled, err.Error())}
	}
	if err != nil {
		return []Check{fail(AreaPlatform, "helmreleases", KubernetesAPIDown, err.Error())}
	}
	var out []Check
	for _, key := range o.Releases {
		r, found := rep.Get(key)
		switch {
		case !found:
			out = append(out, fail(AreaPlatform, key, ReleaseMissing, "no HelmRelease "+key+" (dodai platform install)"))
		case r.IsReady():
			out = append(out, ok(AreaPlatform, key, "Ready"))
		default:
			d := string(r.State)
			if r.Cause != "" {
				d += ": " + r.Cause
			} else if r.Status != "" {
				d += ": " + r.Status
			}
			if len(r.RootCauses) > 0 {
				d += " (waits for " + strings.Join(r.RootCauses, ", ") + ")"
			}
			out = append(out, fail(AreaPlatform, key, ReleaseNotReady, d))
		}
	}
	return out
}

func checkNetboot(ctx context.Context, o Options) []Check {
	if o.NetbootRunFile == "" {
		return nil
	}
	var run state.NetbootRun
	if err := state.ReadJSON(o.NetbootRunFile, &run); err != nil {
		return []Check{fail(AreaNetboot, "server", NetbootDown, err.Error())}
	}
	if run.PID == 0 || !alive(run.PID) {
		return nil // not running: nothing to check
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	url := strings.TrimSuffix(run.URL, "/") + "/metrics"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return []Check{fail(AreaNetboot, "server", NetbootDown, err.Error())}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return []Check{fail(AreaNetboot, "server", NetbootDown, fmt.Sprintf("pid %d runs, but its HTTP server does not answer: %s", run.PID, etcd.ShortErr(err)))}
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return []Check{fail(AreaNetboot, "server", NetbootDown, fmt.Sprintf("%s: %s", url, resp.Status))}
	}
	return []Check{ok(AreaNetboot, "server", fmt.Sprintf("pid %d, %s answers", run.PID, url))}
}

// alive reports whether a process exists.
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
