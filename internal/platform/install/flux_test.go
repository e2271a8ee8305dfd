package install

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

func deployment(t *testing.T, objs []*unstructured.Unstructured, name string) *appsv1.Deployment {
	t.Helper()
	for _, u := range objs {
		if u.GetKind() == "Deployment" && u.GetName() == name {
			var d appsv1.Deployment
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &d); err != nil {
				t.Fatal(err)
			}
			return &d
		}
	}
	return nil
}

func TestPatchFlux(t *testing.T) {
	raw, err := LoadFluxManifests(t.Context(), "testdata/flux-install.yaml")
	if err != nil {
		t.Fatal(err)
	}
	before := raw[2].DeepCopy()
	o := FluxOptions{RequeueDependency: 5 * time.Second, Concurrent: 20}
	out, err := PatchFlux(raw, o)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(before.Object, raw[2].Object) {
		t.Error("PatchFlux modified its input")
	}
	if p := CheckFlux(out, o); len(p) > 0 {
		t.Errorf("problems:\n%s", strings.Join(p, "\n"))
	}
	if len(out) != 4 || deployment(t, out, "kustomize-controller") != nil {
		t.Errorf("kustomize-controller should be dropped, got %d objects", len(out))
	}
	sc := deployment(t, out, "source-controller").Spec.Template.Spec.Containers[0]
	if !reflect.DeepEqual(sc.Args[len(sc.Args)-2:], []string{"--storage-addr=:9790", "--storage-adv-addr=$(HOST_IP):9790"}) {
		t.Errorf("source-controller storage args %v", sc.Args)
	}
	if sc.Env[0].Name != "HOST_IP" || sc.Env[0].ValueFrom.FieldRef.FieldPath != "status.hostIP" {
		t.Errorf("HOST_IP must be defined before use: %v", sc.Env)
	}
	hc := deployment(t, out, "helm-controller")
	if hc.Spec.Template.Spec.Tolerations[0].Key != "existing" {
		t.Error("existing tolerations lost")
	}
	if a := strings.Join(hc.Spec.Template.Spec.Containers[0].Args, " "); strings.Contains(a, " 4") || strings.Contains(a, "30s") {
		t.Errorf("old flag values kept: %s", a)
	}
	// Bad input.
	if _, err := PatchFlux(raw[:2], o); err == nil || !strings.Contains(err.Error(), `no Deployment "`) {
		t.Errorf("missing controllers: %v", err)
	}
}

func TestDecodeYAMLErrors(t *testing.T) {
	for name, doc := range map[string]string{
		"not yaml":   "a: [",
		"no kind":    "apiVersion: v1\nmetadata: {name: x}\n",
		"no name":    "apiVersion: v1\nkind: ConfigMap\n",
		"list":       "apiVersion: v1\nkind: List\nmetadata: {name: x}\nitems: []\n",
		"not a map":  "- 1\n- 2\n",
		"second bad": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n---\nkind: ConfigMap\n",
	} {
		_, err := DecodeYAML([]byte(doc), "in.yaml")
		if err == nil || !strings.Contains(err.Error(), "in.yaml") {
			t.Errorf("%s: error %v should name the file", name, err)
		}
	}
	objs, err := DecodeYAML([]byte("---\n\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"), "ok")
	if err != nil || len(objs) != 1 {
		t.Errorf("empty documents: %v %d", err, len(objs))
	}
	if _, err := LoadFluxManifests(t.Context(), "testdata/nope.yaml"); err == nil || !strings.Contains(err.Error(), "nope.yaml") {
		t.Errorf("missing file: %v", err)
	}
}

func FuzzDecodeYAML(f *testing.F) {
	f.Add([]byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"))
	f.Add([]byte("---\n---\n"))
	f.Add([]byte("{\"apiVersion\":\"v1\",\"kind\":\"A\",\"metadata\":{\"name\":\"b\"}}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		objs, err := DecodeYAML(b, "fuzz")
		if err != nil {
			return
		}
		for _, o := range objs {
			if o.GetKind() == "" || o.GetName() == "" {
				t.Fatalf("accepted object without kind/name: %v", o.Object)
			}
		}
		_, _ = PatchFlux(objs, FluxOptions{})
	})
}

func TestOriginLabelsPostRenderer(t *testing.T) {
	in := bytes.NewBufferString("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  labels: {keep: me}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: b}\n")
	out, err := originLabels{labels: map[string]string{"helm.toolkit.fluxcd.io/name": "cilium"}}.Run(in)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := DecodeYAML(out.Bytes(), "out")
	if err != nil || len(objs) != 2 {
		t.Fatalf("%v %d", err, len(objs))
	}
	if l := objs[0].GetLabels(); l["keep"] != "me" || l["helm.toolkit.fluxcd.io/name"] != "cilium" {
		t.Errorf("labels %v", l)
	}
	if objs[1].GetLabels()["helm.toolkit.fluxcd.io/name"] != "cilium" {
		t.Errorf("labels %v", objs[1].GetLabels())
	}
	if _, err := (originLabels{}).Run(bytes.NewBufferString("a: [")); err == nil {
		t.Error("bad manifest accepted")
	}
}

func TestInventoryObjectIsStable(t *testing.T) {
	a := []Ref{{Version: "v1", Kind: "Namespace", Name: "b"}, {Group: "helm.toolkit.fluxcd.io", Version: "v2", Kind: "HelmRelease", Namespace: "n", Name: "a"}}
	b := []Ref{a[1], a[0]}
	x, _ := InventoryObject("flux-system", a)
	y, _ := InventoryObject("flux-system", b)
	if !reflect.DeepEqual(x.Object, y.Object) {
		t.Error("inventory depends on order")
	}
	if a[1].String() != "HelmRelease.helm.toolkit.fluxcd.io n/a" || a[0].String() != "Namespace b" {
		t.Errorf("ref strings %q %q", a[1], a[0])
	}
}

// TestLoadFluxManifestsFromURL serves install.yaml from loopback, as a
// mirror would, and checks the failure messages of a download.
func TestLoadFluxManifestsFromURL(t *testing.T) {
	body, err := os.ReadFile("testdata/flux-install.yaml")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/v2.7.3/install.yaml", func(w http.ResponseWriter, _ *http.Request) { w.Write(body) })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	fromURL, err := LoadFluxManifests(t.Context(), srv.URL+"/v2.7.3/install.yaml")
	if err != nil {
		t.Fatal(err)
	}
	fromFile, err := LoadFluxManifests(t.Context(), "testdata/flux-install.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(fromURL) != len(fromFile) || len(fromURL) == 0 {
		t.Fatalf("URL gave %d objects, file %d", len(fromURL), len(fromFile))
	}
	if _, err := LoadFluxManifests(t.Context(), srv.URL+"/v9.9.9/install.yaml"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("missing release: %v", err)
	}
	srv.Close()
	if _, err := LoadFluxManifests(t.Context(), srv.URL+"/v2.7.3/install.yaml"); err == nil || !strings.Contains(err.Error(), "air-gapped?") {
		t.Fatalf("unreachable: %v", err)
	}
	if got := FluxReleaseURL("v2.7.3"); got != "https://github.com/fluxcd/flux2/releases/download/v2.7.3/install.yaml" {
		t.Fatalf("release URL %s", got)
	}
}
