package rollout_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/etcd"
	"github.com/dodai-dev/dodai/internal/plan"
	"github.com/dodai-dev/dodai/internal/testutil"
	"github.com/dodai-dev/dodai/test/faketalos"
)

// span is when a node was down for one operation: from the call that took
// it down to the boot that brought it back.
type span struct {
	node       string
	start, end time.Time
}

// downtimes returns, per node, the spans from each call of method to the
// next boot.
func (tc *testCluster) downtimes(method string, since time.Time) []span {
	var out []span
	for _, name := range tc.Names {
		calls := tc.Nodes[name].Calls()
		for i, c := range calls {
			if c.Method != method || c.Time.Before(since) || c.Code != 0 || c.DryRun {
				continue
			}
			if method == "ApplyConfiguration" && !strings.Contains(c.Mode, "REBOOT") {
				continue
			}
			for _, b := range calls[i+1:] {
				if b.Method == "Boot" {
					out = append(out, span{name, c.Time, b.Time})
					break
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b span) int { return a.start.Compare(b.start) })
	return out
}

// maxOverlap is the most spans of these nodes at one time.
func maxOverlap(spans []span, nodes []string) int {
	best := 0
	for _, s := range spans {
		if !slices.Contains(nodes, s.node) {
			continue
		}
		n := 0
		for _, o := range spans {
			if slices.Contains(nodes, o.node) && !o.start.After(s.start) && o.end.After(s.start) {
				n++
			}
		}
		best = max(best, n)
	}
	return best
}

func (tc *testCluster) count(method string, since time.Time) map[string]int {
	out := map[string]int{}
	for _, name := range tc.Names {
		for _, c := range tc.Nodes[name].Calls() {
			if c.Method == method && !c.Time.Before(since) && !c.DryRun && c.Code == 0 {
				out[name]++
			}
		}
	}
	return out
}

func (tc *testCluster) planJSON(ctx context.Context) (int, *plan.Plan) {
	tc.t.Helper()
	code, out, errOut := tc.dodai(ctx, "plan", "-o", "json")
	var p plan.Plan
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		tc.t.Fatalf("plan -o json: exit %d: %v\n%s\n%s", code, err, out, errOut)
	}
	return code, &p
}

// workload puts a ReplicaSet's pods on the workers (two each) and a budget
// that allows one disruption at a time, and plays the ReplicaSet
// controller's and the scheduler's part (test/kubetest runs neither): each
// pod that goes away is replaced by a new one on the schedulable worker
// with the fewest pods, which its fake kubelet then runs. The returned
// function counts the pods removed from each node so far.
func (tc *testCluster) workload(ctx context.Context, ns string, workers []string) (removed func() map[string]int) {
	tc.t.Helper()
	cs := tc.kube.Client
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		tc.t.Fatal(err)
	}
	n := 2 * len(workers)
	rs, err := cs.AppsV1().ReplicaSets(ns).Create(ctx, &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To(int32(n)), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "example/web"}}}}},
	}, metav1.CreateOptions{})
	if err != nil {
		tc.t.Fatal(err)
	}
	tc.removeNamespace(ns)
	var seq atomic.Int32
	create := func(node string) error {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("web-%d", seq.Add(1)), Labels: map[string]string{"app": "web"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID, Controller: ptr.To(true)}}},
			Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "example/web"}}}}
		_, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
		return err
	}
	for i := range n {
		if err := create(workers[i%len(workers)]); err != nil {
			tc.t.Fatal(err)
		}
	}
	if _, err := cs.PolicyV1().PodDisruptionBudgets(ns).Create(ctx, &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: policyv1.PodDisruptionBudgetSpec{MaxUnavailable: ptr.To(intstr.FromInt32(1)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}},
	}, metav1.CreateOptions{}); err != nil {
		tc.t.Fatal(err)
	}
	w, err := cs.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		tc.t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		gone = map[string]int{}
		done = make(chan struct{})
	)
	tc.t.Cleanup(func() { w.Stop(); <-done })
	// place picks the schedulable worker with the fewest pods.
	place := func() string {
		best, fewest := "", 0
		for _, name := range workers {
			node, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil || node.Spec.Unschedulable {
				continue
			}
			if c := tc.podsOn(ctx, ns, name); best == "" || c < fewest {
				best, fewest = name, c
			}
		}
		return best
	}
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok || ev.Type != watch.Deleted {
				continue
			}
			mu.Lock()
			gone[p.Spec.NodeName]++
			mu.Unlock()
			for ctx.Err() == nil {
				if node := place(); node != "" {
					if err := create(node); err == nil {
						break
					}
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}()
	return func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(gone)
	}
}

// removeNamespace deletes the namespace's pods at once when the test ends
// (no kubelet is left to finish them: node names repeat across tests, and a
// pod left on "w1" would be drained by the next test), then the namespace.
func (tc *testCluster) removeNamespace(ns string) {
	tc.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cs := tc.kube.Client
		_ = cs.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}, metav1.ListOptions{})
		_ = cs.PolicyV1().PodDisruptionBudgets(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
		_ = cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
	})
}

