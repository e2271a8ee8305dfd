package platform

import (
	"strings"
	"testing"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/platform/install"
)

func TestFluxManifests(t *testing.T) {
	for _, tc := range []struct {
		name, flag string
		s          *cluster.FluxSettings
		want       string
	}{
		{"default release asset", "", nil, install.FluxReleaseURL(install.FluxVersion)},
		{"pinned version", "", &cluster.FluxSettings{Version: "v2.8.0"}, install.FluxReleaseURL("v2.8.0")},
		{"relative to the cluster dir", "", &cluster.FluxSettings{Manifests: "flux/install.yaml"}, "/c/flux/install.yaml"},
		{"absolute", "", &cluster.FluxSettings{Manifests: "/srv/flux.yaml"}, "/srv/flux.yaml"},
		{"URL", "", &cluster.FluxSettings{Manifests: "https://mirror.internal/flux/install.yaml"}, "https://mirror.internal/flux/install.yaml"},
		{"flag wins", "./mine.yaml", &cluster.FluxSettings{Manifests: "x.yaml", Version: "v2.8.0"}, "./mine.yaml"},
	} {
		if got := FluxManifests(tc.flag, tc.s, "/c"); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestValidateLocatesProblems(t *testing.T) {
	raw := []byte(`apiVersion: dodai.dev/v1alpha1
kind: Cluster
metadata: {name: demo}
spec:
  platform:
    components:
      cert-manager: {enabled: false}
      nope: {}
`)
	src, probs := cluster.Parse("cluster.yaml", raw)
	if src == nil {
		t.Fatalf("parse: %v", probs)
	}
	got := Validate(src)
	var text []string
	for _, p := range got {
		text = append(text, p.String())
	}
	all := strings.Join(text, "\n")
	for _, want := range []string{
		`cluster.yaml:8:13: spec.platform.components.nope: unknown component`,
		`spec.platform.components.kamaji: depends on "cert-manager", which spec.platform.components.cert-manager.enabled disables`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("problems lack %q:\n%s", want, all)
		}
	}
	if len(got.Errors()) != len(got) {
		t.Errorf("all platform problems are errors: %s", all)
	}
}
