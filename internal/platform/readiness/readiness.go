// Package readiness holds the one rule that says whether a Flux
// HelmRelease is ready. `dodai platform install` waits with it, `dodai
// status` reports with it, and the day-2 rollout gates on it.
//
// The rule is kstatus's (sigs.k8s.io/cli-utils/pkg/kstatus, which Flux's own
// tooling uses) made strict for objects that a controller has not seen yet:
//
//   - the object is being deleted: Terminating;
//   - status.observedGeneration differs from metadata.generation: the
//     controller has not reconciled the current spec, so a Ready=True of the
//     previous generation does not count (Progressing);
//   - Reconciling=True: Progressing; Stalled=True: Failed, which is final
//     (helm-controller gave up until the spec changes);
//   - otherwise the Ready condition decides: True is Ready, False or Unknown
//     is Progressing.
//
// Where kstatus calls an object without status "Current" (it cannot know
// whether the controller uses conditions), this rule says Progressing: a
// HelmRelease always gets Ready and observedGeneration from helm-controller,
// so their absence means "not reconciled yet". A Ready condition that
// carries an observedGeneration of its own must match metadata.generation too.
package readiness

import (
	"fmt"

	helmv2 "github.com/fluxcd/helm-controller/api/v2"
	"github.com/fluxcd/pkg/apis/meta"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	kstatus "sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

// State is the outcome of the rule.
type State string

// States.
const (
	// Ready: the current generation was reconciled and Ready is True.
	Ready State = "Ready"
	// Progressing: not ready yet, and nothing says it never will be.
	Progressing State = "Progressing"
	// Failed: Stalled=True for the current generation; waiting longer does
	// not help until the spec changes.
	Failed State = "Failed"
	// Terminating: the object is being deleted.
	Terminating State = "Terminating"
)

// Result is the state with the reason and message that explain it.
type Result struct {
	State   State  `json:"state"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

// IsReady reports State == Ready.
func (r Result) IsReady() bool { return r.State == Ready }

// Final reports a state that waiting cannot change (Failed).
func (r Result) Final() bool { return r.State == Failed }

func (r Result) String() string {
	if r.Message == "" {
		return string(r.State)
	}
	if r.Reason == "" {
		return string(r.State) + ": " + r.Message
	}
	return fmt.Sprintf("%s: %s: %s", r.State, r.Reason, r.Message)
}

// Reasons the rule adds to kstatus's.
const (
	// NotObservedReason: the controller has not reconciled the current
	// generation (or the object at all) yet.
	NotObservedReason = "LatestGenerationNotObserved"
	// NoReadyConditionReason: no Ready condition yet.
	NoReadyConditionReason = "NoReadyCondition"
)

// Of applies the rule to an object read from the cluster (a HelmRelease or
// any object with Ready/Reconciling/Stalled conditions and
// status.observedGeneration).
func Of(u *unstructured.Unstructured) Result {
	res, err := kstatus.Compute(u)
	if err != nil {
		return Result{State: Progressing, Reason: "InvalidStatus", Message: err.Error()}
	}
	switch res.Status {
	case kstatus.TerminatingStatus:
		return Result{State: Terminating, Message: res.Message}
	case kstatus.FailedStatus:
		reason := ""
		if len(res.Conditions) > 0 {
			reason = res.Conditions[0].Reason
		}
		return Result{State: Failed, Reason: reason, Message: res.Message}
	case kstatus.CurrentStatus:
		return strict(u)
	default:
		reason := ""
		if len(res.Conditions) > 0 {
			reason = res.Conditions[0].Reason
		}
		return Result{State: Progressing, Reason: reason, Message: res.Message}
	}
}

// strict covers what kstatus calls Current: it still needs an observed
// current generation and a Ready=True condition of that generation.
func strict(u *unstructured.Unstructured) Result {
	gen := u.GetGeneration()
	observed, found, _ := unstructured.NestedInt64(u.Object, "status", "observedGeneration")
	if !found || observed == 0 {
		return Result{State: Progressing, Reason: NotObservedReason,
			Message: fmt.Sprintf("%s has not been reconciled yet", u.GetKind())}
	}
	var conds []metav1.Condition
	if raw, ok, _ := unstructured.NestedSlice(u.Object, "status", "conditions"); ok {
		for _, c := range raw {
			m, _ := c.(map[string]any)
			var cond metav1.Condition
			if runtime.DefaultUnstructuredConverter.FromUnstructured(m, &cond) == nil {
				conds = append(conds, cond)
			}
		}
	}
	ready := apimeta.FindStatusCondition(conds, meta.ReadyCondition)
	if ready == nil {
		return Result{State: Progressing, Reason: NoReadyConditionReason,
			Message: fmt.Sprintf("%s has no Ready condition yet", u.GetKind())}
	}
	if ready.ObservedGeneration != 0 && ready.ObservedGeneration != gen {
		return Result{State: Progressing, Reason: NotObservedReason,
			Message: fmt.Sprintf("%s generation is %d, but its Ready condition is of generation %d", u.GetKind(), gen, ready.ObservedGeneration)}
	}
	if ready.Status != metav1.ConditionTrue {
		// kstatus maps this to InProgress already; kept for safety.
		return Result{State: Progressing, Reason: ready.Reason, Message: ready.Message}
	}
	return Result{State: Ready, Reason: ready.Reason, Message: ready.Message}
}

// OfHelmRelease applies the rule to a typed HelmRelease.
func OfHelmRelease(hr *helmv2.HelmRelease) Result {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(hr)
	if err != nil {
		return Result{State: Progressing, Reason: "InvalidStatus", Message: err.Error()}
	}
	u := &unstructured.Unstructured{Object: m}
	if u.GetKind() == "" {
		u.SetKind(helmv2.HelmReleaseKind)
	}
	return Of(u)
}
