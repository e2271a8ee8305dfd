package plan

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/hexops/gotextdiff"
	"github.com/hexops/gotextdiff/myers"
	"github.com/hexops/gotextdiff/span"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/platform"
	"github.com/dodai-dev/dodai/internal/platform/render"
	"github.com/dodai-dev/dodai/internal/platform/status"
)

// ErrPlatformNotInstalled means the cluster has no HelmRelease API: the
// platform was never installed (`dodai platform install`).
var ErrPlatformNotInstalled = fmt.Errorf("the platform is not installed (no HelmRelease API): run `dodai platform install`")

// PlatformChanges compares the HelmReleases the file renders with those in
// the cluster: new releases, chart version changes, values changes (a diff),
// and other changed spec fields. Fields the API server defaults are not
// differences: only what dodai sets is compared.
func PlatformChanges(ctx context.Context, dyn dynamic.Interface, p cluster.Platform) ([]*ReleaseChange, error) {
	g, err := platform.Resolve(p)
	if err != nil {
		return nil, err
	}
	hrs, err := render.HelmReleases(g)
	if err != nil {
		return nil, err
	}
	if _, err := dyn.Resource(status.HelmReleaseGVR).List(ctx, metav1.ListOptions{Limit: 1}); apierrors.IsNotFound(err) {
		return nil, ErrPlatformNotInstalled
	} else if err != nil {
		return nil, fmt.Errorf("listing HelmReleases: %w", err)
	}
	var out []*ReleaseChange
	for _, hr := range hrs {
		want, err := runtime.DefaultUnstructuredConverter.ToUnstructured(hr)
		if err != nil {
			return nil, fmt.Errorf("encoding HelmRelease %s/%s: %w", hr.Namespace, hr.Name, err)
		}
		rc := &ReleaseChange{Namespace: hr.Namespace, Name: hr.Name, Chart: hr.Spec.Chart.Spec.Chart, ToVersion: hr.Spec.Chart.Spec.Version}
		live, err := dyn.Resource(status.HelmReleaseGVR).Namespace(hr.Namespace).Get(ctx, hr.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			rc.Action = "install"
			out = append(out, rc)
			continue
		case err != nil:
			return nil, fmt.Errorf("reading HelmRelease %s/%s: %w", hr.Namespace, hr.Name, err)
		}
		liveSpec, _ := live.Object["spec"].(map[string]any)
		wantSpec, _ := want["spec"].(map[string]any)
		rc.Action = "upgrade"
		if chart, ok := nested(liveSpec, "chart", "spec", "version").(string); ok {
			rc.FromVersion = chart
		}
		diff, err := valuesDiff(liveSpec["values"], wantSpec["values"])
		if err != nil {
			return nil, fmt.Errorf("HelmRelease %s/%s: %w", hr.Namespace, hr.Name, err)
		}
		rc.ValuesDiff = diff
		for _, k := range slices.Sorted(maps.Keys(wantSpec)) {
			w := wantSpec[k]
			switch k {
			case "values":
				continue
			case "chart":
				// The version change is shown on its own.
				w = withVersion(w, rc.FromVersion)
			}
			if !subset(w, liveSpec[k]) {
				rc.Other = append(rc.Other, "spec."+k)
			}
		}
		if rc.FromVersion != rc.ToVersion || rc.ValuesDiff != "" || len(rc.Other) > 0 {
			out = append(out, rc)
		}
	}
	return out, nil
}

func nested(m map[string]any, path ...string) any {
	var v any = m
	for _, p := range path {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[p]
	}
	return v
}

// withVersion is a copy of a chart template with spec.version set.
func withVersion(chart any, version string) any {
	b, err := json.Marshal(chart)
	if err != nil {
		return chart
	}
	var c map[string]any
	if json.Unmarshal(b, &c) != nil {
		return chart
	}
	if s, ok := c["spec"].(map[string]any); ok {
		s["version"] = version
	}
	return c
}

// subset reports whether every field set in want has the same value in
// live (maps recursively; lists and scalars whole). JSON numbers compare
// by value.
func subset(want, live any) bool {
	switch w := want.(type) {
	case map[string]any:
		l, ok := live.(map[string]any)
		if !ok {
			return len(w) == 0 && live == nil
		}
		for k, v := range w {
			if !subset(v, l[k]) {
				return false
			}
		}
		return true
	case nil:
		return true
	default:
		wj, err1 := json.Marshal(want)
		lj, err2 := json.Marshal(live)
		if err1 != nil || err2 != nil {
			return reflect.DeepEqual(want, live)
		}
		var a, b any
		_ = json.Unmarshal(wj, &a)
		_ = json.Unmarshal(lj, &b)
		return reflect.DeepEqual(a, b)
	}
}

// valuesDiff is a unified diff of two values documents as YAML ("" when
// they are equal).
func valuesDiff(live, want any) (string, error) {
	ly, err := valuesYAML(live)
	if err != nil {
		return "", err
	}
	wy, err := valuesYAML(want)
	if err != nil {
		return "", err
	}
	if ly == wy {
		return "", nil
	}
	edits := myers.ComputeEdits(span.URIFromPath("values"), ly, wy)
	return fmt.Sprint(gotextdiff.ToUnified("running", "cluster.yaml", ly, edits)), nil
}

func valuesYAML(v any) (string, error) {
	if v == nil {
		return "", nil
	}
	b, err := yaml.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encoding values: %w", err)
	}
	if s := strings.TrimSpace(string(b)); s == "{}" || s == "null" {
		return "", nil
	}
	return string(b), nil
}
