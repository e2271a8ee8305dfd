package status

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"

	helmv2 "github.com/fluxcd/helm-controller/api/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var now = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func hr(ns, name string, age time.Duration, status metav1.ConditionStatus, reason, msg string, deps ...string) helmv2.HelmRelease {
	h := helmv2.HelmRelease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: metav1.NewTime(now.Add(-age))}}
	for _, d := range deps {
		p := strings.SplitN(d, "/", 2)
		h.Spec.DependsOn = append(h.Spec.DependsOn, helmv2.DependencyReference{Namespace: p[0], Name: p[1]})
	}
	if status != "" {
		h.Generation, h.Status.ObservedGeneration = 1, 1
		h.Status.Conditions = []metav1.Condition{{Type: "Ready", Status: status, Reason: reason, Message: msg, ObservedGeneration: 1}}
	}
	return h
}

const depMsg = "dependency 'x' is not ready"

func TestRootCause(t *testing.T) {
	rep := FromHelmReleases([]helmv2.HelmRelease{
		hr("cozy-cilium", "cilium", 4*time.Minute+time.Second, "True", "InstallSucceeded", "Helm install succeeded for release cozy-cilium/cilium.v1 with chart cilium@1.19.5"),
		hr("cozy-kubeovn", "kubeovn", 4*time.Minute, "True", "InstallSucceeded", "ok", "cozy-cilium/cilium"),
		hr("cozy-cert-manager", "cert-manager", 4*time.Minute, "False", "InstallFailed", "Helm install failed for release cozy-cert-manager/cert-manager with chart cert-manager@v1.20.2: boom", "cozy-cilium/cilium", "cozy-kubeovn/kubeovn"),
		hr("cozy-cert-manager", "cert-manager-issuers", 4*time.Minute, "False", "DependencyNotReady", depMsg, "cozy-kubeovn/kubeovn", "cozy-cert-manager/cert-manager"),
		hr("cozy-victoria-metrics-operator", "victoria-metrics-operator", 3*time.Minute, "False", "DependencyNotReady", depMsg, "cozy-cert-manager/cert-manager"),
		// Two levels up, plus a second failing chain and a missing dependency.
		hr("cozy-monitoring", "monitoring", 3*time.Minute, "False", "DependencyNotReady", depMsg, "cozy-victoria-metrics-operator/victoria-metrics-operator", "cozy-x/broken", "cozy-y/missing"),
		hr("cozy-x", "broken", time.Minute, "False", "UpgradeFailed", "bad values"),
		// RetryOnFailure: Ready only says it will retry; the cause is in Released.
		retrying(hr("cozy-r", "retrying", time.Minute, "False", "RetryAfterInterval", "Will retry after 30s"), "InstallFailed", "Helm install failed: boom"),
		hr("cozy-r", "above", time.Minute, "False", "DependencyNotReady", depMsg, "cozy-r/retrying"),
		// Not reconciled yet, waiting on a blocked release.
		hr("cozy-z", "fresh", 5*time.Second, "", "", "", "cozy-monitoring/monitoring"),
	}, now)
	if rep.AllReady() {
		t.Error("AllReady with failures")
	}
	want := map[string][]string{
		"cozy-cert-manager/cert-manager-issuers":                   {"cozy-cert-manager/cert-manager"},
		"cozy-victoria-metrics-operator/victoria-metrics-operator": {"cozy-cert-manager/cert-manager"},
		"cozy-monitoring/monitoring":                               {"cozy-cert-manager/cert-manager", "cozy-x/broken", "cozy-y/missing"},
		"cozy-z/fresh":                                             {"cozy-cert-manager/cert-manager", "cozy-x/broken", "cozy-y/missing"},
		"cozy-cert-manager/cert-manager":                           nil, // fails on its own
		"cozy-x/broken":                                            nil,
	}
	for k, w := range want {
		r, _ := rep.Get(k)
		if !reflect.DeepEqual(r.RootCauses, w) {
			t.Errorf("%s root causes %v, want %v", k, r.RootCauses, w)
		}
	}
	var b bytes.Buffer
	rep.WriteRootCauses(&b)
	out := b.String()
	for _, s := range []string{
		"cozy-cert-manager/cert-manager: InstallFailed: Helm install failed for release cozy-cert-manager/cert-manager with chart cert-manager@v1.20.2: boom\n    blocks 4: cozy-cert-manager/cert-manager-issuers, cozy-monitoring/monitoring, cozy-victoria-metrics-operator/victoria-metrics-operator, cozy-z/fresh",
		"cozy-x/broken: UpgradeFailed: bad values\n    blocks 2: cozy-monitoring/monitoring, cozy-z/fresh",
		"cozy-y/missing: not found",
		"cozy-r/retrying: InstallFailed: Helm install failed: boom (Will retry after 30s)\n    blocks 1: cozy-r/above",
	} {
		if !strings.Contains(out, s) {
			t.Errorf("root causes output misses %q:\n%s", s, out)
		}
	}
	rows := rep.Rows()
	if !reflect.DeepEqual(rows[0], []string{"cozy-cert-manager", "cert-manager", "4m", "False", "Helm install failed for release cozy-cert-manager/cert-manager with chart cert-manager@v1.20.2: boom"}) {
		t.Errorf("row 0 = %v", rows[0])
	}
	if r, _ := rep.Get("cozy-cilium/cilium"); r.Age != "4m1s" {
		t.Errorf("age %q, want 4m1s (kubectl's format)", r.Age)
	}
	b.Reset()
	rep.WriteTree(&b)
	tree := b.String()
	for _, s := range []string{
		"cozy-cilium/cilium [Ready]\n└── cozy-kubeovn/kubeovn [Ready]\n    └── cozy-cert-manager/cert-manager [Failed: InstallFailed: Helm install failed",
		"        ├── cozy-cert-manager/cert-manager-issuers [Blocked by cozy-cert-manager/cert-manager] (also needs cozy-kubeovn/kubeovn)",
		"cozy-x/broken [Failed: UpgradeFailed: bad values]",
		"[Pending]",
	} {
		if !strings.Contains(tree, s) {
			t.Errorf("tree misses %q:\n%s", s, tree)
		}
	}
}

