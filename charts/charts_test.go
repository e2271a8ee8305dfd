package charts

import (
	"io/fs"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"sigs.k8s.io/yaml"
)

// Every dodai chart loads and renders with its default values into valid
// objects of the expected kinds (and the Let's Encrypt issuers appear only
// when an email is set).
func TestChartsRender(t *testing.T) {
	want := map[string][]string{
		"cert-manager-issuers": {"ClusterIssuer", "Certificate", "ClusterIssuer"},
		"kubevirt":             nil, // objects: [] by default
		"kubevirt-cdi":         nil,
		"linstor":              {"LinstorCluster", "Secret", "LinstorSatelliteConfiguration", "StorageClass"},
		"capi-providers":       {"CoreProvider", "BootstrapProvider", "ControlPlaneProvider", "InfrastructureProvider"},
		"monitoring":           {"VMSingle", "VMAgent"},
	}
	for name, kinds := range want {
		t.Run(name, func(t *testing.T) {
			got := renderKinds(t, name, nil)
			if strings.Join(got, ",") != strings.Join(kinds, ",") {
				t.Errorf("kinds %v, want %v", got, kinds)
			}
		})
	}
	got := renderKinds(t, "cert-manager-issuers", map[string]any{"letsencrypt": map[string]any{"email": "ops@example.com"}})
	if len(got) != 5 {
		t.Errorf("with email: %v", got)
	}
	obj := map[string]any{"apiVersion": "instancetype.kubevirt.io/v1beta1", "kind": "VirtualMachineClusterInstancetype",
		"metadata": map[string]any{"name": "small"}, "spec": map[string]any{"cpu": map[string]any{"guest": 1}}}
	for _, c := range []string{"kubevirt", "kubevirt-cdi"} {
		if got := renderKinds(t, c, map[string]any{"objects": []any{obj, obj}}); strings.Join(got, ",") != "VirtualMachineClusterInstancetype,VirtualMachineClusterInstancetype" {
			t.Errorf("%s with objects: %v", c, got)
		}
	}
	if got := renderKinds(t, "linstor", map[string]any{"storageClass": map[string]any{"default": false}}); len(got) != 4 {
		t.Errorf("linstor without a default class: %v", got)
	}
}

func renderKinds(t *testing.T, name string, vals map[string]any) []string {
	t.Helper()
	var files []*loader.BufferedFile
	err := fs.WalkDir(FS, name, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := FS.ReadFile(p)
		files = append(files, &loader.BufferedFile{Name: strings.TrimPrefix(p, name+"/"), Data: b})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := loader.LoadFiles(files)
	if err != nil {
		t.Fatal(err)
	}
	if ch.Metadata.Version != "0.1.0" {
		t.Errorf("version %s", ch.Metadata.Version)
	}
	rv, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{Name: name, Namespace: "ns-" + name, IsInstall: true}, chartutil.DefaultCapabilities)
	if err != nil {
		t.Fatal(err)
	}
	out, err := engine.Render(ch, rv)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	var names []string
	for n := range out {
		names = append(names, n)
	}
	for _, n := range names {
		for _, doc := range strings.Split(out[n], "\n---") {
			var m map[string]any
			if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
				t.Fatalf("%s: %v\n%s", n, err, doc)
			}
			if len(m) == 0 {
				continue
			}
			kinds = append(kinds, m["kind"].(string))
		}
	}
	return kinds
}
