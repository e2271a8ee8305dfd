// Package install delivers the platform to a cluster: Flux (patched to run
// before a CNI exists), the CNI releases pre-installed with the Helm SDK,
// then the rendered Namespaces, sources and HelmReleases applied server-side
// (field manager "dodai") with pruning of what the previous apply created,
// and a live wait that asks Flux to reconcile dependents as soon as their
// dependencies become Ready.
package install

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	helmv2 "github.com/fluxcd/helm-controller/api/v2"
	"github.com/fluxcd/pkg/apis/meta"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/dodai-dev/dodai/internal/kubewait"
	"github.com/dodai-dev/dodai/internal/platform/graph"
	"github.com/dodai-dev/dodai/internal/platform/readiness"
	"github.com/dodai-dev/dodai/internal/platform/render"
	"github.com/dodai-dev/dodai/internal/platform/status"
	"github.com/dodai-dev/dodai/internal/poll"
)

// Options of an install.
type Options struct {
	// Kubeconfig is the file the Helm SDK uses for the CNI pre-install.
	Kubeconfig string
	// RESTConfig talks to the cluster.
	RESTConfig *rest.Config
	// FluxManifests is Flux's install.yaml (file or directory). Empty with
	// SkipFlux false is an error.
	FluxManifests string
	// SkipFlux leaves Flux alone (it is already installed and managed
	// elsewhere, e.g. by `flux bootstrap`, or runs out of cluster in tests).
	SkipFlux bool
	// Flux patches.
	Flux FluxOptions
	// SkipCNI skips the Helm SDK pre-install of CNI releases.
	SkipCNI bool
	// Timeout bounds the wait for all releases to be Ready (0: don't wait).
	Timeout time.Duration
	// NoKick disables the dependent kick (for measuring Flux alone).
	NoKick bool
	// Progress receives the live view (one line per change); nil: none.
	Progress io.Writer
	Log      *slog.Logger
}

// Result of an install.
type Result struct {
	Applied []AppliedObject `json:"applied"`
	Pruned  []Ref           `json:"pruned,omitempty"`
	// PreinstalledCNI lists CNI releases installed with the Helm SDK.
	PreinstalledCNI []string `json:"preinstalledCNI,omitempty"`
	// Ready is when each release was first seen Ready, since Start.
	Ready map[string]time.Duration `json:"ready,omitempty"`
	// Kicks counts reconcile requests sent to dependents.
	Kicks int `json:"kicks"`
	// Elapsed is the total time.
	Elapsed time.Duration `json:"elapsed"`
}

// AppliedObject is one applied object.
type AppliedObject struct {
	Object  string `json:"object"`
	Changed bool   `json:"changed"`
}

// Changed counts applied objects whose resourceVersion moved.
func (r *Result) Changed() int {
	n := 0
	for _, a := range r.Applied {
		if a.Changed {
			n++
		}
	}
	return n
}