func TestAllReady(t *testing.T) {
	if FromHelmReleases(nil, now).AllReady() {
		t.Error("no releases must not be all ready")
	}
	rep := FromHelmReleases([]helmv2.HelmRelease{hr("a", "a", time.Hour, "True", "InstallSucceeded", "ok")}, now)
	if !rep.AllReady() {
		t.Error("not all ready")
	}
	var b bytes.Buffer
	rep.WriteRootCauses(&b)
	if b.Len() != 0 {
		t.Errorf("root causes for a healthy platform: %q", b.String())
	}
}

func retrying(h helmv2.HelmRelease, reason, msg string) helmv2.HelmRelease {
	h.Status.Conditions = append(h.Status.Conditions, metav1.Condition{Type: "Released", Status: "False", Reason: reason, Message: msg})
	return h
}

// A release parked by Flux although its dependency is Ready again has no
// root cause; the tree says it waits for Flux's requeue.
func TestParkedWithReadyDependency(t *testing.T) {
	rep := FromHelmReleases([]helmv2.HelmRelease{
		hr("a", "dep", time.Hour, "True", "InstallSucceeded", "ok"),
		hr("b", "parked", time.Hour, "False", "DependencyNotReady", depMsg, "a/dep"),
	}, now)
	r, _ := rep.Get("b/parked")
	if len(r.RootCauses) != 0 || rep.AllReady() {
		t.Errorf("root causes %v, all ready %v", r.RootCauses, rep.AllReady())
	}
	var b bytes.Buffer
	rep.WriteTree(&b)
	if want := "a/dep [Ready]\n└── b/parked [Waiting: dependencies are Ready now, Flux rechecks at its next requeue]\n"; b.String() != want {
		t.Errorf("tree %q, want %q", b.String(), want)
	}
}

// After an upgrade the previous generation's Ready=True is still on the
// object until helm-controller reconciles the new spec: it must not count,
// neither for `dodai status` nor for the releases that depend on it.
func TestStaleReadyDoesNotCount(t *testing.T) {
	upgraded := hr("cozy-cilium", "cilium", time.Hour, "True", "UpgradeSucceeded", "Helm upgrade succeeded for release cozy-cilium/cilium.v2 with chart cilium@1.19.5")
	upgraded.Generation = 2 // spec changed; status still of generation 1
	stalled := hr("cozy-x", "stalled", time.Hour, "False", "InvalidChartReference", "chart not found")
	stalled.Status.Conditions = append(stalled.Status.Conditions, metav1.Condition{Type: "Stalled", Status: "True", Reason: "InvalidChartReference", Message: "chart not found", ObservedGeneration: 1})
	rep := FromHelmReleases([]helmv2.HelmRelease{
		upgraded,
		hr("cozy-kubeovn", "kubeovn", time.Hour, "False", "DependencyNotReady", depMsg, "cozy-cilium/cilium"),
		stalled,
	}, now)
	if rep.AllReady() {
		t.Fatal("a stale Ready=True counted as ready")
	}
	c, _ := rep.Get("cozy-cilium/cilium")
	if c.Ready != "True" || c.IsReady() || c.State != "Progressing" {
		t.Errorf("cilium: READY column %q (kubectl shows the condition), IsReady %v, state %s", c.Ready, c.IsReady(), c.State)
	}
	k, _ := rep.Get("cozy-kubeovn/kubeovn")
	if !reflect.DeepEqual(k.RootCauses, []string{"cozy-cilium/cilium"}) {
		t.Errorf("kubeovn root causes %v", k.RootCauses)
	}
	var b bytes.Buffer
	rep.WriteRootCauses(&b)
	for _, want := range []string{
		"NOT CURRENT", "cozy-cilium/cilium: LatestGenerationNotObserved: HelmRelease generation is 2, but latest observed generation is 1",
		"blocks 1: cozy-kubeovn/kubeovn",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("root causes lack %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	rep.WriteTree(&b)
	for _, want := range []string{"cozy-cilium/cilium [Reconciling: LatestGenerationNotObserved", "cozy-x/stalled [Failed (final): Stalled: InvalidChartReference: chart not found]"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("tree lacks %q:\n%s", want, b.String())
		}
	}
}