// podsOn counts the pods of the namespace on a node (-1 when the list
// fails).
func (tc *testCluster) podsOn(ctx context.Context, ns, node string) int {
	l, err := tc.kube.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + node})
	if err != nil {
		return -1
	}
	return len(l.Items)
}

func (tc *testCluster) leader() string {
	for _, m := range tc.Group.EtcdMembers() {
		if m.Leader {
			return m.Name
		}
	}
	return ""
}

// TestRolloutEndToEnd takes 3 control planes and 2 workers through a patch
// (no reboot), a Talos upgrade, an extension change and a Kubernetes
// upgrade, each planned then applied, and checks the order the fake nodes
// recorded.
func TestRolloutEndToEnd(t *testing.T) {
	ctx := testutil.Context(t, 10*time.Minute)
	tc := newCluster(t, clusterOpts{CPs: 3, Workers: 2, RebootDelay: 100 * time.Millisecond,
		Spec: spec{Kubernetes: "v1.33.5", Extensions: []string{"siderolabs/drbd"}}})
	tc.bootstrap(ctx)
	cps, workers := tc.Names[:3], tc.Names[3:]

	// Freshly bootstrapped: nothing to do.
	code, out, errOut := tc.dodai(ctx, "plan")
	if code != 0 || !strings.Contains(out, "No changes: the cluster matches cluster.yaml.") {
		t.Fatalf("plan after bootstrap: exit %d\n%s\n%s", code, out, errOut)
	}
	removed := tc.workload(ctx, "e2e-web", workers)

	// 1. A patch that needs no reboot: applied live, nothing drained.
	s := tc.spec
	s.Patches = "- machine:\n    sysctls:\n      net.core.somaxconn: \"65535\""
	tc.write(s)
	code, out, _ = tc.dodai(ctx, "plan")
	if code != 2 || strings.Count(out, "config (no reboot)") != 5 || !strings.Contains(out, `+        net.core.somaxconn: "65535"`) {
		t.Fatalf("plan of a patch: exit %d\n%s", code, out)
	}
	tc.noSecrets(out)
	t.Logf("plan of a patch:\n%s", out)
	since := time.Now()
	code, out, errOut = tc.apply(ctx)
	if code != 0 {
		t.Fatalf("apply patch: exit %d\n%s\n%s", code, out, errOut)
	}
	applies, boots := tc.count("ApplyConfiguration", since), tc.count("Boot", since)
	for _, n := range tc.Names {
		if applies[n] != 1 || boots[n] != 0 || tc.count("Upgrade", since)[n] != 0 {
			t.Fatalf("patch on %s: %d applies, %d boots", n, applies[n], boots[n])
		}
	}
	if r := removed(); len(r) != 0 {
		t.Fatalf("a no-reboot patch drained nodes: %v", r)
	}

	// 2. Talos upgrade: control planes one at a time, the etcd leader
	// last, workers one at a time; pods drained from each worker.
	leader := tc.leader()
	s.Talos = "v1.11.6"
	tc.write(s)
	code, p := tc.planJSON(ctx)
	if code != 2 {
		t.Fatalf("plan of an upgrade: exit %d", code)
	}
	_, out, _ = tc.dodai(ctx, "plan")
	t.Logf("plan of the upgrade:\n%s", out)
	for _, n := range p.Nodes {
		if n.Upgrade == nil || n.Upgrade.FromVersion != "v1.11.5" || n.Upgrade.ToVersion != "v1.11.6" ||
			!strings.HasPrefix(n.Upgrade.Image, "factory.talos.dev/metal-installer/") || !strings.HasSuffix(n.Upgrade.Image, ":v1.11.6") || n.Config == nil {
			t.Fatalf("plan of %s: %+v", n.Name, n)
		}
	}
	since = time.Now()
	code, out, errOut = tc.apply(ctx)
	if code != 0 {
		t.Fatalf("apply upgrade: exit %d\n%s\n%s", code, out, errOut)
	}
	for _, n := range tc.Names {
		if v := tc.Nodes[n].TalosVersion(); v != "v1.11.6" {
			t.Fatalf("%s runs %s", n, v)
		}
	}
	// Before each control-plane upgrade, a checked snapshot of the real
	// etcd in the cluster directory's snapshot place (where `dodai etcd
	// snapshot` keeps them).
	snaps, err := etcd.Snapshots(cluster.At(tc.Dir).EtcdSnapshots())
	if err != nil || len(snaps) < 3 {
		t.Fatalf("etcd snapshots in %s: %v %v", cluster.At(tc.Dir).EtcdSnapshots(), snaps, err)
	}
	for _, f := range snaps {
		fi, err := os.Stat(f)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("snapshot %s: %v %v", f, fi, err)
		}
		if _, err := etcd.Check(f); err != nil {
			t.Fatalf("snapshot %s: %v", f, err)
		}
	}
	spans := tc.downtimes("Upgrade", since)
	if len(spans) != 5 {
		t.Fatalf("upgrades: %+v", spans)
	}
	var cpOrder []string
	for i, sp := range spans {
		if i < 3 {
			cpOrder = append(cpOrder, sp.node)
		}
		if i > 0 && sp.start.Before(spans[i-1].end) && (slices.Contains(cps, sp.node) || slices.Contains(cps, spans[i-1].node)) {
			t.Fatalf("%s went down before %s was back", sp.node, spans[i-1].node)
		}
	}
	if !slices.Equal(slices.Sorted(slices.Values(cpOrder)), cps) || cpOrder[2] != leader {
		t.Fatalf("control planes upgraded in order %v, leader %s not last", cpOrder, leader)
	}
	if o := maxOverlap(spans, workers); o != 1 {
		t.Fatalf("workers down at once: %d", o)
	}
	// Each worker was drained (its two pods first, then the replacements
	// of the other worker's that had landed on it).
	for _, w := range workers {
		if r := removed(); r[w] < 2 {
			t.Fatalf("pods removed per node during the upgrade: %v", r)
		}
	}
	t.Logf("apply of the upgrade:\n%s\n%s", out, errOut)

	// 3. An extension change: the same version, a new image.
	s.Extensions = []string{"siderolabs/drbd", "siderolabs/zfs"}
	tc.write(s)
	code, out, _ = tc.dodai(ctx, "plan")
	if code != 2 || strings.Count(out, "upgrade v1.11.6 (new image) [+siderolabs/zfs]") != 5 {
		t.Fatalf("plan of an extension change: exit %d\n%s", code, out)
	}
	since = time.Now()
	if code, out, errOut = tc.apply(ctx); code != 0 {
		t.Fatalf("apply extensions: exit %d\n%s\n%s", code, out, errOut)
	}
	for _, n := range tc.Names {
		if _, exts := tc.Nodes[n].Image(); !slices.Equal(exts, s.Extensions) {
			t.Fatalf("%s runs %v", n, exts)
		}
	}
	if spans := tc.downtimes("Upgrade", since); len(spans) != 5 {
		t.Fatalf("extension change: %d upgrades, want one per node: %+v", len(spans), spans)
	}

	// 4. Kubernetes: control-plane components node by node, then kubelets.
	s.Kubernetes = "v1.34.1"
	tc.write(s)
	code, p = tc.planJSON(ctx)
	if code != 2 || p.Kubernetes == nil || p.Kubernetes.From != "v1.33.5" || p.Kubernetes.To != "v1.34.1" {
		t.Fatalf("plan of a Kubernetes upgrade: exit %d %+v", code, p.Kubernetes)
	}
	_, out, _ = tc.dodai(ctx, "plan")
	t.Logf("plan of the Kubernetes upgrade:\n%s", out)
	since = time.Now()
	if code, out, errOut = tc.apply(ctx); code != 0 {
		t.Fatalf("apply Kubernetes: exit %d\n%s\n%s", code, out, errOut)
	}
	t.Logf("apply of the Kubernetes upgrade:\n%s\n%s", out, errOut)
	var lastCP, firstKubelet time.Time
	for _, n := range tc.Names {
		var applies []faketalos.Call
		for _, c := range tc.Nodes[n].Calls() {
			if c.Method == "ApplyConfiguration" && !c.DryRun && c.Time.After(since) {
				applies = append(applies, c)
			}
		}
		want := 1
		if slices.Contains(cps, n) {
			want = 2 // components, then kubelet
			lastCP = maxTime(lastCP, applies[0].Time)
			if firstKubelet.IsZero() || applies[1].Time.Before(firstKubelet) {
				firstKubelet = applies[1].Time
			}
		} else if firstKubelet.IsZero() || applies[0].Time.Before(firstKubelet) {
			firstKubelet = applies[0].Time
		}
		if len(applies) != want {
			t.Fatalf("%s: %d applies for the Kubernetes upgrade", n, len(applies))
		}
		node, err := tc.kube.Client.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{})
		if err != nil || node.Status.NodeInfo.KubeletVersion != "v1.34.1" {
			t.Fatalf("Node %s: kubelet %s %v", n, node.Status.NodeInfo.KubeletVersion, err)
		}
	}
	if !lastCP.Before(firstKubelet) {
		t.Fatalf("a kubelet was upgraded (%s) before the last control plane's components (%s)", firstKubelet, lastCP)
	}
	for _, n := range cps {
		pod, err := tc.kube.Client.CoreV1().Pods("kube-system").Get(ctx, "kube-apiserver-"+n, metav1.GetOptions{})
		if err != nil || pod.Spec.Containers[0].Image != "registry.k8s.io/kube-apiserver:v1.34.1" {
			t.Fatalf("kube-apiserver on %s: %v %v", n, err, pod)
		}
	}

	// Converged: apply changes nothing and says so.
	since = time.Now()
	code, out, _ = tc.apply(ctx)
	if code != 0 || !strings.Contains(out, "Nothing to do: the cluster matches cluster.yaml.") {
		t.Fatalf("converged apply: exit %d\n%s", code, out)
	}
	if n := tc.count("ApplyConfiguration", since); len(n) != 0 {
		t.Fatalf("converged apply applied: %v", n)
	}
	if code, _, _ := tc.dodai(ctx, "plan"); code != 0 {
		t.Fatalf("plan after all: exit %d", code)
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
