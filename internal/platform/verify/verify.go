// Package verify is the platform's preflight: before 24 releases are handed
// to Flux it fetches every chart (from its source, or from one Helm
// repository holding them all), renders it with the Helm SDK and the
// release's values, and reports per release: render errors, objects written
// into namespaces nothing creates, objects two owners render (two releases,
// or a release and dodai itself), custom resources whose CRD no release it
// depends on installs, and — given a cluster — what the API server rejects
// in a server-side dry-run (CRDs first, in dependency order). It also lists
// the container images the rendered platform references and mirrors the
// charts into a directory usable as one Helm repository.
package verify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"time"

	"helm.sh/helm/v3/pkg/chartutil"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/dodai-dev/dodai/internal/platform/graph"
	"github.com/dodai-dev/dodai/internal/platform/install"
	"github.com/dodai-dev/dodai/internal/platform/render"
)

// Options of a verification.
type Options struct {
	// Fetcher gets the charts (its Charts field: one repository for all).
	Fetcher *Fetcher
	// KubeVersion the charts are rendered for (e.g. v1.34.1); with
	// RESTConfig the cluster's own version is used.
	KubeVersion string
	// RESTConfig, when set, makes templates' lookup read the cluster and
	// adds the server-side dry-run. Verify then creates dodai's Namespaces
	// and the charts' CRDs and Namespaces (what `platform install` and Helm
	// create first anyway); everything else is only dry-run.
	RESTConfig *rest.Config
	Log        *slog.Logger
}

// Checks a finding can come from.
const (
	CheckFetch           = "fetch-error"
	CheckRender          = "render-error"
	CheckForeign         = "foreign-namespace"
	CheckCollision       = "collision"
	CheckMissingCRD      = "missing-crd"
	CheckRejected        = "rejected"
	CheckOtherNamespace  = "other-namespace" // a note, not a failure
	CheckDependencyError = "dependency-failed"
)

// Finding is one problem (or note) of a release.
type Finding struct {
	Check   string `json:"check"`
	Object  string `json:"object,omitempty"`
	Message string `json:"message"`
	// Note findings do not fail the release.
	Note bool `json:"note,omitempty"`
}

func (f Finding) String() string {
	s := f.Check + ": "
	if f.Object != "" {
		s += f.Object + ": "
	}
	return s + f.Message
}

// Release is the verification of one release.
type Release struct {
	Name        string    `json:"name"`
	Namespace   string    `json:"namespace"`
	ReleaseName string    `json:"releaseName"`
	Chart       string    `json:"chart"`
	Version     string    `json:"version"`
	From        string    `json:"from,omitempty"`
	Objects     int       `json:"objects"`
	CRDs        int       `json:"crds"`
	Findings    []Finding `json:"findings,omitempty"`

	objs []Rendered
}

// OK reports a release without failing findings.
func (r *Release) OK() bool {
	for _, f := range r.Findings {
		if !f.Note {
			return false
		}
	}
	return true
}

// Result is "ok" or the check of the first failing finding.
func (r *Release) Result() string {
	for _, f := range r.Findings {
		if !f.Note {
			return f.Check
		}
	}
	return "ok"
}

// Rendered returns what the release's chart rendered.
func (r *Release) Rendered() []Rendered { return r.objs }

func (r *Release) add(check, obj, msg string, note bool) {
	r.Findings = append(r.Findings, Finding{Check: check, Object: obj, Message: msg, Note: note})
}

// Report is the verification of a whole platform.
type Report struct {
	KubeVersion string     `json:"kubeVersion"`
	DryRun      bool       `json:"dryRun"`
	Releases    []*Release `json:"releases"`
}

// OK reports whether every release is fine.
func (rep *Report) OK() bool {
	for _, r := range rep.Releases {
		if !r.OK() {
			return false
		}
	}
	return true
}

