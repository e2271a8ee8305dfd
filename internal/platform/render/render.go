// Package render turns a resolved platform graph into the Kubernetes
// objects Flux consumes, built with Flux's own Go API types: Namespaces
// with Pod Security labels, HelmRepository/GitRepository sources
// (source.toolkit.fluxcd.io/v1) and HelmReleases (helm.toolkit.fluxcd.io/v2),
// and writes them as multi-document YAML or a GitOps directory.
package render

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	helmv2 "github.com/fluxcd/helm-controller/api/v2"
	sourcev1 "github.com/fluxcd/source-controller/api/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/dodai-dev/dodai/internal/fsutil"
	"github.com/dodai-dev/dodai/internal/platform/graph"
)

// Labels and names dodai puts on what it renders.
const (
	// FluxNamespace holds Flux and the chart sources.
	FluxNamespace = "flux-system"
	// ManagedByLabel marks every rendered object.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedBy      = "dodai"
	// ComponentLabel names the catalog component of a HelmRelease.
	ComponentLabel = "platform.dodai.dev/component"
)

// Settings generated for every HelmRelease (see docs/platform.md for why).
var (
	Interval       = 5 * time.Minute
	SourceInterval = 30 * time.Minute
	Timeout        = 10 * time.Minute
	RetryInterval  = 30 * time.Second
	MaxHistory     = 5
)

// Objects renders the graph: Namespaces, then sources, then HelmReleases,
// each group sorted so the output is stable.
func Objects(g *graph.Graph) ([]*unstructured.Unstructured, error) {
	var typed []runtime.Object
	for _, ns := range Namespaces(g) {
		typed = append(typed, ns)
	}
	typed = append(typed, Sources(g)...)
	hrs, err := HelmReleases(g)
	if err != nil {
		return nil, err
	}
	for _, hr := range hrs {
		typed = append(typed, hr)
	}
	out := make([]*unstructured.Unstructured, 0, len(typed))
	for _, o := range typed {
		u, err := ToUnstructured(o)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, nil
}

// ToUnstructured converts a typed object, dropping empty status and the
// null creationTimestamp that typed objects always carry.
func ToUnstructured(o runtime.Object) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
	if err != nil {
		return nil, fmt.Errorf("converting %T: %w", o, err)
	}
	delete(m, "status")
	if md, ok := m["metadata"].(map[string]any); ok {
		delete(md, "creationTimestamp")
	}
	return &unstructured.Unstructured{Object: m}, nil
}

func labels(extra map[string]string) map[string]string {
	l := map[string]string{ManagedByLabel: ManagedBy}
	for k, v := range extra {
		l[k] = v
	}
	return l
}

