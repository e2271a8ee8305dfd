package render

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	helmv2 "github.com/fluxcd/helm-controller/api/v2"
	"sigs.k8s.io/yaml"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/platform/catalog"
	"github.com/dodai-dev/dodai/internal/platform/graph"

	"github.com/dodai-dev/dodai/internal/testutil"
)

func resolve(t *testing.T, p cluster.Platform) *graph.Graph {
	t.Helper()
	cat, err := catalog.Load()
	if err != nil {
		t.Fatal(err)
	}
	g, err := graph.Resolve(cat, p)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// Golden files for the three bundles: go test ./internal/platform/render -update
func TestGoldenBundles(t *testing.T) {
	for _, b := range []string{"full", "distro", "hosted"} {
		t.Run(b, func(t *testing.T) {
			objs, err := Objects(resolve(t, cluster.Platform{Bundle: b}))
			if err != nil {
				t.Fatal(err)
			}
			got, err := YAML(objs)
			if err != nil {
				t.Fatal(err)
			}
			testutil.Golden(t, filepath.Join("testdata", b+".yaml"), got)
		})
	}
}

// The generated HelmRelease shape, checked field by field on the decoded
// typed object (independent of the golden files).
func TestHelmReleaseShape(t *testing.T) {
	g := resolve(t, cluster.Platform{Components: map[string]cluster.ComponentOverride{
		"cilium": {Values: map[string]any{"ipam": map[string]any{"mode": "cluster-pool"}, "extra": 1}},
	}})
	hrs, err := HelmReleases(g)
	if err != nil {
		t.Fatal(err)
	}
	if len(hrs) != 24 {
		t.Fatalf("%d HelmReleases", len(hrs))
	}
	var linstor, cilium, tel *helmv2.HelmRelease
	for _, hr := range hrs {
		switch hr.Name {
		case "linstor":
			linstor = hr
		case "cilium":
			cilium = hr
		case "telepresence":
			tel = hr
		}
		s := hr.Spec
		if s.Interval.Duration.String() != "5m0s" || *s.MaxHistory != 5 || s.Timeout.Duration.String() != "10m0s" {
			t.Errorf("%s: interval %v maxHistory %d timeout %v", hr.Name, s.Interval, *s.MaxHistory, s.Timeout)
		}
		if s.Install.Strategy.Name != "RetryOnFailure" || s.Upgrade.Strategy.Name != "RetryOnFailure" {
			t.Errorf("%s: strategies %v %v", hr.Name, s.Install.Strategy, s.Upgrade.Strategy)
		}
		if s.Install.Remediation != nil || s.Upgrade.Remediation != nil {
			t.Errorf("%s: remediation must not be set (uninstall remediation destroys CNIs and data)", hr.Name)
		}
		if s.Install.CRDs != helmv2.CreateReplace || s.Upgrade.CRDs != helmv2.CreateReplace {
			t.Errorf("%s: crds %s/%s", hr.Name, s.Install.CRDs, s.Upgrade.CRDs)
		}
		for _, d := range s.DependsOn {
			if d.Namespace == "" {
				t.Errorf("%s: dependency %s without namespace", hr.Name, d.Name)
			}
		}
	}
	want := []helmv2.DependencyReference{{Name: "piraeus-operator", Namespace: "cozy-linstor"}, {Name: "cilium", Namespace: "cozy-cilium"},
		{Name: "kubeovn", Namespace: "cozy-kubeovn"}, {Name: "cert-manager", Namespace: "cozy-cert-manager"}}
	if len(linstor.Spec.DependsOn) != len(want) {
		t.Fatalf("linstor deps %v", linstor.Spec.DependsOn)
	}
	for i := range want {
		if linstor.Spec.DependsOn[i] != want[i] {
			t.Errorf("linstor dep %d = %v, want %v", i, linstor.Spec.DependsOn[i], want[i])
		}
	}
	if c := linstor.Spec.Chart.Spec; c.SourceRef.Kind != "GitRepository" || c.Chart != "./charts/linstor" || c.ReconcileStrategy != "Revision" {
		t.Errorf("linstor chart %+v", c)
	}
	if tel.Spec.ReleaseName != "traffic-manager" {
		t.Errorf("telepresence release name %q", tel.Spec.ReleaseName)
	}
	var vals map[string]any
	if err := yaml.Unmarshal(cilium.Spec.Values.Raw, &vals); err != nil {
		t.Fatal(err)
	}
	if vals["ipam"].(map[string]any)["mode"] != "cluster-pool" || vals["extra"] != float64(1) || vals["k8sServicePort"] != float64(7445) {
		t.Errorf("cilium values not merged: %v", vals)
	}
}

func TestNamespacesAndSources(t *testing.T) {
	g := resolve(t, cluster.Platform{})
	nss := Namespaces(g)
	levels := map[string]string{}
	for _, ns := range nss {
		levels[ns.Name] = ns.Labels["pod-security.kubernetes.io/enforce"]
	}
	// kubevirt-operator is not privileged itself, but kubevirt in the same
	// namespace is, so the namespace is (reference: "(ns)").
	for n, want := range map[string]string{"cozy-cilium": "privileged", "cozy-kubevirt": "privileged", "cozy-linstor": "privileged",
		"cozy-dashboard": "baseline", "cozy-cert-manager": "baseline"} {
		if levels[n] != want {
			t.Errorf("%s: %q, want %q", n, levels[n], want)
		}
	}
	// 19 release namespaces plus kubevirt and cdi, which the community
	// KubeVirt and CDI charts write into whatever the release namespace is.
	if len(nss) != 21 || levels["kubevirt"] != "privileged" || levels["cdi"] != "baseline" {
		t.Errorf("%d namespaces (want 21), kubevirt %q, cdi %q", len(nss), levels["kubevirt"], levels["cdi"])
	}
	kinds := map[string]int{}
	for _, s := range Sources(g) {
		u, _ := ToUnstructured(s)
		kinds[u.GetKind()]++
		if u.GetKind() == "HelmRepository" && strings.HasPrefix(u.Object["spec"].(map[string]any)["url"].(string), "oci://") {
			if u.Object["spec"].(map[string]any)["type"] != "oci" {
				t.Errorf("%s: oci URL without type oci", u.GetName())
			}
		}
	}
	if kinds["GitRepository"] != 1 || kinds["HelmRepository"] != 17 {
		t.Errorf("sources %v", kinds)
	}
}

func TestWriteDir(t *testing.T) {
	dir := t.TempDir()
	objs, err := Objects(resolve(t, cluster.Platform{Bundle: "full"}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := WriteDir(dir, objs); err != nil {
		t.Fatal(err)
	}
	// A file of the user's own in releases/ must survive re-rendering.
	mine := filepath.Join(dir, "releases", "my-app.yaml")
	if err := os.WriteFile(mine, []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: mine}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Re-render with a smaller bundle: stale release files go away.
	objs, _ = Objects(resolve(t, cluster.Platform{Bundle: "hosted"}))
	files, err := WriteDir(dir, objs)
	if err != nil {
		t.Fatal(err)
	}
	rel, _ := filepath.Glob(filepath.Join(dir, "releases", "*.yaml"))
	if len(rel) != 13+1 {
		t.Errorf("%d release files, want 13 rendered + the user's", len(rel))
	}
	if _, err := os.Stat(mine); err != nil {
		t.Errorf("the user's file was removed: %v", err)
	}
	var k struct {
		Kind      string   `json:"kind"`
		Resources []string `json:"resources"`
	}
	b, _ := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err := yaml.Unmarshal(b, &k); err != nil {
		t.Fatal(err)
	}
	if k.Kind != "Kustomization" || len(k.Resources) != 15 || len(files) != 16 {
		t.Errorf("kustomization %+v, files %v", k, files)
	}
	for _, r := range k.Resources {
		if _, err := os.Stat(filepath.Join(dir, r)); err != nil {
			t.Errorf("listed resource missing: %v", err)
		}
	}
}
