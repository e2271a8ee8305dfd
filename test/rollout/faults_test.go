package rollout_test

import (
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/dodai-dev/dodai/internal/testutil"
	"github.com/dodai-dev/dodai/test/faketalos"
)

// touched lists the nodes that got a call of method (not a dry run) since t.
func (tc *testCluster) touched(method string, since time.Time) []string {
	var out []string
	for _, name := range tc.Names {
		if tc.count(method, since)[name] > 0 {
			out = append(out, name)
		}
	}
	return out
}

// blockingBudget puts one pod on node with a PodDisruptionBudget that
// allows no disruption at all.
func (tc *testCluster) blockingBudget(ctx context.Context, ns, node string) {
	tc.t.Helper()
	cs := tc.kube.Client
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		tc.t.Fatal(err)
	}
	tc.removeNamespace(ns)
	labels := map[string]string{"app": "db"}
	rs, err := cs.AppsV1().ReplicaSets(ns).Create(ctx, &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To(int32(1)), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "example/db"}}}}},
	}, metav1.CreateOptions{})
	if err != nil {
		tc.t.Fatal(err)
	}
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "db-0", Labels: labels,
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID, Controller: ptr.To(true)}}},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "example/db"}}}}, metav1.CreateOptions{}); err != nil {
		tc.t.Fatal(err)
	}
	if _, err := cs.PolicyV1().PodDisruptionBudgets(ns).Create(ctx, &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Spec:       policyv1.PodDisruptionBudgetSpec{MaxUnavailable: ptr.To(intstr.FromInt32(0)), Selector: &metav1.LabelSelector{MatchLabels: labels}},
	}, metav1.CreateOptions{}); err != nil {
		tc.t.Fatal(err)
	}
}

// TestApplyFaults injects one fault at a time into a rollout: each stops
// apply at that node and step with a clear error and exit 1, leaves the
// nodes after it untouched, and the next apply, once the fault is gone,
// finishes the job.
func TestApplyFaults(t *testing.T) {
	ctx := testutil.Context(t, 10*time.Minute)
	tc := newCluster(t, clusterOpts{CPs: 3, Workers: 2, RebootDelay: 50 * time.Millisecond, Spec: spec{Kubernetes: "v1.34.1"}})
	tc.bootstrap(ctx)
	cps := tc.Names[:3]
	leader := tc.leader()
	first := cps[0]
	if first == leader {
		first = cps[1]
	}

	s := tc.spec
	s.Talos = "v1.11.6"
	tc.write(s)

	t.Run("upgrade rolled back", func(t *testing.T) {
		tc.Nodes[first].SetFaults(faketalos.Faults{UpgradeRollback: true})
		since := time.Now()
		code, out, errOut := tc.apply(ctx)
		if code != 1 || !strings.Contains(errOut, "node "+first+", step wait-upgrade: Talos rolled back the upgrade: the node runs v1.11.5 again after the upgrade to v1.11.6") {
			t.Fatalf("apply with a rollback on %s: exit %d\n%s\n%s", first, code, out, errOut)
		}
		if got := tc.touched("Upgrade", since); strings.Join(got, ",") != first {
			t.Fatalf("nodes upgraded: %v, want only %s", got, first)
		}
		tc.Nodes[first].SetFaults(faketalos.Faults{})
	})

	t.Run("node never comes back", func(t *testing.T) {
		tc.Nodes["w1"].SetFaults(faketalos.Faults{UpgradeNeverReturn: true})
		since := time.Now()
		code, out, errOut := tc.apply(ctx, "--node-timeout", "2s")
		if code != 1 || !strings.Contains(errOut, "node w1, step wait-upgrade: the node did not come back on") {
			t.Fatalf("apply with w1 gone: exit %d\n%s\n%s", code, out, errOut)
		}
		for _, name := range cps {
			if v := tc.Nodes[name].TalosVersion(); v != "v1.11.6" {
				t.Fatalf("%s runs %s", name, v)
			}
		}
		if got := tc.touched("Upgrade", since); strings.Contains(strings.Join(got, ","), "w2") {
			t.Fatalf("w2 was upgraded after w1 failed: %v", got)
		}
		if tc.count("Boot", since)["w2"] != 0 || tc.Nodes["w2"].TalosVersion() != "v1.11.5" {
			t.Fatal("w2 was touched")
		}
		// The node boots once someone fixes it; apply resumes there.
		tc.Nodes["w1"].SetFaults(faketalos.Faults{})
		code, out, errOut = tc.apply(ctx)
		if code != 0 || !strings.Contains(errOut, "resumed after: node w1, step wait-upgrade") {
			t.Fatalf("apply after w1 is back: exit %d\n%s\n%s", code, out, errOut)
		}
		for _, name := range tc.Names {
			if v := tc.Nodes[name].TalosVersion(); v != "v1.11.6" {
				t.Fatalf("%s runs %s", name, v)
			}
			node, err := tc.kube.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil || node.Spec.Unschedulable {
				t.Fatalf("Node %s still cordoned (%v)", name, err)
			}
		}
		if code, out, _ := tc.apply(ctx); code != 0 || !strings.Contains(out, "Nothing to do") {
			t.Fatalf("apply after the upgrade: exit %d\n%s", code, out)
		}
	})

	t.Run("drain blocked by a budget", func(t *testing.T) {
		tc.blockingBudget(ctx, "faults-db", "w1")
		s := tc.spec
		s.Patches = "- machine:\n    env:\n      http_proxy: http://proxy.example:3128"
		tc.write(s)
		since := time.Now()
		start := time.Now()
		code, out, errOut := tc.apply(ctx, "--drain-timeout", "3s")
		took := time.Since(start)
		if code != 1 || !strings.Contains(errOut, "node w1, step drain: draining node w1: not finished within 3s: eviction blocked by PodDisruptionBudget faults-db/db") ||
			!strings.Contains(errOut, "pods left: faults-db/db-0") {
			t.Fatalf("apply with a blocking budget: exit %d\n%s\n%s", code, out, errOut)
		}
		if took > 30*time.Second {
			t.Fatalf("the blocked drain took %s", took)
		}
		if got := tc.count("ApplyConfiguration", since); got["w1"] != 0 || got["w2"] != 0 {
			t.Fatalf("workers changed after the blocked drain: %v", got)
		}
		if err := tc.kube.Client.PolicyV1().PodDisruptionBudgets("faults-db").Delete(ctx, "db", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		if code, out, errOut := tc.apply(ctx); code != 0 || !strings.Contains(errOut, "resumed after: node w1, step drain") {
			t.Fatalf("apply without the budget: exit %d\n%s\n%s", code, out, errOut)
		}
		if code, out, _ := tc.dodai(ctx, "plan"); code != 0 {
			t.Fatalf("plan after the patch: exit %d\n%s", code, out)
		}
	})

	t.Run("config refused", func(t *testing.T) {
		tc.Nodes["cp3"].SetFaults(faketalos.Faults{ApplyError: "disk full"})
		s := tc.spec
		s.Patches = "- machine:\n    sysctls:\n      net.core.somaxconn: \"65535\""
		tc.write(s)
		code, out, errOut := tc.apply(ctx)
		if code != 1 || !strings.Contains(errOut, "node cp3, step apply-config: Talos refused the config: Internal: disk full") {
			t.Fatalf("apply refused by cp3: exit %d\n%s\n%s", code, out, errOut)
		}
		tc.Nodes["cp3"].SetFaults(faketalos.Faults{})
		if code, out, errOut := tc.apply(ctx); code != 0 {
			t.Fatalf("apply after the fault: exit %d\n%s\n%s", code, out, errOut)
		}
	})
}
