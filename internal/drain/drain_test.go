package drain_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/dodai-dev/dodai/internal/drain"
	"github.com/dodai-dev/dodai/test/fakekubelet"
	"github.com/dodai-dev/dodai/test/kubetest"
)

// One real kube-apiserver with kube-controller-manager (its disruption
// controller keeps PodDisruptionBudget status) for the package.
var kube = kubetest.Shared{Options: kubetest.Options{ControllerManager: true}}

func TestMain(m *testing.M) { os.Exit(kube.Run(m)) }

func client(t *testing.T) kubernetes.Interface {
	t.Helper()
	return kube.Env(t).Client
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// fixture is a namespace with a node and workloads on it.
type fixture struct {
	t    *testing.T
	cs   kubernetes.Interface
	ns   string
	node string
}

func newFixture(ctx context.Context, t *testing.T, name string) *fixture {
	t.Helper()
	cs := client(t)
	f := &fixture{t: t, cs: cs, ns: "drain-" + name, node: "node-" + name}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: f.ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	k, err := fakekubelet.Start(ctx, fakekubelet.Config{Client: cs, NodeName: f.node, KubeletVersion: "v1.34.1", Address: "127.0.0.1",
		ControlPlane: true, StaticPods: []fakekubelet.StaticPod{{Name: "kube-apiserver", Image: "registry.k8s.io/kube-apiserver:v1.34.1"}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k.Stop(context.Background(), false) })
	return f
}

// replicaSet creates a ReplicaSet object (no controller acts on it here) and
// n pods it owns, bound to the fixture's node.
func (f *fixture) replicaSet(ctx context.Context, app string, n int) []string {
	f.t.Helper()
	rs, err := f.cs.AppsV1().ReplicaSets(f.ns).Create(ctx, &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: app},
		Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To(int32(n)), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": app}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "example/app"}}}}},
	}, metav1.CreateOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	var names []string
	for i := range n {
		name := fmt.Sprintf("%s-%d", app, i)
		f.pod(ctx, name, map[string]string{"app": app}, &metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID, Controller: ptr.To(true)})
		names = append(names, f.ns+"/"+name)
	}
	return names
}

func (f *fixture) pod(ctx context.Context, name string, lbl map[string]string, owner *metav1.OwnerReference) {
	f.t.Helper()
	f.podOn(ctx, f.node, name, lbl, owner)
}

func (f *fixture) podOn(ctx context.Context, node, name string, lbl map[string]string, owner *metav1.OwnerReference) {
	f.t.Helper()
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbl},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "example/app"}}}}
	if owner != nil {
		p.OwnerReferences = []metav1.OwnerReference{*owner}
	}
	if _, err := f.cs.CoreV1().Pods(f.ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
		f.t.Fatal(err)
	}
}

