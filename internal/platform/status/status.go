// Package status reports the state of the platform's HelmReleases: the
// `kubectl get hr -A` table (NAMESPACE NAME AGE READY STATUS), the root
// cause of every release blocked on its dependencies, and a dependency tree.
package status

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	helmv2 "github.com/fluxcd/helm-controller/api/v2"
	"github.com/fluxcd/pkg/apis/meta"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/client-go/dynamic"

	"github.com/dodai-dev/dodai/internal/platform/readiness"
)

// HelmReleaseGVR is the resource dodai reads.
var HelmReleaseGVR = helmv2.GroupVersion.WithResource("helmreleases")

// Release is one row of the table.
type Release struct {
	Namespace string    `json:"namespace"`
	Name      string    `json:"name"`
	Created   time.Time `json:"created"`
	Age       string    `json:"age"`
	// Ready is the Ready condition's status (True, False, Unknown) or ""
	// before the first reconcile: the READY column of `kubectl get hr`.
	Ready string `json:"ready"`
	// State is the readiness rule's verdict (package readiness): a stale
	// Ready=True of a previous generation is Progressing, Stalled is Failed.
	State  readiness.State `json:"state"`
	Reason string          `json:"reason,omitempty"`
	// Status is the Ready condition's message.
	Status string `json:"status"`
	// Cause is the release's own failure ("reason: message"): the failed
	// Released/TestSuccess/Remediated condition when Ready only says it will
	// retry (RetryOnFailure), else the Ready reason and message.
	Cause string `json:"cause,omitempty"`
	// DependsOn are "namespace/name" keys.
	DependsOn []string `json:"dependsOn,omitempty"`
	// RootCauses, for a release blocked by dependencies, are the keys of the
	// releases at the bottom of the chain that fail on their own.
	RootCauses []string `json:"rootCauses,omitempty"`
}

// Key is "namespace/name".
func (r *Release) Key() string { return r.Namespace + "/" + r.Name }

// IsReady applies the readiness rule (not just Ready=True).
func (r *Release) IsReady() bool { return r.State == readiness.Ready }

// Report is the state of all HelmReleases.
type Report struct {
	Releases []*Release `json:"releases"`
	byKey    map[string]*Release
}

// ErrNoFlux means the cluster has no HelmRelease API: Flux is not installed.
var ErrNoFlux = errors.New("Flux is not installed on the cluster (no HelmRelease API): run `dodai platform install`")

// Collect lists every HelmRelease in the cluster. It returns ErrNoFlux when
// the HelmRelease API does not exist.
func Collect(ctx context.Context, dyn dynamic.Interface, now time.Time) (*Report, error) {
	list, err := dyn.Resource(HelmReleaseGVR).List(ctx, metav1.ListOptions{})
	if apierrors.IsNotFound(err) {
		return nil, ErrNoFlux
	}
	if err != nil {
		return nil, fmt.Errorf("listing HelmReleases: %w", err)
	}
	var hrs []helmv2.HelmRelease
	for _, u := range list.Items {
		var hr helmv2.HelmRelease
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &hr); err != nil {
			return nil, fmt.Errorf("decoding HelmRelease %s/%s: %w", u.GetNamespace(), u.GetName(), err)
		}
		hrs = append(hrs, hr)
	}
	return FromHelmReleases(hrs, now), nil
}

