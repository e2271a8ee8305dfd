package day2_test

import (
	"context"
	"testing"
	"time"

	helmv2 "github.com/fluxcd/helm-controller/api/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/dodai-dev/dodai/internal/health"
	"github.com/dodai-dev/dodai/internal/platform"
	"github.com/dodai-dev/dodai/internal/platform/status"
)

// Faults and fixes of what kubelets and helm-controller report (the fake
// kubelets of test/fakekubelet register the Nodes; no helm-controller runs).

// setNode creates or updates a Node with a Ready condition and a kubelet
// version, as a registered kubelet reports them.
func (tc *testCluster) setNode(ctx context.Context, t testing.TB, name string, ready bool, kubelet string) {
	t.Helper()
	nodes := tc.Kube.Client.CoreV1().Nodes()
	n, err := nodes.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		n, err = nodes.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
	st := corev1.ConditionTrue
	reason := "KubeletReady"
	if !ready {
		st, reason = corev1.ConditionFalse, "KubeletNotReady"
	}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st, Reason: reason, Message: "kubelet says so", LastHeartbeatTime: metav1.Now()}}
	n.Status.NodeInfo.KubeletVersion = kubelet
	if _, err := nodes.UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// restoreControlPlanePods creates the mirror pods of Talos' static
// control-plane pods that a test deleted; the node's fake kubelet reports
// them running and Ready.
func (tc *testCluster) restoreControlPlanePods(ctx context.Context, t testing.TB, node string) {
	t.Helper()
	pods := tc.Kube.Client.CoreV1().Pods(metav1.NamespaceSystem)
	for _, comp := range health.ControlPlaneComponents {
		name := comp + "-" + node
		_, err := pods.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err = pods.Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"k8s-app": comp}},
				Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: comp, Image: "registry.k8s.io/" + comp + ":" + kubeVersion}}}}, metav1.CreateOptions{})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// setReleases creates every HelmRelease the cluster file's platform asks
// for, with the status helm-controller gives a released chart; notReady
// ones get Ready=False with an install failure.
func (tc *testCluster) setReleases(ctx context.Context, t testing.TB, notReady map[string]bool) {
	t.Helper()
	src := tc.load(t)
	gr, err := platform.Resolve(src.Cluster.Spec.Platform)
	if err != nil {
		t.Fatal(err)
	}
	res := tc.Kube.Dynamic.Resource(status.HelmReleaseGVR)
	for _, r := range gr.Releases {
		if _, err := tc.Kube.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: r.Namespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		hr := &helmv2.HelmRelease{
			TypeMeta:   metav1.TypeMeta{APIVersion: helmv2.GroupVersion.String(), Kind: "HelmRelease"},
			ObjectMeta: metav1.ObjectMeta{Name: r.Name, Namespace: r.Namespace},
			Spec: helmv2.HelmReleaseSpec{Interval: metav1.Duration{Duration: time.Hour}, Chart: &helmv2.HelmChartTemplate{Spec: helmv2.HelmChartTemplateSpec{
				Chart: r.Source.Chart, SourceRef: helmv2.CrossNamespaceObjectReference{Kind: "HelmRepository", Name: "repo"}}}},
		}
		obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(hr)
		if err != nil {
			t.Fatal(err)
		}
		u, err := res.Namespace(r.Namespace).Get(ctx, r.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			u, err = res.Namespace(r.Namespace).Create(ctx, &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{})
		}
		if err != nil {
			t.Fatal(err)
		}
		cond := metav1.Condition{Type: "Ready", Status: metav1.ConditionTrue, Reason: "InstallSucceeded", Message: "Helm install succeeded", ObservedGeneration: u.GetGeneration(), LastTransitionTime: metav1.Now()}
		if notReady[r.Name] {
			cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, "InstallFailed", "Helm install failed: timed out waiting for the condition"
		}
		st := map[string]any{"observedGeneration": u.GetGeneration(), "conditions": []any{map[string]any{
			"type": cond.Type, "status": string(cond.Status), "reason": cond.Reason, "message": cond.Message,
			"observedGeneration": cond.ObservedGeneration, "lastTransitionTime": cond.LastTransitionTime.UTC().Format(time.RFC3339)}}}
		if err := unstructured.SetNestedField(u.Object, st, "status"); err != nil {
			t.Fatal(err)
		}
		if _, err := res.Namespace(r.Namespace).UpdateStatus(ctx, u, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}