// pdb creates a budget and waits until the disruption controller computed
// its status over the ready pods.
func (f *fixture) pdb(ctx context.Context, app string, minAvailable, healthy int) {
	f.t.Helper()
	_, err := f.cs.PolicyV1().PodDisruptionBudgets(f.ns).Create(ctx, &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: app},
		Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: ptr.To(intstr.FromInt32(int32(minAvailable))),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}},
	}, metav1.CreateOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	for {
		b, err := f.cs.PolicyV1().PodDisruptionBudgets(f.ns).Get(ctx, app, metav1.GetOptions{})
		if err != nil {
			f.t.Fatal(err)
		}
		if b.Status.ObservedGeneration == b.Generation && int(b.Status.CurrentHealthy) == healthy {
			return
		}
		select {
		case <-ctx.Done():
			f.t.Fatalf("PDB %s status not computed: %+v", app, b.Status)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (f *fixture) podNames(ctx context.Context) []string {
	f.t.Helper()
	pods, err := drain.PodsOn(ctx, f.cs, f.node)
	if err != nil {
		f.t.Fatal(err)
	}
	var out []string
	for _, p := range pods {
		out = append(out, p.Namespace+"/"+p.Name)
	}
	slices.Sort(out)
	return out
}

func TestDrainEvictsAndKeepsDaemonSetAndMirrorPods(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	f := newFixture(ctx, t, "evict")
	web := f.replicaSet(ctx, "web", 2)
	// A third replica on another node keeps the budget satisfied.
	other, err := fakekubelet.Start(ctx, fakekubelet.Config{Client: f.cs, NodeName: f.node + "-b", KubeletVersion: "v1.34.1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Stop(context.Background(), false) })
	rs, err := f.cs.AppsV1().ReplicaSets(f.ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f.podOn(ctx, f.node+"-b", "web-2", map[string]string{"app": "web"}, &metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID, Controller: ptr.To(true)})
	ds, err := f.cs.AppsV1().DaemonSets(f.ns).Create(ctx, &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "agent"},
		Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "agent"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "agent"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "example/agent"}}}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f.pod(ctx, "agent-x", map[string]string{"app": "agent"}, &metav1.OwnerReference{APIVersion: "apps/v1", Kind: "DaemonSet", Name: ds.Name, UID: ds.UID, Controller: ptr.To(true)})
	f.pdb(ctx, "web", 1, 3) // two of the three may go at once

	res, err := drain.Drain(ctx, f.cs, f.node, drain.Options{Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Evicted, web) {
		t.Fatalf("evicted %v, want %v", res.Evicted, web)
	}
	left := f.podNames(ctx)
	want := []string{f.ns + "/agent-x", "kube-system/kube-apiserver-" + f.node}
	if !slices.Equal(left, want) {
		t.Fatalf("pods left on the node: %v, want %v", left, want)
	}
	if c, err := drain.Cordoned(ctx, f.cs, f.node); err != nil || !c {
		t.Fatalf("cordoned after drain: %v %v", c, err)
	}
	t.Logf("drained 2 pods in %s", res.Elapsed)

	// Draining again: nothing to evict, still cordoned; uncordon twice is fine.
	res, err = drain.Drain(ctx, f.cs, f.node, drain.Options{Timeout: time.Minute})
	if err != nil || len(res.Evicted) != 0 {
		t.Fatalf("second drain: %+v %v", res, err)
	}
	for range 2 {
		if err := drain.Uncordon(ctx, f.cs, f.node); err != nil {
			t.Fatal(err)
		}
	}
	if c, _ := drain.Cordoned(ctx, f.cs, f.node); c {
		t.Fatal("still cordoned after uncordon")
	}
}

func TestDrainBlockedByPDBStopsWithinBound(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	f := newFixture(ctx, t, "pdb")
	db := f.replicaSet(ctx, "db", 2)
	f.pdb(ctx, "db", 2, 2) // no disruption allowed

	const bound = 2 * time.Second
	start := time.Now()
	_, err := drain.Drain(ctx, f.cs, f.node, drain.Options{Timeout: bound})
	took := time.Since(start)
	var de *drain.Error
	if !errors.As(err, &de) {
		t.Fatalf("want *drain.Error, got %v", err)
	}
	if took > bound+time.Second {
		t.Fatalf("drain took %s, bound %s", took, bound)
	}
	wantPDB := f.ns + "/db (needs 2 healthy pods, has 2; 0 disruptions allowed)"
	if !slices.Equal(de.Budgets, []string{wantPDB}) || !slices.Equal(de.Pending, db) || de.Timeout != bound {
		t.Fatalf("error fields: %+v", de)
	}
	msg := err.Error()
	for _, s := range []string{"draining node " + f.node, "not finished within 2s", "PodDisruptionBudget " + wantPDB, "pods left: " + db[0]} {
		if !strings.Contains(msg, s) {
			t.Errorf("error %q lacks %q", msg, s)
		}
	}
	t.Logf("error after %s: %v", took, err)
	if got := f.podNames(ctx); !slices.Contains(got, db[0]) || !slices.Contains(got, db[1]) {
		t.Fatalf("blocked pods were removed: %v", got)
	}
}

func TestDrainUnmanagedPod(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	f := newFixture(ctx, t, "bare")
	f.pod(ctx, "bare", nil, nil)
	web := f.replicaSet(ctx, "web", 1)

	_, err := drain.Drain(ctx, f.cs, f.node, drain.Options{Timeout: 30 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "draining node "+f.node) || !strings.Contains(err.Error(), f.ns+"/bare") {
		t.Fatalf("unmanaged pod: %v", err)
	}
	// Nothing was evicted before the refusal.
	if got := f.podNames(ctx); !slices.Contains(got, f.ns+"/bare") || !slices.Contains(got, web[0]) {
		t.Fatalf("pods after refused drain: %v", got)
	}

	res, err := drain.Drain(ctx, f.cs, f.node, drain.Options{Timeout: 30 * time.Second, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Evicted, []string{f.ns + "/bare", web[0]}) {
		t.Fatalf("evicted %v", res.Evicted)
	}
	if _, err := f.cs.CoreV1().Pods(f.ns).Get(ctx, "bare", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("bare pod still there: %v", err)
	}
}

func TestCordonMissingNode(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	cs := client(t)
	err := drain.Cordon(ctx, cs, "no-such-node")
	if err == nil || !strings.Contains(err.Error(), "cordoning node no-such-node") || !apierrors.IsNotFound(err) {
		t.Fatalf("cordon of a missing node: %v", err)
	}
}
