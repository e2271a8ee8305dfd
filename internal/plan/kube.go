package plan

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/client-go/kubernetes"
)

// minor parses "v1.34.1" or "1.34" into (1, 34).
func minor(v string) (int, int, error) {
	parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
	if len(parts) < 2 {
		return 0, 0, fmt.Errorf("%q is not a version like v1.34.1", v)
	}
	a, err1 := strconv.Atoi(parts[0])
	b, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("%q is not a version like v1.34.1", v)
	}
	return a, b, nil
}

// deprecatedMetric is the apiserver's gauge of requested deprecated APIs
// (what `talosctl upgrade-k8s` checks before an upgrade).
const deprecatedMetric = "apiserver_requested_deprecated_apis"

// RemovedAPIsInUse reads the apiserver's metrics and returns the
// deprecated APIs that were requested and are removed in version to (or
// earlier).
func RemovedAPIsInUse(ctx context.Context, cs kubernetes.Interface, to string) ([]RemovedAPI, error) {
	body, err := cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the apiserver's metrics: %w", err)
	}
	return ParseRemovedAPIs(body, to)
}

// ParseRemovedAPIs filters apiserver_requested_deprecated_apis samples
// (Prometheus text format) for APIs removed in version to or earlier.
func ParseRemovedAPIs(metrics []byte, to string) ([]RemovedAPI, error) {
	ta, tb, err := minor(to)
	if err != nil {
		return nil, err
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(metrics))
	if err != nil {
		return nil, fmt.Errorf("parsing the apiserver's metrics: %w", err)
	}
	fam, ok := fams[deprecatedMetric]
	if !ok {
		return nil, nil
	}
	var out []RemovedAPI
	for _, m := range fam.GetMetric() {
		if m.GetGauge() != nil && m.GetGauge().GetValue() == 0 {
			continue
		}
		a := RemovedAPI{}
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "group":
				a.Group = l.GetValue()
			case "version":
				a.Version = l.GetValue()
			case "resource":
				a.Resource = l.GetValue()
			case "subresource":
				a.Subresource = l.GetValue()
			case "removed_release":
				a.RemovedRelease = l.GetValue()
			}
		}
		ra, rb, err := minor(a.RemovedRelease)
		if err != nil || ra > ta || (ra == ta && rb > tb) {
			continue
		}
		out = append(out, a)
	}
	slices.SortFunc(out, func(x, y RemovedAPI) int { return strings.Compare(x.String(), y.String()) })
	return out, nil
}