// FromHelmReleases builds the report from HelmRelease objects.
func FromHelmReleases(hrs []helmv2.HelmRelease, now time.Time) *Report {
	rep := &Report{byKey: map[string]*Release{}}
	for i := range hrs {
		hr := &hrs[i]
		rr := readiness.OfHelmRelease(hr)
		r := &Release{Namespace: hr.Namespace, Name: hr.Name, Created: hr.CreationTimestamp.Time,
			Age: duration.HumanDuration(now.Sub(hr.CreationTimestamp.Time)), State: rr.State}
		if c := apimeta.FindStatusCondition(hr.Status.Conditions, meta.ReadyCondition); c != nil {
			r.Ready, r.Reason, r.Status = string(c.Status), c.Reason, c.Message
			r.Cause = c.Reason + ": " + c.Message
			if c.Status != metav1.ConditionTrue {
				for _, t := range []string{helmv2.ReleasedCondition, helmv2.TestSuccessCondition, helmv2.RemediatedCondition} {
					if fc := apimeta.FindStatusCondition(hr.Status.Conditions, t); fc != nil && fc.Status == metav1.ConditionFalse {
						r.Cause = fc.Reason + ": " + fc.Message
						if c.Reason != fc.Reason {
							r.Cause += " (" + c.Message + ")"
						}
						break
					}
				}
			}
			if c.Status == metav1.ConditionTrue && !rr.IsReady() {
				// A Ready=True that does not count (previous generation,
				// reconciling): say why.
				r.Cause = rr.Reason + ": " + rr.Message
			}
		}
		if rr.State == readiness.Failed {
			r.Cause = "Stalled: " + rr.Reason + ": " + rr.Message
		}
		for _, d := range hr.Spec.DependsOn {
			ns := d.Namespace
			if ns == "" {
				ns = hr.Namespace
			}
			r.DependsOn = append(r.DependsOn, ns+"/"+d.Name)
		}
		rep.Releases = append(rep.Releases, r)
		rep.byKey[r.Key()] = r
	}
	sort.Slice(rep.Releases, func(i, j int) bool { return rep.Releases[i].Key() < rep.Releases[j].Key() })
	for _, r := range rep.Releases {
		if !r.IsReady() && rep.blocked(r) {
			r.RootCauses = rep.roots(r)
		}
	}
	return rep
}

// blocked: the release waits for dependencies rather than failing itself.
func (rep *Report) blocked(r *Release) bool {
	if r.Reason == meta.DependencyNotReadyReason {
		return true
	}
	if r.Ready != "" {
		return false
	}
	// Not reconciled yet: blocked if any dependency is not Ready.
	for _, d := range r.DependsOn {
		if dr, ok := rep.byKey[d]; !ok || !dr.IsReady() {
			return true
		}
	}
	return false
}

