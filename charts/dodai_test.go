package charts

import (
	"context"
	"fmt"
	"io/fs"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/dodai-dev/dodai/internal/testutil"
	"github.com/dodai-dev/dodai/test/kubetest"
)

// loadDodai loads charts/dodai from the embedded file system.
func loadDodai(t *testing.T) *chart.Chart {
	t.Helper()
	var files []*loader.BufferedFile
	err := fs.WalkDir(FS, "dodai", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := FS.ReadFile(p)
		files = append(files, &loader.BufferedFile{Name: strings.TrimPrefix(p, "dodai/"), Data: b})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := loader.LoadFiles(files)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// renderDodai renders the chart's templates (Helm SDK engine) into objects.
func renderDodai(t *testing.T, ch *chart.Chart, ns string, vals map[string]any) []*unstructured.Unstructured {
	t.Helper()
	rv, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{Name: "dodai", Namespace: ns, IsInstall: true}, chartutil.DefaultCapabilities)
	if err != nil {
		t.Fatal(err)
	}
	out, err := engine.Render(ch, rv)
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(out))
	for n := range out {
		names = append(names, n)
	}
	sort.Strings(names)
	var objs []*unstructured.Unstructured
	for _, n := range names {
		for _, doc := range strings.Split(out[n], "\n---") {
			var m map[string]any
			if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
				t.Fatalf("%s: %v\n%s", n, err, doc)
			}
			if len(m) > 0 {
				objs = append(objs, &unstructured.Unstructured{Object: m})
			}
		}
	}
	return objs
}

func kindsOf(objs []*unstructured.Unstructured) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.GetKind()+"/"+o.GetName())
	}
	sort.Strings(out)
	return out
}

// The chart renders the netboot DaemonSet (host network, on labelled
// nodes), the controller Deployment and per-part RBAC; each part can be
// turned off.
func TestDodaiChartRenders(t *testing.T) {
	ch := loadDodai(t)
	if len(ch.CRDObjects()) != 2 {
		t.Errorf("CRDs in crds/: %d, want 2", len(ch.CRDObjects()))
	}
	// The netboot part is on by default (it runs only on labelled nodes).
	if got := kindsOf(renderDodai(t, ch, "dodai-system", nil)); !slices.Contains(got, "DaemonSet/dodai-netboot") {
		t.Errorf("netboot is off by default: %v", got)
	}
	objs := renderDodai(t, ch, "dodai-system", map[string]any{"netboot": map[string]any{"enabled": true, "interface": "eno2", "mode": "dhcp"}})
	want := []string{
		"ClusterRole/dodai-system-dodai-controller", "ClusterRoleBinding/dodai-system-dodai-controller",
		"DaemonSet/dodai-netboot", "Deployment/dodai-controller",
		"Role/dodai-controller", "Role/dodai-netboot", "RoleBinding/dodai-controller", "RoleBinding/dodai-netboot",
		"ServiceAccount/dodai-controller", "ServiceAccount/dodai-netboot",
	}
	if got := kindsOf(objs); !slices.Equal(got, want) {
		t.Errorf("objects:\n%v\nwant\n%v", got, want)
	}
	for _, o := range objs {
		if o.GetKind() != "DaemonSet" {
			continue
		}
		spec, _, _ := unstructured.NestedMap(o.Object, "spec", "template", "spec")
		if spec["hostNetwork"] != true {
			t.Error("netboot does not use the host network")
		}
		if sel, _, _ := unstructured.NestedStringMap(spec, "nodeSelector"); sel["dodai.dev/netboot"] != "true" {
			t.Errorf("node selector %v", sel)
		}
		args := fmt.Sprint(spec["containers"])
		for _, a := range []string{"--in-cluster", "--interface=eno2", "--mode=dhcp", "--cluster-dir=/etc/dodai"} {
			if !strings.Contains(args, a) {
				t.Errorf("netboot args lack %s: %s", a, args)
			}
		}
	}
	off := renderDodai(t, ch, "x", map[string]any{"netboot": map[string]any{"enabled": false}, "controller": map[string]any{"enabled": false}})
	if len(off) != 0 {
		t.Errorf("both parts off still renders %v", kindsOf(off))
	}
}

// The rendered chart (CRDs applied, every object server-side dry-run
// applied) is accepted by a real kube-apiserver: schemas, RBAC rules and
// pod specs are valid for Kubernetes 1.34.
func TestDodaiChartServerDryRun(t *testing.T) {
	testutil.Slow(t, "needs the test Kubernetes")
	env := kubetest.StartT(t, kubetest.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	ch := loadDodai(t)
	for _, crd := range ch.CRDObjects() {
		var m map[string]any
		if err := yaml.Unmarshal(crd.File.Data, &m); err != nil {
			t.Fatal(err)
		}
		apply(ctx, t, env, &unstructured.Unstructured{Object: m}, false)
	}
	// Then every templated object, as a dry run, into its namespace.
	ns := "dodai-system"
	if _, err := env.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	objs := renderDodai(t, ch, ns, map[string]any{"netboot": map[string]any{"enabled": true, "interface": "eno2", "mode": "dhcp", "onlyKnown": true}, "controller": map[string]any{"replicas": 2}})
	for _, o := range objs {
		apply(ctx, t, env, o, true)
	}
	// Dry run wrote nothing.
	if ds, err := env.Client.AppsV1().DaemonSets(ns).List(ctx, metav1.ListOptions{}); err != nil || len(ds.Items) != 0 {
		t.Errorf("dry run created DaemonSets: %v %v", ds, err)
	}

	// The default values' pods run commands today's binary accepts (--help
	// after the arguments: cobra rejects an unknown flag before it prints
	// the help, and nothing runs).
	bin := testutil.DodaiBinary(t)
	for _, o := range renderDodai(t, ch, ns, nil) {
		containers, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
		for _, c := range containers {
			args, _, _ := unstructured.NestedStringSlice(c.(map[string]any), "args")
			if len(args) == 0 {
				t.Errorf("%s %s: a container without args", o.GetKind(), o.GetName())
				continue
			}
			cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
			out, err := exec.CommandContext(cctx, bin, append(args, "--help")...).CombinedOutput()
			ccancel()
			if err != nil {
				t.Errorf("%s %s: dodai %s: %v\n%s", o.GetKind(), o.GetName(), strings.Join(args, " "), err, out)
			}
		}
	}
}

func apply(ctx context.Context, t *testing.T, env *kubetest.Env, o *unstructured.Unstructured, dryRun bool) {
	t.Helper()
	groups, err := restmapper.GetAPIGroupResources(env.Client.Discovery())
	if err != nil {
		t.Fatal(err)
	}
	gvk := o.GroupVersionKind()
	m, err := restmapper.NewDiscoveryRESTMapper(groups).RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		t.Fatalf("%s: %v", gvk, err)
	}
	body, err := o.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	opts := metav1.PatchOptions{FieldManager: "dodai-test"}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	ri := env.Dynamic.Resource(m.Resource)
	if o.GetNamespace() != "" {
		_, err = ri.Namespace(o.GetNamespace()).Patch(ctx, o.GetName(), types.ApplyPatchType, body, opts)
	} else {
		_, err = ri.Patch(ctx, o.GetName(), types.ApplyPatchType, body, opts)
	}
	if err != nil {
		t.Errorf("server-side apply (dry run %v) of %s %s/%s: %v", dryRun, gvk.Kind, o.GetNamespace(), o.GetName(), err)
	}
}
