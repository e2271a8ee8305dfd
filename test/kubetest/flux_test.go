package kubetest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/dodai-dev/dodai/internal/testutil"
)

var (
	helmRepositoryGVR = schema.GroupVersionResource{Group: "source.toolkit.fluxcd.io", Version: "v1", Resource: "helmrepositories"}
	helmReleaseGVR    = schema.GroupVersionResource{Group: "helm.toolkit.fluxcd.io", Version: "v2", Resource: "helmreleases"}
)

func helmRelease(ns, name, chart string, dependsOn ...string) *unstructured.Unstructured {
	spec := map[string]any{
		"interval": "5m",
		"chart": map[string]any{"spec": map[string]any{
			"chart": chart, "version": "0.1.0",
			"sourceRef": map[string]any{"kind": "HelmRepository", "name": "local"},
		}},
		"values": map[string]any{"data": map[string]any{"release": name}},
	}
	if len(dependsOn) > 0 {
		var deps []any
		for _, d := range dependsOn {
			deps = append(deps, map[string]any{"name": d})
		}
		spec["dependsOn"] = deps
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec":     spec,
	}}
}

// readyCondition returns the Ready condition of obj (nil if none).
func readyCondition(obj *unstructured.Unstructured) map[string]any {
	conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == "Ready" {
			return m
		}
	}
	return nil
}

// waitReady polls a HelmRelease until its Ready condition has the wanted
// status (and, for False, a reason other than progress) and returns it with
// the time it was first seen.
func waitRelease(ctx context.Context, t *testing.T, e *Env, ns, name, status string) (map[string]any, time.Time) {
	t.Helper()
	var last map[string]any
	for {
		obj, err := e.Dynamic.Resource(helmReleaseGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			last = readyCondition(obj)
			if last != nil && last["status"] == status && (status == "True" || last["reason"] != "Progressing") {
				return last, time.Now()
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("HelmRelease %s/%s: Ready is %v, want %s (%v)", ns, name, last, status, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func renderedAt(ctx context.Context, t *testing.T, e *Env, ns, release, chart string) time.Time {
	t.Helper()
	cm, err := e.Client.CoreV1().ConfigMaps(ns).Get(ctx, release+"-"+chart, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("ConfigMap of release %s: %v", release, err)
	}
	if cm.Data["release"] != release {
		t.Errorf("ConfigMap %s data.release = %q: HelmRelease values not applied", cm.Name, cm.Data["release"])
	}
	ts, err := time.Parse(time.RFC3339Nano, cm.Data["renderedAt"])
	if err != nil {
		t.Fatalf("ConfigMap %s renderedAt: %v", cm.Name, err)
	}
	return ts
}

// TestFluxHelmReleases runs the real Flux controllers against a chart
// repository served by the test: a dependent release installs only after its
// dependency is Ready, broken charts report the Helm error, and the
// controllers can be restarted with other flags.
func TestFluxHelmReleases(t *testing.T) {
	ctx := testutil.Context(t, 3*time.Minute)
	e := StartT(t, Options{Flux: &FluxOptions{RequeueDependency: 2 * time.Second}})
	t.Logf("started in %v: %v", e.Timings["total"], e.Timings)
	repo := ServeHelmRepo(t, map[string]ChartSpec{
		"base":    {},
		"app":     {},
		"broken":  {Fail: "broken on purpose"},
		"badyaml": {InvalidYAML: true},
	})
	ns := "flux-test"
	createNamespace(ctx, t, e.Client, ns)
	hr := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "HelmRepository",
		"metadata": map[string]any{"name": "local", "namespace": ns},
		"spec":     map[string]any{"url": repo, "interval": "1m"},
	}}
	created := time.Now()
	if _, err := e.Dynamic.Resource(helmRepositoryGVR).Namespace(ns).Create(ctx, hr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*unstructured.Unstructured{
		helmRelease(ns, "second", "app", "first"),
		helmRelease(ns, "first", "base"),
		helmRelease(ns, "broken", "broken"),
		helmRelease(ns, "badyaml", "badyaml"),
	} {
		if _, err := e.Dynamic.Resource(helmReleaseGVR).Namespace(ns).Create(ctx, r, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating HelmRelease %s: %v", r.GetName(), err)
		}
	}

	firstCond, firstSeen := waitRelease(ctx, t, e, ns, "first", "True")
	secondCond, secondSeen := waitRelease(ctx, t, e, ns, "second", "True")
	t.Logf("first Ready after %v (%s), second after %v", firstSeen.Sub(created), firstCond["message"], secondSeen.Sub(created))
	if msg, _ := secondCond["message"].(string); !strings.Contains(msg, "Helm install succeeded") {
		t.Errorf("second Ready message %q", msg)
	}
	firstAt := renderedAt(ctx, t, e, ns, "first", "base")
	secondAt := renderedAt(ctx, t, e, ns, "second", "app")
	firstReady, err := time.Parse(time.RFC3339, fmt.Sprint(firstCond["lastTransitionTime"]))
	if err != nil {
		t.Fatal(err)
	}
	// lastTransitionTime has second precision: second must render no earlier
	// than the second in which first became Ready, and after first rendered.
	if !secondAt.After(firstAt) || secondAt.Before(firstReady) {
		t.Errorf("second rendered at %v; first rendered at %v and became Ready at %v: dependency order violated", secondAt, firstAt, firstReady)
	}

	// A failing release is first Ready=False for a transient reason (its
	// HelmChart not reconciled yet), then for the Helm error.
	for name, want := range map[string]string{"broken": "broken on purpose", "badyaml": "YAML parse error"} {
		for {
			cond, _ := waitRelease(ctx, t, e, ns, name, "False")
			msg, _ := cond["message"].(string)
			if strings.Contains(msg, want) {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("HelmRelease %s Ready=False message %q, want it to contain %q", name, msg, want)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}

	// Restart the controllers with other flags; they pick up where they were.
	oldPID := e.PID(compHelmController)
	if err := e.StopFlux(); err != nil {
		t.Fatal(err)
	}
	if e.PID(compHelmController) != 0 || e.PID(compSourceController) != 0 {
		t.Fatal("controllers still recorded after StopFlux")
	}
	if err := e.StartFlux(ctx, FluxOptions{Concurrent: 2, RequeueDependency: time.Second}); err != nil {
		t.Fatal(err)
	}
	if err := e.StartFlux(ctx, FluxOptions{}); err == nil {
		t.Error("StartFlux while running: no error")
	}
	if p := e.PID(compHelmController); p == 0 || p == oldPID {
		t.Errorf("helm-controller PID after restart = %d (before %d)", p, oldPID)
	}
	third := helmRelease(ns, "third", "app", "second")
	if _, err := e.Dynamic.Resource(helmReleaseGVR).Namespace(ns).Create(ctx, third, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitRelease(ctx, t, e, ns, "third", "True")
	renderedAt(ctx, t, e, ns, "third", "app")
}