// Namespaces returns one Namespace per release namespace, labelled for Pod
// Security: "privileged" when any release there is privileged, else
// "baseline".
func Namespaces(g *graph.Graph) []*corev1.Namespace {
	priv := map[string]bool{}
	for _, r := range g.Releases {
		for _, ns := range append([]string{r.Namespace}, r.Namespaces...) {
			priv[ns] = priv[ns] || r.Privileged
		}
	}
	names := make([]string, 0, len(priv))
	for n := range priv {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []*corev1.Namespace
	for _, n := range names {
		level := "baseline"
		if priv[n] {
			level = "privileged"
		}
		out = append(out, &corev1.Namespace{
			TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
			ObjectMeta: metav1.ObjectMeta{Name: n, Labels: labels(map[string]string{
				"pod-security.kubernetes.io/enforce": level,
				"pod-security.kubernetes.io/audit":   level,
				"pod-security.kubernetes.io/warn":    level,
			})},
		})
	}
	return out
}

// Sources returns the Flux sources the releases read from, in flux-system:
// one HelmRepository per Helm repository or OCI prefix, and a GitRepository
// for dodai's own charts.
func Sources(g *graph.Graph) []runtime.Object {
	seen := map[string]bool{}
	var names []string
	byName := map[string]graph.Source{}
	for _, r := range g.Releases {
		if !seen[r.Source.RepoName] {
			seen[r.Source.RepoName] = true
			names = append(names, r.Source.RepoName)
			byName[r.Source.RepoName] = r.Source
		}
	}
	sort.Strings(names)
	var out []runtime.Object
	for _, n := range names {
		s := byName[n]
		meta := metav1.ObjectMeta{Name: n, Namespace: FluxNamespace, Labels: labels(nil)}
		switch s.Kind {
		case graph.SourceGit:
			out = append(out, &sourcev1.GitRepository{
				TypeMeta:   metav1.TypeMeta{APIVersion: sourcev1.GroupVersion.String(), Kind: sourcev1.GitRepositoryKind},
				ObjectMeta: meta,
				Spec: sourcev1.GitRepositorySpec{
					URL:       s.URL,
					Reference: &sourcev1.GitRepositoryRef{Branch: s.GitRef},
					Interval:  metav1.Duration{Duration: SourceInterval},
					Ignore:    ptr("/*\n!/charts/\n"),
				},
			})
		default:
			spec := sourcev1.HelmRepositorySpec{URL: s.URL, Interval: metav1.Duration{Duration: SourceInterval}}
			if s.Kind == graph.SourceOCI {
				spec.Type = sourcev1.HelmRepositoryTypeOCI
			}
			out = append(out, &sourcev1.HelmRepository{
				TypeMeta:   metav1.TypeMeta{APIVersion: sourcev1.GroupVersion.String(), Kind: sourcev1.HelmRepositoryKind},
				ObjectMeta: meta,
				Spec:       spec,
			})
		}
	}
	return out
}

func ptr[T any](v T) *T { return &v }

// HelmReleases returns one HelmRelease per release, in its namespace.
func HelmReleases(g *graph.Graph) ([]*helmv2.HelmRelease, error) {
	var out []*helmv2.HelmRelease
	for _, r := range g.Releases {
		hr, err := HelmRelease(g, r)
		if err != nil {
			return nil, err
		}
		out = append(out, hr)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// HelmRelease builds the HelmRelease of one release: interval 5m, install
// and upgrade strategy RetryOnFailure (never uninstall remediation: it tears
// down CNIs and deletes data), CRDs CreateReplace, timeouts 10m,
// maxHistory 5, dependsOn with explicit namespaces.
func HelmRelease(g *graph.Graph, r graph.Release) (*helmv2.HelmRelease, error) {
	kind := sourcev1.HelmRepositoryKind
	strategy := ""
	if r.Source.Kind == graph.SourceGit {
		kind = sourcev1.GitRepositoryKind
		// dodai's charts keep one version; upgrade on every content change.
		strategy = sourcev1.ReconcileStrategyRevision
	}
	timeout := &metav1.Duration{Duration: Timeout}
	retry := &metav1.Duration{Duration: RetryInterval}
	hr := &helmv2.HelmRelease{
		TypeMeta: metav1.TypeMeta{APIVersion: helmv2.GroupVersion.String(), Kind: helmv2.HelmReleaseKind},
		ObjectMeta: metav1.ObjectMeta{Name: r.Name, Namespace: r.Namespace,
			Labels: labels(map[string]string{ComponentLabel: r.Name})},
		Spec: helmv2.HelmReleaseSpec{
			Interval:    metav1.Duration{Duration: Interval},
			ReleaseName: r.ReleaseName,
			Chart: &helmv2.HelmChartTemplate{Spec: helmv2.HelmChartTemplateSpec{
				Chart:             r.Source.Chart,
				Version:           r.Source.Version,
				ReconcileStrategy: strategy,
				SourceRef:         helmv2.CrossNamespaceObjectReference{Kind: kind, Name: r.Source.RepoName, Namespace: FluxNamespace},
			}},
			Timeout:    timeout,
			MaxHistory: ptr(MaxHistory),
			Install: &helmv2.Install{
				Timeout:  timeout,
				Strategy: &helmv2.InstallStrategy{Name: string(helmv2.ActionStrategyRetryOnFailure), RetryInterval: retry},
				CRDs:     helmv2.CreateReplace,
			},
			Upgrade: &helmv2.Upgrade{
				Timeout:  timeout,
				Strategy: &helmv2.UpgradeStrategy{Name: string(helmv2.ActionStrategyRetryOnFailure), RetryInterval: retry},
				CRDs:     helmv2.CreateReplace,
			},
		},
	}
	for _, d := range r.DependsOn {
		dep, ok := g.Release(d)
		if !ok {
			return nil, fmt.Errorf("release %s depends on %s, which is not in the graph", r.Name, d)
		}
		hr.Spec.DependsOn = append(hr.Spec.DependsOn, helmv2.DependencyReference{Name: dep.Name, Namespace: dep.Namespace})
	}
	if len(r.Values) > 0 {
		raw, err := json.Marshal(r.Values)
		if err != nil {
			return nil, fmt.Errorf("encoding values of %s: %w", r.Name, err)
		}
		hr.Spec.Values = &apiextensionsv1.JSON{Raw: raw}
	}
	return hr, nil
}

// YAML writes objects as one multi-document YAML stream.
func YAML(objs []*unstructured.Unstructured) ([]byte, error) {
	var b bytes.Buffer
	for i, o := range objs {
		y, err := yaml.Marshal(o.Object)
		if err != nil {
			return nil, fmt.Errorf("encoding %s %s: %w", o.GetKind(), o.GetName(), err)
		}
		if i > 0 {
			b.WriteString("---\n")
		}
		b.Write(y)
	}
	return b.Bytes(), nil
}

// WriteDir writes a GitOps directory for `flux bootstrap` users:
// namespaces.yaml, sources.yaml, one file per HelmRelease under releases/,
// and a kustomization.yaml listing them. Files are written atomically;
// re-running rewrites them and removes release files no longer rendered.
func WriteDir(dir string, objs []*unstructured.Unstructured) ([]string, error) {
	groups := map[string][]*unstructured.Unstructured{}
	var order []string
	for _, o := range objs {
		var f string
		switch o.GetKind() {
		case "Namespace":
			f = "namespaces.yaml"
		case helmv2.HelmReleaseKind:
			f = filepath.Join("releases", o.GetNamespace()+"-"+o.GetName()+".yaml")
		default:
			f = "sources.yaml"
		}
		if _, ok := groups[f]; !ok {
			order = append(order, f)
		}
		groups[f] = append(groups[f], o)
	}
	if err := os.MkdirAll(filepath.Join(dir, "releases"), 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	keep := map[string]bool{}
	for _, f := range order {
		b, err := YAML(groups[f])
		if err != nil {
			return nil, err
		}
		if err := fsutil.WriteFileAtomic(filepath.Join(dir, f), b, 0o644); err != nil {
			return nil, fmt.Errorf("writing %s: %w", f, err)
		}
		keep[f] = true
	}
	old, _ := filepath.Glob(filepath.Join(dir, "releases", "*.yaml"))
	for _, p := range old {
		rel, _ := filepath.Rel(dir, p)
		if keep[rel] || !writtenByDodai(p) {
			continue // a file of the user's own stays
		}
		{
			if err := os.Remove(p); err != nil {
				return nil, fmt.Errorf("removing stale %s: %w", rel, err)
			}
		}
	}
	kust := map[string]any{
		"apiVersion": "kustomize.config.k8s.io/v1beta1",
		"kind":       "Kustomization",
		"resources":  order,
	}
	kb, err := yaml.Marshal(kust)
	if err != nil {
		return nil, err
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, "kustomization.yaml"), kb, 0o644); err != nil {
		return nil, fmt.Errorf("writing kustomization.yaml: %w", err)
	}
	return append(order, "kustomization.yaml"), nil
}

// writtenByDodai reports whether a release file was rendered by dodai (its
// objects carry app.kubernetes.io/managed-by: dodai), so that stale ones can
// be removed without touching files the user added to the directory.
func writtenByDodai(path string) bool {
	b, err := os.ReadFile(path)
	return err == nil && bytes.Contains(b, []byte("app.kubernetes.io/managed-by: dodai"))
}
