package verify

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/releaseutil"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"
)

// Rendered is one object a release would create.
type Rendered struct {
	Obj *unstructured.Unstructured
	// Source is the template file (or crds/ file) it came from.
	Source string
	// CRD: from a chart's crds/ directory (Helm installs those first).
	CRD bool
	// Hook names the Helm hook events when it is a hook (tests are left out).
	Hook string
}

// Render renders a chart the way Helm installs it: dependencies and their
// conditions processed, values merged over the chart's defaults and checked
// against its schema, crds/ files, templates and non-test hooks. With cfg,
// templates that call `lookup` read the live cluster (as Helm's
// --dry-run=server does); without, lookup finds nothing.
func Render(ch *chart.Chart, releaseName, namespace string, values map[string]any, caps *chartutil.Capabilities, cfg *rest.Config) ([]Rendered, error) {
	if values == nil {
		values = map[string]any{}
	}
	if err := chartutil.ProcessDependenciesWithMerge(ch, values); err != nil {
		return nil, fmt.Errorf("processing dependencies: %w", err)
	}
	rv, err := chartutil.ToRenderValues(ch, values, chartutil.ReleaseOptions{Name: releaseName, Namespace: namespace, Revision: 1, IsInstall: true}, caps)
	if err != nil {
		return nil, err
	}
	var files map[string]string
	if cfg != nil {
		files, err = engine.RenderWithClient(ch, rv, cfg)
	} else {
		files, err = engine.Render(ch, rv)
	}
	if err != nil {
		return nil, err
	}
	for n := range files {
		if strings.HasSuffix(n, "NOTES.txt") {
			delete(files, n)
		}
	}
	hooks, manifests, err := releaseutil.SortManifests(files, caps.APIVersions, releaseutil.InstallOrder)
	if err != nil {
		return nil, err
	}
	var out []Rendered
	for _, c := range ch.CRDObjects() {
		objs, err := decode(c.File.Data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.Filename, err)
		}
		for _, o := range objs {
			out = append(out, Rendered{Obj: o, Source: c.Filename, CRD: true})
		}
	}
	for _, m := range manifests {
		objs, err := decode([]byte(m.Content))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.Name, err)
		}
		for _, o := range objs {
			out = append(out, Rendered{Obj: o, Source: m.Name})
		}
	}
	for _, h := range hooks {
		if isTest(h) {
			continue
		}
		objs, err := decode([]byte(h.Manifest))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", h.Path, err)
		}
		var ev []string
		for _, e := range h.Events {
			ev = append(ev, string(e))
		}
		for _, o := range objs {
			out = append(out, Rendered{Obj: o, Source: h.Path, Hook: strings.Join(ev, ",")})
		}
	}
	return out, nil
}

func isTest(h *release.Hook) bool {
	for _, e := range h.Events {
		if e == release.HookTest {
			return true
		}
	}
	return false
}

// decode splits a YAML stream into objects (empty documents skipped).
func decode(b []byte) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	docs := releaseutil.SplitManifests(string(b))
	keys := make([]string, 0, len(docs))
	for k := range docs {
		keys = append(keys, k)
	}
	sort.Sort(releaseutil.BySplitManifestsOrder(keys))
	for _, k := range keys {
		doc := docs[k]
		var m map[string]any
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			return nil, fmt.Errorf("invalid YAML: %w", err)
		}
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if u.GetKind() == "" || u.GetAPIVersion() == "" {
			return nil, fmt.Errorf("an object without apiVersion or kind: %.80q", doc)
		}
		if u.IsList() {
			l, err := u.ToList()
			if err != nil {
				return nil, err
			}
			for i := range l.Items {
				out = append(out, &l.Items[i])
			}
			continue
		}
		out = append(out, u)
	}
	return out, nil
}

// packageChart writes ch as a Helm archive and returns its bytes.
func packageChart(ch *chart.Chart) ([]byte, error) {
	dir, err := os.MkdirTemp("", "dodai-chart-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	p, err := chartutil.Save(ch, dir)
	if err != nil {
		return nil, fmt.Errorf("packaging %s: %w", ch.Name(), err)
	}
	return os.ReadFile(filepath.Clean(p))
}