// Rows for the table RELEASE CHART@VERSION OBJECTS RESULT.
func (rep *Report) Rows() [][]string {
	var rows [][]string
	for _, r := range rep.Releases {
		rows = append(rows, []string{r.Namespace + "/" + r.Name, r.Chart + "@" + r.Version, fmt.Sprint(r.Objects), r.Result()})
	}
	return rows
}

// Header of Rows.
var Header = []string{"RELEASE", "CHART@VERSION", "OBJECTS", "RESULT"}

// WriteFindings prints every finding, per release.
func (rep *Report) WriteFindings(w io.Writer) {
	for _, r := range rep.Releases {
		for _, f := range r.Findings {
			mark := "  "
			if f.Note {
				mark = "  (note) "
			}
			fmt.Fprintf(w, "%s/%s:\n%s%s\n", r.Namespace, r.Name, mark, f)
		}
	}
}

func objRef(u *unstructured.Unstructured) string {
	gvk := u.GroupVersionKind()
	k := gvk.Kind
	if gvk.Group != "" {
		k += "." + gvk.Group
	}
	if ns := u.GetNamespace(); ns != "" {
		return k + " " + ns + "/" + u.GetName()
	}
	return k + " " + u.GetName()
}

// Verify fetches, renders and checks every release of g.
func Verify(ctx context.Context, g *graph.Graph, o Options) (*Report, error) {
	if o.Fetcher == nil {
		o.Fetcher = &Fetcher{}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	rep := &Report{KubeVersion: o.KubeVersion}
	var ap *install.Applier
	if o.RESTConfig != nil {
		disc, err := discovery.NewDiscoveryClientForConfig(o.RESTConfig)
		if err != nil {
			return nil, err
		}
		v, err := disc.ServerVersion()
		if err != nil {
			return nil, fmt.Errorf("asking the cluster for its version: %w", err)
		}
		rep.KubeVersion = v.GitVersion
		dyn, err := dynamic.NewForConfig(o.RESTConfig)
		if err != nil {
			return nil, err
		}
		ap = install.NewApplier(dyn, disc)
		rep.DryRun = true
	}
	caps := chartutil.DefaultCapabilities.Copy()
	if rep.KubeVersion != "" {
		kv, err := chartutil.ParseKubeVersion(rep.KubeVersion)
		if err != nil {
			return nil, fmt.Errorf("kubernetes version %q: %w", rep.KubeVersion, err)
		}
		caps.KubeVersion = *kv
	} else {
		rep.KubeVersion = caps.KubeVersion.Version
	}

	dodaiObjs, err := render.Objects(g)
	if err != nil {
		return nil, err
	}
	byName := map[string]*Release{}
	for _, r := range g.Releases {
		vr := &Release{Name: r.Name, Namespace: r.Namespace, ReleaseName: r.ReleaseName,
			Chart: strings.TrimPrefix(r.Source.Chart, "./charts/"), Version: r.Source.Version}
		rep.Releases = append(rep.Releases, vr)
		byName[r.Name] = vr
	}
	// Dry-run needs dodai's namespaces to exist (install step 2 creates them).
	if ap != nil {
		var nss []*unstructured.Unstructured
		for _, u := range dodaiObjs {
			if u.GetKind() == "Namespace" {
				nss = append(nss, u)
			}
		}
		if _, err := ap.Apply(ctx, nss, false); err != nil {
			return nil, fmt.Errorf("creating the platform's namespaces: %w", err)
		}
	}

	// Render in dependency order: a release sees the API versions of the
	// CRDs its dependencies install (as on a cluster where they are Ready).
	deps := transitive(g)
	crdsOf := map[string][]*unstructured.Unstructured{}
	for _, layer := range g.Layers() {
		for _, name := range layer {
			r, _ := g.Release(name)
			vr := byName[name]
			rc := caps.Copy()
			var extra []string
			for _, d := range deps[name] {
				for _, c := range crdsOf[d] {
					extra = append(extra, crdAPIVersions(c)...)
				}
			}
			rc.APIVersions = append(rc.APIVersions, extra...)
			o.Log.Debug("rendering", "release", vr.Namespace+"/"+vr.Name, "chart", vr.Chart+"@"+vr.Version)
			a, err := o.Fetcher.Fetch(ctx, r.Source)
			if err != nil {
				vr.add(CheckFetch, "", err.Error(), false)
				continue
			}
			vr.From = a.From
			ch, err := o.Fetcher.Load(ctx, a)
			if err != nil {
				vr.add(CheckFetch, "", err.Error(), false)
				continue
			}
			objs, err := Render(ch, r.ReleaseName, r.Namespace, r.Values, rc, o.RESTConfig)
			if err != nil {
				vr.add(CheckRender, "", err.Error(), false)
				continue
			}
			for i := range objs {
				if isCRD(objs[i].Obj) {
					crdsOf[name] = append(crdsOf[name], objs[i].Obj)
					vr.CRDs++
				}
			}
			vr.objs = objs
			vr.Objects = len(objs)
		}
	}

	scope := newScopes(ap, crdsOf)
	for _, vr := range rep.Releases {
		for _, ro := range vr.objs {
			if scope.namespaced(ro.Obj) && ro.Obj.GetNamespace() == "" {
				ro.Obj.SetNamespace(vr.Namespace)
			}
		}
	}
	checkNamespaces(g, rep, dodaiObjs, scope)
	checkCollisions(rep, dodaiObjs, scope)
	checkCRDs(g, rep, deps, crdsOf, ap)
	if ap != nil {
		if err := dryRun(ctx, g, rep, byName, ap); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// transitive maps each release to all releases it depends on, directly or not.
func transitive(g *graph.Graph) map[string][]string {
	out := map[string][]string{}
	var walk func(n string, seen map[string]bool)
	walk = func(n string, seen map[string]bool) {
		r, ok := g.Release(n)
		if !ok {
			return
		}
		for _, d := range r.DependsOn {
			if !seen[d] {
				seen[d] = true
				walk(d, seen)
			}
		}
	}
	for _, r := range g.Releases {
		seen := map[string]bool{}
		walk(r.Name, seen)
		for d := range seen {
			out[r.Name] = append(out[r.Name], d)
		}
		sort.Strings(out[r.Name])
	}
	return out
}

func isNamespace(u *unstructured.Unstructured) bool {
	return u.GetKind() == "Namespace" && u.GetAPIVersion() == "v1"
}

func isCRD(u *unstructured.Unstructured) bool {
	return u.GetKind() == "CustomResourceDefinition" && strings.HasPrefix(u.GetAPIVersion(), "apiextensions.k8s.io/")
}

// crdAPIVersions are the "group/version" and "group/version/Kind" strings
// Helm's .Capabilities.APIVersions.Has answers for a CRD.
func crdAPIVersions(crd *unstructured.Unstructured) []string {
	group, _, _ := unstructured.NestedString(crd.Object, "spec", "group")
	kind, _, _ := unstructured.NestedString(crd.Object, "spec", "names", "kind")
	vers, _, _ := unstructured.NestedSlice(crd.Object, "spec", "versions")
	var out []string
	for _, v := range vers {
		m, _ := v.(map[string]any)
		name, _ := m["name"].(string)
		if served, ok := m["served"].(bool); name == "" || (ok && !served) {
			continue
		}
		out = append(out, group+"/"+name, group+"/"+name+"/"+kind)
	}
	return out
}

func crdGroupKind(crd *unstructured.Unstructured) schema.GroupKind {
	group, _, _ := unstructured.NestedString(crd.Object, "spec", "group")
	kind, _, _ := unstructured.NestedString(crd.Object, "spec", "names", "kind")
	return schema.GroupKind{Group: group, Kind: kind}
}

// systemNamespaces exist on every cluster.
var systemNamespaces = map[string]bool{"kube-system": true, "kube-public": true, "kube-node-lease": true, "default": true, render.FluxNamespace: true}

// checkNamespaces: objects outside their release's namespace. Into a
// namespace nothing creates: a failure (the install fails on it). Into
// another namespace that exists (a system one, another release's): a note.
func checkNamespaces(g *graph.Graph, rep *Report, dodaiObjs []*unstructured.Unstructured, scope *scopes) {
	created := map[string]bool{}
	for _, u := range dodaiObjs {
		if u.GetKind() == "Namespace" {
			created[u.GetName()] = true
		}
	}
	for _, vr := range rep.Releases {
		r, _ := g.Release(vr.Name)
		own := map[string]bool{vr.Namespace: true}
		for _, n := range r.Namespaces {
			own[n] = true
		}
		made := map[string]bool{}
		for _, ro := range vr.objs {
			if isNamespace(ro.Obj) {
				made[ro.Obj.GetName()] = true
			}
		}
		notes := map[string][]string{}
		for _, ro := range vr.objs {
			ns := ro.Obj.GetNamespace()
			if ns == "" || own[ns] || !scope.namespaced(ro.Obj) {
				continue
			}
			if created[ns] || systemNamespaces[ns] || made[ns] {
				notes[ns] = append(notes[ns], objRef(ro.Obj))
				continue
			}
			vr.add(CheckForeign, objRef(ro.Obj), fmt.Sprintf("namespace %q is created by neither this chart nor dodai (the chart hard-codes it)", ns), false)
		}
		for _, ns := range sortedKeys(notes) {
			vr.add(CheckOtherNamespace, "", fmt.Sprintf("%d object(s) in namespace %s: %s", len(notes[ns]), ns, strings.Join(notes[ns], ", ")), true)
		}
	}
}

// checkCollisions: one object rendered by two owners.
func checkCollisions(rep *Report, dodaiObjs []*unstructured.Unstructured, scope *scopes) {
	owners := map[string][]string{}
	key := func(u *unstructured.Unstructured) string {
		gk := u.GroupVersionKind().GroupKind()
		ns := u.GetNamespace()
		if !scope.namespaced(u) {
			ns = ""
		}
		return gk.String() + "|" + ns + "|" + u.GetName()
	}
	refs := map[string]string{}
	for _, u := range dodaiObjs {
		k := key(u)
		owners[k] = append(owners[k], "dodai (platform render)")
		refs[k] = objRef(u)
	}
	for _, vr := range rep.Releases {
		seen := map[string]bool{}
		for _, ro := range vr.objs {
			k := key(ro.Obj)
			if seen[k] {
				continue
			}
			seen[k] = true
			owners[k] = append(owners[k], "release "+vr.Namespace+"/"+vr.Name)
			refs[k] = objRef(ro.Obj)
		}
	}
	for _, vr := range rep.Releases {
		me := "release " + vr.Namespace + "/" + vr.Name
		done := map[string]bool{}
		for _, ro := range vr.objs {
			k := key(ro.Obj)
			if done[k] || len(owners[k]) < 2 {
				continue
			}
			done[k] = true
			var others []string
			for _, o := range owners[k] {
				if o != me {
					others = append(others, o)
				}
			}
			vr.add(CheckCollision, refs[k], "also rendered by "+strings.Join(others, ", "), false)
		}
	}
}

// checkCRDs: custom resources whose CRD neither the release nor one of its
// dependencies installs (nor, with a cluster, the cluster already serves).
func checkCRDs(g *graph.Graph, rep *Report, deps map[string][]string, crdsOf map[string][]*unstructured.Unstructured, ap *install.Applier) {
	owner := map[schema.GroupKind]string{}
	for _, r := range g.Releases {
		for _, c := range crdsOf[r.Name] {
			owner[crdGroupKind(c)] = r.Name
		}
	}
	for _, vr := range rep.Releases {
		avail := map[schema.GroupKind]bool{}
		for _, n := range append([]string{vr.Name}, deps[vr.Name]...) {
			for _, c := range crdsOf[n] {
				avail[crdGroupKind(c)] = true
			}
		}
		for _, ro := range vr.objs {
			gvk := ro.Obj.GroupVersionKind()
			gk := gvk.GroupKind()
			if builtinGroup(gk.Group) || avail[gk] {
				continue
			}
			if o, ok := owner[gk]; ok {
				vr.add(CheckMissingCRD, objRef(ro.Obj), fmt.Sprintf("its CRD comes from release %s, which this release does not depend on (Flux may install it first)", o), false)
				continue
			}
			if ap != nil {
				if _, err := ap.Namespaced(gvk); err == nil {
					continue // the cluster serves it already
				}
			}
			vr.add(CheckMissingCRD, objRef(ro.Obj), "no release installs its CRD", false)
		}
	}
}

// builtinGroups are served by every API server (and Flux's, which dodai
// installs before any release).
var builtinGroups = map[string]bool{"": true, "apps": true, "batch": true, "autoscaling": true, "policy": true,
	"rbac.authorization.k8s.io": true, "networking.k8s.io": true, "storage.k8s.io": true, "scheduling.k8s.io": true,
	"admissionregistration.k8s.io": true, "apiextensions.k8s.io": true, "apiregistration.k8s.io": true,
	"coordination.k8s.io": true, "discovery.k8s.io": true, "node.k8s.io": true, "certificates.k8s.io": true,
	"events.k8s.io": true, "flowcontrol.apiserver.k8s.io": true, "resource.k8s.io": true, "authentication.k8s.io": true,
	"authorization.k8s.io": true, "storagemigration.k8s.io": true, "internal.apiserver.k8s.io": true,
	"source.toolkit.fluxcd.io": true, "helm.toolkit.fluxcd.io": true}

func builtinGroup(g string) bool { return builtinGroups[g] }

// dryRun: layer by layer, the releases' CRDs and Namespaces are applied
// (CRDs awaited until Established), as Helm creates them first; then every
// other object is server-side dry-run on its own, so each rejection is
// reported with the API server's message.
func dryRun(ctx context.Context, g *graph.Graph, rep *Report, byName map[string]*Release, ap *install.Applier) error {
	for _, layer := range g.Layers() {
		for _, name := range layer {
			vr := byName[name]
			for _, ro := range vr.objs {
				if !isCRD(ro.Obj) && !isNamespace(ro.Obj) {
					continue
				}
				if _, err := ap.Apply(ctx, []*unstructured.Unstructured{ro.Obj}, false); err != nil {
					vr.add(CheckRejected, objRef(ro.Obj), apiMessage(err), false)
					continue
				}
				if !isCRD(ro.Obj) {
					continue
				}
				cctx, cancel := context.WithTimeout(ctx, time.Minute)
				err := ap.WaitEstablished(cctx, ro.Obj.GetName())
				cancel()
				if err != nil {
					vr.add(CheckRejected, objRef(ro.Obj), err.Error(), false)
				}
			}
		}
		for _, name := range layer {
			vr := byName[name]
			if !vr.OK() && vr.Objects == 0 {
				continue
			}
			for _, ro := range vr.objs {
				if isCRD(ro.Obj) || isNamespace(ro.Obj) {
					continue
				}
				if _, err := ap.Apply(ctx, []*unstructured.Unstructured{ro.Obj}, true); err != nil {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					vr.add(CheckRejected, objRef(ro.Obj), apiMessage(err), false)
				}
			}
		}
	}
	return nil
}

// apiMessage is the API server's own message of an apply error.
func apiMessage(err error) string {
	var se apierrors.APIStatus
	if errors.As(err, &se) {
		return se.Status().Message
	}
	return err.Error()
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