// Install runs the whole platform install; re-running it is an upgrade and
// changes nothing on a healthy, unchanged platform.
func Install(ctx context.Context, g *graph.Graph, o Options) (*Result, error) {
	start := time.Now()
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	logf := func(msg string, a ...any) { o.Log.Info(msg, a...) }
	dyn, err := dynamic.NewForConfig(o.RESTConfig)
	if err != nil {
		return nil, fmt.Errorf("creating Kubernetes client: %w", err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(o.RESTConfig)
	if err != nil {
		return nil, fmt.Errorf("creating discovery client: %w", err)
	}
	ap := NewApplier(dyn, disc)
	res := &Result{}
	record := func(rs []ApplyResult) {
		for _, r := range rs {
			res.Applied = append(res.Applied, AppliedObject{Object: r.Ref.String(), Changed: r.Changed})
		}
	}

	// 1. Flux.
	if !o.SkipFlux {
		if o.FluxManifests == "" {
			return nil, fmt.Errorf("no Flux manifests: set spec.platform.flux.manifests or --flux-manifests to Flux %s's install.yaml, a URL or a local copy (or use --skip-flux when Flux is already installed)", FluxVersion)
		}
		raw, err := LoadFluxManifests(ctx, o.FluxManifests)
		if err != nil {
			return nil, err
		}
		objs, err := PatchFlux(raw, o.Flux)
		if err != nil {
			return nil, err
		}
		rs, err := ApplyFlux(ctx, ap, objs)
		record(rs)
		if err != nil {
			return res, fmt.Errorf("installing Flux: %w", err)
		}
		logf("Flux applied", "objects", len(rs))
	}

	// 2. Render; namespaces first (the CNI pre-install needs them).
	objs, err := render.Objects(g)
	if err != nil {
		return res, err
	}
	// Flux's namespace holds the sources and the inventory; make sure it
	// exists even when Flux was installed by someone else (--skip-flux).
	fluxNS := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace",
		"metadata": map[string]any{"name": render.FluxNamespace}}}
	// (Not when dodai applied Flux's own Namespace object: the same field
	// manager applying a bare one would strip its labels.)
	var nss []*unstructured.Unstructured
	if o.SkipFlux {
		nss = append(nss, fluxNS)
	}
	var others []*unstructured.Unstructured
	for _, u := range objs {
		if u.GetKind() == "Namespace" {
			nss = append(nss, u)
		} else {
			others = append(others, u)
		}
	}
	rs, err := ap.Apply(ctx, nss, false)
	record(rs)
	if err != nil {
		return res, err
	}
	createdNS := map[Ref]bool{}
	for _, r := range rs {
		if r.Created {
			createdNS[r.Ref] = true
		}
	}

	// 3. CNI pre-install with the Helm SDK.
	if !o.SkipCNI {
		for _, r := range g.Releases {
			if !r.CNI {
				continue
			}
			hr, err := render.HelmRelease(g, r)
			if err != nil {
				return res, err
			}
			ok, err := PreinstallCNI(ctx, o.Kubeconfig, r, hr, 5*time.Minute, o.Log)
			if err != nil {
				return res, err
			}
			if ok {
				res.PreinstalledCNI = append(res.PreinstalledCNI, r.Namespace+"/"+r.ReleaseName)
			}
		}
	}

	// 4. Sources and HelmReleases, inventory, prune.
	rs, err = ap.Apply(ctx, others, false)
	record(rs)
	if err != nil {
		return res, err
	}
	old, err := ap.ReadInventory(ctx, render.FluxNamespace)
	if err != nil {
		return res, err
	}
	inOld := map[Ref]bool{}
	for _, r := range old {
		inOld[r] = true
	}
	// The inventory lists what dodai may prune later. A Namespace counts only
	// when dodai created it (now or in an earlier run): one that existed
	// before (kube-system, a user's own) must never be deleted with its
	// contents when a component leaves the file.
	var refs []Ref
	for _, u := range objs {
		r := RefOf(u)
		if u.GetKind() == "Namespace" && !createdNS[r] && !inOld[r] {
			continue
		}
		refs = append(refs, r)
	}
	// Record old ∪ new before pruning, and only the new set after the prune
	// succeeded: a prune that fails or is interrupted is retried next run
	// instead of leaving its objects behind unlisted.
	if err := writeInventory(ctx, ap, append(append([]Ref(nil), old...), refs...), record); err != nil {
		return res, err
	}
	pctx, cancel := context.WithTimeout(ctx, pruneTimeout)
	pruned, err := ap.Prune(pctx, old, refs, logf)
	cancel()
	res.Pruned = pruned
	if err != nil {
		return res, err
	}
	if err := writeInventory(ctx, ap, refs, record); err != nil {
		return res, err
	}

	// 5. Wait, kicking dependents.
	if o.Timeout > 0 {
		wctx, cancel := context.WithTimeout(ctx, o.Timeout)
		defer cancel()
		w := &Waiter{Dyn: dyn, Graph: g, Kick: !o.NoKick, Progress: o.Progress, Start: start}
		err := w.Wait(wctx)
		res.Ready, res.Kicks = w.ReadyAt, w.Kicks
		res.Elapsed = time.Since(start)
		if err != nil {
			return res, err
		}
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// Bounds of the steps that wait on controllers, so a stuck uninstall or a
// CRD that never becomes Established fails the command instead of hanging.
const (
	pruneTimeout = 10 * time.Minute
	crdTimeout   = 2 * time.Minute
)

// writeInventory applies the inventory ConfigMap listing refs (deduplicated).
func writeInventory(ctx context.Context, ap *Applier, refs []Ref, record func([]ApplyResult)) error {
	seen := map[Ref]bool{}
	var uniq []Ref
	for _, r := range refs {
		if !seen[r] {
			seen[r] = true
			uniq = append(uniq, r)
		}
	}
	inv, err := InventoryObject(render.FluxNamespace, uniq)
	if err != nil {
		return err
	}
	rs, err := ap.Apply(ctx, []*unstructured.Unstructured{inv}, false)
	record(rs)
	return err
}

// ApplyFlux applies CRDs and Namespaces first, waits for the CRDs to be
// Established, then applies the rest.
func ApplyFlux(ctx context.Context, ap *Applier, objs []*unstructured.Unstructured) ([]ApplyResult, error) {
	var first, others []*unstructured.Unstructured
	for _, u := range objs {
		if u.GetKind() == "CustomResourceDefinition" || u.GetKind() == "Namespace" {
			first = append(first, u)
		} else {
			others = append(others, u)
		}
	}
	rs, err := ap.Apply(ctx, first, false)
	if err != nil {
		return rs, err
	}
	cctx, cancel := context.WithTimeout(ctx, crdTimeout)
	defer cancel()
	for _, u := range first {
		if u.GetKind() != "CustomResourceDefinition" {
			continue
		}
		if err := ap.WaitEstablished(cctx, u.GetName()); err != nil {
			return rs, err
		}
	}
	ap.mapper.Reset()
	more, err := ap.Apply(ctx, others, false)
	return append(rs, more...), err
}

// WaitEstablished waits until the CRD of that name is Established (its
// kinds are served), or ctx ends.
func (a *Applier) WaitEstablished(ctx context.Context, name string) error {
	return kubewait.WaitEstablished(ctx, name, func(ctx context.Context) (*unstructured.Unstructured, error) {
		return a.Dyn.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
	})
}

func toMap(o runtime.Object) (map[string]any, error) {
	return runtime.DefaultUnstructuredConverter.ToUnstructured(o)
}

// RequestedAtAnnotation asks Flux to reconcile an object now.
const RequestedAtAnnotation = meta.ReconcileRequestAnnotation

// Waiter waits for all releases of a graph to be Ready.
type Waiter struct {
	Dyn   dynamic.Interface
	Graph *graph.Graph
	// Kick: when a release becomes Ready, annotate its dependents that wait
	// for it (Ready=False, DependencyNotReady) and now have all dependencies
	// Ready with reconcile.fluxcd.io/requestedAt, so helm-controller
	// reconciles them at once instead of after --requeue-dependency.
	Kick     bool
	Progress io.Writer
	Start    time.Time
	// Poll interval (default 250ms).
	Poll time.Duration
	// Settle is how long all releases must stay Ready together before Wait
	// returns (default 2s): every helm-controller reconcile of a release
	// flips its Ready condition to Unknown for a moment, and a dependent
	// that checks it then is parked again until its next requeue.
	Settle time.Duration

	ReadyAt map[string]time.Duration
	Kicks   int
}

// Wait returns nil once every release is Ready at the same time, or the
// context's error with the root causes of what is not.
func (w *Waiter) Wait(ctx context.Context) error {
	if w.Poll == 0 {
		w.Poll = 250 * time.Millisecond
	}
	if w.Settle == 0 {
		w.Settle = 2 * time.Second
	}
	if w.Start.IsZero() {
		w.Start = time.Now()
	}
	w.ReadyAt = map[string]time.Duration{}
	total := len(w.Graph.Releases)
	key := func(r graph.Release) string { return r.Namespace + "/" + r.Name }
	byName := map[string]graph.Release{}
	for _, r := range w.Graph.Releases {
		byName[r.Name] = r
	}
	hrRes := w.Dyn.Resource(status.HelmReleaseGVR)
	lastKick := map[string]time.Time{}
	var allSince time.Time
	lastMsg := map[string]string{}
	// timedOut reports, from the last list read, which releases were not
	// Ready when the wait ran out, with their root causes.
	timedOut := func(cause error, hrs []helmv2.HelmRelease, rule map[string]readiness.Result) error {
		rep := status.FromHelmReleases(hrs, time.Now())
		var b strings.Builder
		rep.WriteRootCauses(&b)
		var notReady []string
		for _, r := range w.Graph.Releases {
			if !rule[key(r)].IsReady() {
				notReady = append(notReady, key(r))
			}
		}
		return fmt.Errorf("%d of %d releases not Ready (%s): %w\n%s", len(notReady), total, strings.Join(notReady, ", "), cause, strings.TrimRight(b.String(), "\n"))
	}
	var lastHRs []helmv2.HelmRelease
	var lastRule map[string]readiness.Result
	err := poll.Until(ctx, poll.Options{Interval: w.Poll}, func(ctx context.Context) (bool, error) {
		list, err := hrRes.List(ctx, metav1.ListOptions{})
		if err != nil {
			// A refusal is final. Anything else (the apiserver busy, the
			// client's rate limiter refusing a wait that would pass the
			// deadline) is "not yet": when the wait ends, what was read
			// last says what is missing.
			err = fmt.Errorf("listing HelmReleases: %w", err)
			if apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) || apierrors.IsNotFound(err) {
				return false, poll.Stop(err)
			}
			return false, err
		}
		state := map[string]*metav1.Condition{}
		rule := map[string]readiness.Result{}
		var hrs []helmv2.HelmRelease
		for i := range list.Items {
			u := &list.Items[i]
			var hr helmv2.HelmRelease
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &hr); err != nil {
				return false, poll.Stop(err)
			}
			hrs = append(hrs, hr)
			k := hr.Namespace + "/" + hr.Name
			state[k] = apimeta.FindStatusCondition(hr.Status.Conditions, meta.ReadyCondition)
			rule[k] = readiness.Of(u)
		}
		lastHRs, lastRule = hrs, rule
		// The one readiness rule: the current generation observed, Ready
		// True; a stale Ready=True of the previous generation does not count.
		ready := func(k string) bool { return rule[k].IsReady() }
		// Stalled is final: helm-controller will not retry until the spec
		// changes, so waiting longer cannot help.
		var stalled []string
		for _, r := range w.Graph.Releases {
			if res := rule[key(r)]; res.Final() {
				stalled = append(stalled, fmt.Sprintf("%s: %s", key(r), res))
			}
		}
		if len(stalled) > 0 {
			return false, poll.Stop(fmt.Errorf("%d release(s) stalled (Flux will not retry until their spec changes):\n  %s", len(stalled), strings.Join(stalled, "\n  ")))
		}
		for _, r := range w.Graph.Releases {
			k := key(r)
			if _, done := w.ReadyAt[k]; !done && ready(k) {
				w.ReadyAt[k] = time.Since(w.Start)
				w.progress("%-8s %2d/%d  %s Ready (%s)", fmtDur(w.ReadyAt[k]), len(w.ReadyAt), total, k, state[k].Message)
			} else if c := state[k]; c != nil && c.Status == metav1.ConditionFalse && c.Message != lastMsg[k] && c.Reason != meta.DependencyNotReadyReason {
				w.progress("%-8s        %s %s: %s", fmtDur(time.Since(w.Start)), k, c.Reason, c.Message)
			}
			if c := state[k]; c != nil {
				lastMsg[k] = c.Message
			}
		}
		allNow := true
		for _, r := range w.Graph.Releases {
			allNow = allNow && ready(key(r))
		}
		switch {
		case !allNow:
			allSince = time.Time{}
		case allSince.IsZero():
			allSince = time.Now()
		}
		if allNow && time.Since(allSince) >= w.Settle {
			return true, nil
		}
		if w.Kick {
			// Every release parked by helm-controller until its next
			// --requeue-dependency (Ready=False, DependencyNotReady) whose
			// dependencies are now all Ready; again after a second if
			// helm-controller's cache was behind and parked it once more.
			// Releases being reconciled (or Ready) are never kicked: that
			// would flip them to Unknown and park their own dependents.
			for _, r := range w.Graph.Releases {
				c := state[key(r)]
				if c == nil || c.Reason != meta.DependencyNotReadyReason || time.Since(lastKick[r.Name]) < time.Second {
					continue
				}
				all := true
				for _, d := range r.DependsOn {
					all = all && ready(key(byName[d]))
				}
				if !all {
					continue
				}
				if err := w.kick(ctx, r); err != nil {
					return false, poll.Stop(err)
				}
				lastKick[r.Name] = time.Now()
			}
		}
		return false, nil
	})
	if perr := (*poll.Error)(nil); errors.As(err, &perr) {
		if lastRule == nil { // never read a list
			return fmt.Errorf("waiting for %d releases: %w", total, perr)
		}
		return timedOut(perr.Cause, lastHRs, lastRule)
	}
	return err
}

func (w *Waiter) kick(ctx context.Context, r graph.Release) error {
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, RequestedAtAnnotation, time.Now().Format(time.RFC3339Nano))
	_, err := w.Dyn.Resource(status.HelmReleaseGVR).Namespace(r.Namespace).Patch(ctx, r.Name, types.MergePatchType, []byte(patch),
		metav1.PatchOptions{FieldManager: FieldManager + "-kick"})
	if err != nil {
		return fmt.Errorf("asking Flux to reconcile %s/%s: %w", r.Namespace, r.Name, err)
	}
	w.Kicks++
	return nil
}

func (w *Waiter) progress(f string, a ...any) {
	if w.Progress != nil {
		fmt.Fprintf(w.Progress, f+"\n", a...)
	}
}

func fmtDur(d time.Duration) string { return d.Round(100 * time.Millisecond).String() }