// roots walks dependsOn from a blocked release down to the releases that are
// not Ready on their own (or missing), sorted and unique.
func (rep *Report) roots(r *Release) []string {
	seen := map[string]bool{}
	found := map[string]bool{}
	var walk func(x *Release)
	walk = func(x *Release) {
		for _, d := range x.DependsOn {
			if seen[d] {
				continue
			}
			seen[d] = true
			dr, ok := rep.byKey[d]
			switch {
			case !ok:
				found[d] = true
			case dr.IsReady():
			case rep.blocked(dr):
				walk(dr)
			default:
				found[d] = true
			}
		}
	}
	walk(r)
	out := make([]string, 0, len(found))
	for k := range found {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// AllReady reports whether every release is Ready (and there is at least one).
func (rep *Report) AllReady() bool {
	for _, r := range rep.Releases {
		if !r.IsReady() {
			return false
		}
	}
	return len(rep.Releases) > 0
}

// Get returns the release with key namespace/name.
func (rep *Report) Get(key string) (*Release, bool) {
	r, ok := rep.byKey[key]
	return r, ok
}

// Rows are the table cells: NAMESPACE NAME AGE READY STATUS, like
// `kubectl get hr -A` (the HelmRelease CRD's printer columns).
func (rep *Report) Rows() [][]string {
	var rows [][]string
	for _, r := range rep.Releases {
		rows = append(rows, []string{r.Namespace, r.Name, r.Age, r.Ready, r.Status})
	}
	return rows
}

// Header of the table.
var Header = []string{"NAMESPACE", "NAME", "AGE", "READY", "STATUS"}

// WriteRootCauses prints, for each failing release at the bottom of a
// blocked chain, its own message and the releases it blocks.
func (rep *Report) WriteRootCauses(w io.Writer) {
	blocks := map[string][]string{}
	var roots []string
	for _, r := range rep.Releases {
		for _, rc := range r.RootCauses {
			if _, ok := blocks[rc]; !ok {
				roots = append(roots, rc)
			}
			blocks[rc] = append(blocks[rc], r.Key())
		}
	}
	var stale []*Release
	for _, r := range rep.Releases {
		if r.Ready == string(metav1.ConditionTrue) && !r.IsReady() {
			stale = append(stale, r)
		}
	}
	if len(stale) > 0 {
		fmt.Fprintln(w, "NOT CURRENT (READY shows True, but Flux has not finished the current spec):")
		for _, r := range stale {
			fmt.Fprintf(w, "  %s: %s\n", r.Key(), r.Cause)
		}
	}
	if len(roots) == 0 {
		return
	}
	sort.Strings(roots)
	fmt.Fprintln(w, "ROOT CAUSE (releases waiting on dependencies are blocked by):")
	for _, k := range roots {
		msg := "not found"
		if r, ok := rep.byKey[k]; ok {
			msg = r.Cause
			if r.Ready == "" {
				msg = "not reconciled yet"
			}
		}
		fmt.Fprintf(w, "  %s: %s\n", k, msg)
		fmt.Fprintf(w, "    blocks %d: %s\n", len(blocks[k]), strings.Join(blocks[k], ", "))
	}
}

// WriteTree prints the dependency graph as a tree with states. Each release
// appears once, under the dependency that is deepest in the graph (the one
// it really waits for); its other dependencies are listed after "also".
func (rep *Report) WriteTree(w io.Writer) {
	depth := map[string]int{}
	var d func(k string, seen map[string]bool) int
	d = func(k string, seen map[string]bool) int {
		if v, ok := depth[k]; ok {
			return v
		}
		r, ok := rep.byKey[k]
		if !ok || seen[k] {
			return 0
		}
		seen[k] = true
		best := 0
		for _, dep := range r.DependsOn {
			if v := d(dep, seen) + 1; v > best {
				best = v
			}
		}
		depth[k] = best
		return best
	}
	parent := map[string]string{}
	children := map[string][]string{}
	var tops []string
	for _, r := range rep.Releases {
		d(r.Key(), map[string]bool{})
		p := ""
		for _, dep := range r.DependsOn {
			if _, ok := rep.byKey[dep]; !ok {
				continue
			}
			if p == "" || depth[dep] > depth[p] {
				p = dep
			}
		}
		if p == "" {
			tops = append(tops, r.Key())
			continue
		}
		parent[r.Key()] = p
		children[p] = append(children[p], r.Key())
	}
	var show func(k, indent string, last bool, top bool)
	show = func(k, indent string, last bool, top bool) {
		r := rep.byKey[k]
		state := "Ready"
		switch {
		case r.IsReady():
		case r.Ready == "":
			state = "Pending"
		case r.State == readiness.Failed:
			state = "Failed (final): " + r.Cause
		case r.Ready == string(metav1.ConditionTrue):
			state = "Reconciling: " + r.Cause
		case len(r.RootCauses) > 0:
			state = "Blocked by " + strings.Join(r.RootCauses, ", ")
		case r.Reason == meta.DependencyNotReadyReason:
			state = "Waiting: dependencies are Ready now, Flux rechecks at its next requeue"
		default:
			state = "Failed: " + r.Cause
		}
		branch, next := "├── ", indent+"│   "
		if last {
			branch, next = "└── ", indent+"    "
		}
		if top {
			branch, next = "", ""
		}
		var also []string
		for _, dep := range r.DependsOn {
			if dep != parent[k] {
				also = append(also, dep)
			}
		}
		extra := ""
		if len(also) > 0 && !top {
			extra = " (also needs " + strings.Join(also, ", ") + ")"
		}
		fmt.Fprintf(w, "%s%s%s [%s]%s\n", indent, branch, k, state, extra)
		kids := children[k]
		for i, c := range kids {
			show(c, next, i == len(kids)-1, false)
		}
	}
	for _, k := range tops {
		show(k, "", true, true)
	}
}
