package readiness

import (
	"testing"
	"time"

	helmv2 "github.com/fluxcd/helm-controller/api/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func cond(typ string, s metav1.ConditionStatus, reason, msg string, gen int64) metav1.Condition {
	return metav1.Condition{Type: typ, Status: s, Reason: reason, Message: msg, ObservedGeneration: gen,
		LastTransitionTime: metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))}
}

func release(gen, observed int64, conds ...metav1.Condition) *helmv2.HelmRelease {
	hr := &helmv2.HelmRelease{ObjectMeta: metav1.ObjectMeta{Name: "cilium", Namespace: "cozy-cilium", Generation: gen}}
	hr.Status.ObservedGeneration = observed
	hr.Status.Conditions = conds
	return hr
}

func TestRule(t *testing.T) {
	ok := "Helm upgrade succeeded for release cozy-cilium/cilium.v2 with chart cilium@1.19.6"
	deleting := release(1, 1, cond("Ready", "True", "InstallSucceeded", ok, 1))
	deleting.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	for _, tc := range []struct {
		name   string
		hr     *helmv2.HelmRelease
		state  State
		reason string
	}{
		{"never reconciled", release(1, 0), Progressing, NotObservedReason},
		{"ready", release(2, 2, cond("Ready", "True", "UpgradeSucceeded", ok, 2)), Ready, "UpgradeSucceeded"},
		{"ready, condition without its own generation", release(2, 2, cond("Ready", "True", "UpgradeSucceeded", ok, 0)), Ready, "UpgradeSucceeded"},
		// The bug this package exists for: after an upgrade the previous
		// generation's Ready=True is still there until helm-controller
		// reconciles the new spec.
		{"stale Ready=True of the previous generation", release(3, 2, cond("Ready", "True", "UpgradeSucceeded", ok, 2)), Progressing, NotObservedReason},
		{"Ready=True whose condition is of an older generation", release(3, 3, cond("Ready", "True", "UpgradeSucceeded", ok, 2)), Progressing, NotObservedReason},
		{"ready false", release(1, 1, cond("Ready", "False", "InstallFailed", "boom", 1)), Progressing, "InstallFailed"},
		{"ready unknown", release(1, 1, cond("Ready", "Unknown", "Progressing", "reconciling", 1)), Progressing, "Progressing"},
		{"reconciling with an old Ready=True", release(1, 1, cond("Ready", "True", "InstallSucceeded", ok, 1), cond("Reconciling", "True", "Progressing", "upgrading", 1)), Progressing, "Progressing"},
		{"stalled is final", release(4, 4, cond("Ready", "False", "InvalidChartReference", "no chart", 4), cond("Stalled", "True", "InvalidChartReference", "no chart", 4)), Failed, "InvalidChartReference"},
		{"stalled of an old generation is not final", release(5, 4, cond("Stalled", "True", "InvalidChartReference", "no chart", 4)), Progressing, NotObservedReason},
		{"no Ready condition", release(1, 1, cond("Released", "True", "InstallSucceeded", ok, 1)), Progressing, NoReadyConditionReason},
		{"deleting", deleting, Terminating, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := OfHelmRelease(tc.hr)
			if got.State != tc.state || got.Reason != tc.reason {
				t.Fatalf("got %s (reason %q), want %s (reason %q)", got, got.Reason, tc.state, tc.reason)
			}
			if got.IsReady() != (tc.state == Ready) || got.Final() != (tc.state == Failed) {
				t.Errorf("IsReady=%v Final=%v for %s", got.IsReady(), got.Final(), got.State)
			}
			if got.State != Ready && got.Message == "" {
				t.Errorf("%s without a message", got.State)
			}
		})
	}
}
