// Package platform_test runs `dodai platform install` and `dodai status`
// against a real kube-apiserver + etcd + kube-controller-manager and the real
// Flux source-controller and helm-controller (test/kubetest), with the full
// bundle's 24 releases served as ConfigMap-only charts from a local Helm
// repository that the cluster file names as its mirror.
package platform_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	helmv2 "github.com/fluxcd/helm-controller/api/v2"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"

	"github.com/dodai-dev/dodai/internal/cli"
	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/platform/catalog"
	"github.com/dodai-dev/dodai/internal/platform/graph"
	"github.com/dodai-dev/dodai/internal/platform/install"
	"github.com/dodai-dev/dodai/internal/platform/render"
	"github.com/dodai-dev/dodai/internal/platform/status"
	"github.com/dodai-dev/dodai/test/kubetest"
)

func dodai(t *testing.T, ctx context.Context, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := cli.Run(ctx, args, strings.NewReader(""), &out, &errOut)
	return out.String(), errOut.String(), code
}

// testRepo serves one ConfigMap chart per release of g, under the chart name
// and version the catalog pins (what a mirror would hold).
func testRepo(t *testing.T, g *graph.Graph) *kubetest.HelmRepo {
	repo := kubetest.NewHelmRepo(t)
	for _, r := range g.Releases {
		name := strings.TrimPrefix(r.Source.Chart, "./charts/")
		if err := repo.Add(name, kubetest.ChartSpec{Version: r.Source.Version}); err != nil {
			t.Fatal(err)
		}
	}
	return repo
}

// fluxManifestDir makes a kustomization over the Flux controllers' config/
// dirs that hack/deps/kube.sh copied (what Flux's install.yaml is built from).
func fluxManifestDir(t *testing.T, env *kubetest.Env) string {
	dir := t.TempDir()
	src := env.FluxManifestsDir()
	var res []string
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if info.IsDir() {
			return os.MkdirAll(filepath.Join(dir, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if strings.HasPrefix(rel, "crds/") {
			res = append(res, rel)
		}
		return os.WriteFile(filepath.Join(dir, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(res)
	res = append(res, "namespace.yaml", "source-controller/manager", "source-controller/rbac", "helm-controller/manager", "helm-controller/rbac")
	k := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: flux-system\nresources:\n"
	for _, r := range res {
		k += "- " + r + "\n"
	}
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	ns := "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: flux-system\n"
	if err := os.WriteFile(filepath.Join(dir, "namespace.yaml"), []byte(ns), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func writeCluster(t *testing.T, ctx context.Context, dir, platform string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, "cluster.yaml")); err != nil {
		if _, errOut, code := dodai(t, ctx, "init", "--example", dir); code != 0 {
			t.Fatalf("init: %s", errOut)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "cluster.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "  platform:\n")
	if i < 0 {
		t.Fatal("example cluster.yaml has no platform section at the end")
	}
	s = s[:i] + "  platform:\n" + platform
	if err := os.WriteFile(filepath.Join(dir, "cluster.yaml"), []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func helmReleases(t *testing.T, ctx context.Context, env *kubetest.Env) []helmv2.HelmRelease {
	t.Helper()
	list, err := env.Dynamic.Resource(status.HelmReleaseGVR).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []helmv2.HelmRelease
	for _, u := range list.Items {
		var hr helmv2.HelmRelease
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &hr); err != nil {
			t.Fatal(err)
		}
		out = append(out, hr)
	}
	return out
}

var cmGVR = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}

func renderedAt(t *testing.T, ctx context.Context, env *kubetest.Env, r graph.Release) time.Time {
	t.Helper()
	name := r.ReleaseName + "-" + strings.TrimPrefix(r.Source.Chart, "./charts/")
	cm, err := env.Client.CoreV1().ConfigMaps(r.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("ConfigMap of %s: %v", r.Name, err)
	}
	ts, err := time.Parse("2006-01-02T15:04:05.000000Z07:00", cm.Data["renderedAt"])
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

func TestPlatformInstall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	env := kubetest.StartT(t, kubetest.Options{ControllerManager: true,
		Flux: &kubetest.FluxOptions{RequeueDependency: 5 * time.Second, Concurrent: 20}})
	cat, err := catalog.Load()
	if err != nil {
		t.Fatal(err)
	}

	full, err := graph.Resolve(cat, cluster.Platform{Bundle: "full"})
	if err != nil {
		t.Fatal(err)
	}
	repo := testRepo(t, full)
	// Charts of the user components of the last subtest, one of them broken
	// (added now: source-controller caches the repository index).
	if err := repo.Add("app-base", kubetest.ChartSpec{Version: "1.0.0", Fail: "app-base chart is broken"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"app-mid", "app-top"} {
		if err := repo.Add(c, kubetest.ChartSpec{Version: "1.0.0"}); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(t.TempDir(), "cluster")
	disabled := "    components:\n      capi-providers: {enabled: false}\n      kamaji: {enabled: false}\n      linstor: {enabled: false}\n      piraeus-operator: {enabled: false}\n"
	mirror := "    bundle: full\n    mirror:\n      helm: " + repo.URL() + "\n"
	fluxDir := fluxManifestDir(t, env)
	installArgs := []string{"-C", dir, "platform", "install", "--kubeconfig", env.Kubeconfig, "--flux-manifests", fluxDir}

	// The real full bundle (upstream sources, no mirror) validates against
	// the real Flux CRDs: server-side dry-run of every source and release.
	t.Run("full bundle dry-run", func(t *testing.T) {
		g, err := graph.Resolve(cat, cluster.Platform{Bundle: "full"})
		if err != nil {
			t.Fatal(err)
		}
		objs, err := render.Objects(g)
		if err != nil {
			t.Fatal(err)
		}
		disc, _ := discovery.NewDiscoveryClientForConfig(env.RESTConfig())
		ap := install.NewApplier(env.Dynamic, disc)
		// Flux's namespace (created by the Flux install in real runs).
		fluxNS := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace",
			"metadata": map[string]any{"name": render.FluxNamespace}}}
		nss := []*unstructured.Unstructured{fluxNS}
		var rest []*unstructured.Unstructured
		for _, o := range objs {
			if o.GetKind() == "Namespace" {
				nss = append(nss, o)
			} else {
				rest = append(rest, o)
			}
		}
		if _, err := ap.Apply(ctx, nss, false); err != nil {
			t.Fatal(err)
		}
		// dodai prunes only namespaces it created: remove the ones made here
		// for the dry-run, so that the install below creates (and owns) them.
		defer func() {
			for _, ns := range nss[1:] {
				if err := env.Client.CoreV1().Namespaces().Delete(ctx, ns.GetName(), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
					t.Fatal(err)
				}
			}
			deadline := time.Now().Add(90 * time.Second)
			for _, ns := range nss[1:] {
				for {
					_, err := env.Client.CoreV1().Namespaces().Get(ctx, ns.GetName(), metav1.GetOptions{})
					if apierrors.IsNotFound(err) {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("namespace %s not deleted after the dry-run: %v", ns.GetName(), err)
					}
					time.Sleep(200 * time.Millisecond)
				}
			}
		}()
		res, err := ap.Apply(ctx, rest, true)
		if err != nil {
			t.Fatal(err)
		}
		if len(res) != 24+18 {
			t.Errorf("%d objects dry-run applied, want 42", len(res))
		}
		// A typo the CRD rejects is caught the same way.
		bad := rest[len(rest)-1].DeepCopy()
		_ = unstructured.SetNestedField(bad.Object, "Sometimes", "spec", "install", "crds")
		if _, err := ap.Apply(ctx, []*unstructured.Unstructured{bad}, true); err == nil || !strings.Contains(err.Error(), "spec.install.crds") {
			t.Errorf("invalid HelmRelease accepted: %v", err)
		}
	})

	t.Run("all Ready in dependency order", func(t *testing.T) {
		writeCluster(t, ctx, dir, mirror)
		start := time.Now()
		out, errOut, code := dodai(t, ctx, append(installArgs, "--timeout", "3m")...)
		if code != 0 {
			t.Fatalf("install: %d\n%s\n%s\n%s", code, out, errOut, env.LogTails(30))
		}
		t.Logf("install took %s:\n%s%s", time.Since(start), out, errOut)
		// helm-controller may still run a reconcile it scheduled earlier (the
		// broken release's 30s retry), which flips Ready to Unknown for a
		// moment: wait until all are Ready together.
		hrs := waitAllReady(t, ctx, env, 24)
		deployed := map[string]time.Time{}
		for _, hr := range hrs {
			for _, c := range hr.Status.Conditions {
				if strings.Contains(c.Message, "invalid ownership metadata") {
					t.Errorf("%s: %s", hr.Name, c.Message)
				}
			}
			// When the release's first successful Helm action finished
			// (second resolution).
			for _, h := range hr.Status.History {
				if h.Status == "deployed" && (deployed[hr.Name].IsZero() || h.FirstDeployed.Time.Before(deployed[hr.Name])) {
					deployed[hr.Name] = h.FirstDeployed.Time
				}
			}
		}
		for _, r := range full.Releases {
			at := renderedAt(t, ctx, env, r)
			for _, d := range r.DependsOn {
				dep, _ := full.Release(d)
				if dat := renderedAt(t, ctx, env, *dep); !dat.Before(at) {
					t.Errorf("%s rendered at %s, not after its dependency %s (%s)", r.Name, at, d, dat)
				}
				if deployed[d].IsZero() || deployed[d].After(at) {
					t.Errorf("%s installed at %s before %s was deployed (%s)", r.Name, at, d, deployed[d])
				}
			}
		}
		// CNI pre-install adopted by Flux: the Helm release helm-controller
		// manages is the one dodai installed (revision 1 exists in storage).
		for _, r := range []string{"cilium", "kubeovn"} {
			rel, _ := full.Release(r)
			secs, err := env.Client.CoreV1().Secrets(rel.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "owner=helm,name=" + rel.ReleaseName})
			if err != nil || len(secs.Items) == 0 {
				t.Fatalf("%s: Helm storage %v %d", r, err, len(secs.Items))
			}
			var v1 bool
			for _, s := range secs.Items {
				v1 = v1 || s.Labels["version"] == "1"
			}
			if !v1 {
				t.Errorf("%s: no revision 1 (not pre-installed?)", r)
			}
			for _, hr := range hrs {
				if hr.Name == r && (len(hr.Status.History) == 0 || hr.Status.History.Latest().Name != rel.ReleaseName) {
					t.Errorf("%s: HelmRelease history %v", r, hr.Status.History)
				}
			}
		}
	})

	t.Run("Flux manifests applied and patched", func(t *testing.T) {
		var objs []*unstructured.Unstructured
		for _, name := range []string{"source-controller", "helm-controller"} {
			d, err := env.Dynamic.Resource(schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}).
				Namespace("flux-system").Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			objs = append(objs, d)
		}
		if p := install.CheckFlux(objs, install.FluxOptions{}); len(p) > 0 {
			t.Errorf("Flux Deployments in the cluster:\n%s", strings.Join(p, "\n"))
		}
		if _, err := env.Client.RbacV1().ClusterRoleBindings().Get(ctx, "helm-manager-rolebinding", metav1.GetOptions{}); err != nil {
			t.Errorf("helm-controller RBAC: %v", err)
		}
	})

	t.Run("dodai status", func(t *testing.T) {
		// (helm-controller's own later reconciles can flip Ready for a moment.)
		waitAllReady(t, ctx, env, 24)
		out, errOut, code := dodai(t, ctx, "status", "components", "--kubeconfig", env.Kubeconfig, "--tree")
		if code != 0 {
			t.Fatalf("status: %d %s\n%s", code, errOut, out)
		}
		lines := strings.Split(out, "\n")
		hdr := -1
		for i, l := range lines {
			if strings.HasPrefix(l, "NAMESPACE ") {
				hdr = i
			}
		}
		if hdr < 0 || strings.Join(strings.Fields(lines[hdr]), " ") != "NAMESPACE NAME AGE READY STATUS" {
			t.Fatalf("no header:\n%s", out)
		}
		for _, l := range lines[hdr+1 : hdr+25] {
			f := strings.Fields(l)
			if len(f) < 5 || !strings.HasPrefix(f[0], "cozy-") || f[3] != "True" || !strings.HasPrefix(strings.Join(f[4:], " "), "Helm ") {
				t.Errorf("row %q", l)
			}
		}
		if !strings.Contains(out, "cozy-cilium/cilium [Ready]\n└── cozy-kubeovn/kubeovn [Ready]") {
			t.Errorf("tree:\n%s", out)
		}
		t.Logf("dodai status --tree:\n%s", out)
	})

	t.Run("re-run is a no-op", func(t *testing.T) {
		waitStable(t, ctx, env, 24)
		before := versions(t, ctx, env)
		out, errOut, code := dodai(t, ctx, append(installArgs, "--timeout", "1m", "-v")...)
		if code != 0 {
			t.Fatalf("re-run: %d %s", code, errOut)
		}
		if !strings.Contains(out, " (0 changed), pruned 0, pre-installed CNI []") {
			var changed []string
			for _, l := range strings.Split(errOut, "\n") {
				if strings.Contains(l, "msg=changed") {
					changed = append(changed, l)
				}
			}
			t.Errorf("re-run output: %s\nchanged:\n%s\nstderr:\n%s", out, strings.Join(changed, "\n"), errOut)
		}
		after := versions(t, ctx, env)
		for k, v := range before {
			if after[k] != v {
				t.Errorf("%s changed: %s -> %s", k, v, after[k])
			}
		}
	})

	// The readiness rule: after a spec change the previous generation's
	// Ready=True is still on the HelmRelease until helm-controller
	// reconciles it. With the controllers stopped, that stale Ready must not
	// let install return or status exit 0.
	t.Run("a stale Ready of the previous generation does not count", func(t *testing.T) {
		waitStable(t, ctx, env, 24)
		if err := env.StopFlux(); err != nil {
			t.Fatal(err)
		}
		writeCluster(t, ctx, dir, mirror+"    components:\n      telepresence: {values: {data: {changed: \"yes\"}}}\n")
		out, errOut, code := dodai(t, ctx, append(installArgs, "--timeout", "3s")...)
		if code == 0 {
			t.Errorf("install returned at once on a stale Ready=True:\n%s", out)
		}
		if !strings.Contains(errOut, "1 of 24 releases not Ready (cozy-telepresence/telepresence)") ||
			!strings.Contains(errOut, "cozy-telepresence/telepresence: LatestGenerationNotObserved") {
			t.Errorf("install error:\n%s", errOut)
		}
		out, _, code = dodai(t, ctx, "status", "components", "--kubeconfig", env.Kubeconfig)
		if code == 0 || !strings.Contains(out, "NOT CURRENT") || strings.Count(out, " True ") != 24 {
			t.Errorf("status (exit %d) with a stale Ready:\n%s", code, out)
		}
		if err := env.StartFlux(ctx, kubetest.FluxOptions{RequeueDependency: 5 * time.Second, Concurrent: 20}); err != nil {
			t.Fatal(err)
		}
		waitAllReady(t, ctx, env, 24)
		if out, _, code := dodai(t, ctx, "status", "components", "--kubeconfig", env.Kubeconfig); code != 0 {
			t.Errorf("status after Flux reconciled (exit %d):\n%s", code, out)
		}
		cm, err := env.Client.CoreV1().ConfigMaps("cozy-telepresence").Get(ctx, "traffic-manager-telepresence-oss", metav1.GetOptions{})
		if err != nil || cm.Data["changed"] != "yes" {
			t.Errorf("new values not rolled out: %v %v", err, cm.Data)
		}
	})

	t.Run("disabling components prunes them", func(t *testing.T) {
		writeCluster(t, ctx, dir, mirror+disabled)
		out, errOut, code := dodai(t, ctx, append(installArgs, "--timeout", "1m")...)
		if code != 0 {
			t.Fatalf("install: %d %s", code, errOut)
		}
		if !strings.Contains(out, "pruned 6") { // 4 HelmReleases, namespaces cozy-kamaji and cozy-linstor
			t.Errorf("output: %s", out)
		}
		for _, k := range []string{"cozy-cluster-api/capi-providers", "cozy-kamaji/kamaji", "cozy-linstor/linstor", "cozy-linstor/piraeus-operator"} {
			p := strings.SplitN(k, "/", 2)
			if _, err := env.Dynamic.Resource(status.HelmReleaseGVR).Namespace(p[0]).Get(ctx, p[1], metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Errorf("%s still there: %v", k, err)
			}
		}
		// helm-controller uninstalled the release (its ConfigMap is gone),
		// and the namespace nothing else uses is deleted.
		if _, err := env.Client.CoreV1().ConfigMaps("cozy-cluster-api").Get(ctx, "capi-providers-capi-providers", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("capi-providers not uninstalled: %v", err)
		}
		if _, err := env.Client.CoreV1().Namespaces().Get(ctx, "cozy-cluster-api", metav1.GetOptions{}); err != nil {
			t.Errorf("cozy-cluster-api (still used by capi-operator): %v", err)
		}
		deadline := time.Now().Add(60 * time.Second)
		for {
			_, err := env.Client.CoreV1().Namespaces().Get(ctx, "cozy-linstor", metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("namespace cozy-linstor not deleted: %v", err)
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		waitAllReady(t, ctx, env, 20)
		out, _, code = dodai(t, ctx, "status", "components", "--kubeconfig", env.Kubeconfig)
		if code != 0 || strings.Count(out, " True ") != 20 {
			t.Errorf("status after pruning (%d):\n%s", code, out)
		}
	})

	// A user component chain whose bottom chart is broken: everything above
	// it waits, and status names the bottom release with its own error.
	t.Run("broken bottom chart is the root cause", func(t *testing.T) {
		extra := "    extra:\n"
		for _, e := range [][2]string{{"app-base", "[cert-manager]"}, {"app-mid", "[app-base, cert-manager]"}, {"app-top", "[app-mid]"}} {
			extra += fmt.Sprintf("    - {name: %s, namespace: apps, repo: %s, chart: %s, version: 1.0.0, dependsOn: %s}\n", e[0], repo.URL(), e[0], e[1])
		}
		writeCluster(t, ctx, dir, mirror+disabled+extra)
		out, errOut, code := dodai(t, ctx, append(installArgs, "--timeout", "15s")...)
		if code == 0 {
			t.Fatalf("install with a broken chart succeeded:\n%s", out)
		}
		if !strings.Contains(errOut, "apps/app-base: InstallFailed: Helm install failed for release apps/app-base with chart app-base@1.0.0") ||
			!strings.Contains(errOut, "app-base chart is broken") {
			t.Errorf("install error does not name the root cause:\n%s", errOut)
		}
		out, _, code = dodai(t, ctx, "status", "components", "--kubeconfig", env.Kubeconfig)
		if code == 0 {
			t.Error("status exit 0 with a failing release")
		}
		want := "ROOT CAUSE (releases waiting on dependencies are blocked by):\n" +
			"  apps/app-base: InstallFailed: Helm install failed for release apps/app-base with chart app-base@1.0.0: execution error at (app-base/templates/fail.yaml:1:3): app-base chart is broken"
		if !strings.Contains(out, want) || !strings.Contains(out, "    blocks 2: apps/app-mid, apps/app-top\n") {
			t.Errorf("status lacks the root cause:\n%s", out)
		}
		if strings.Count(out[strings.Index(out, "ROOT CAUSE"):], "\n  apps/") != 1 {
			t.Errorf("more than one root cause:\n%s", out)
		}
		t.Logf("status with a broken chart:\n%s", out)
	})
}

// versions maps every object dodai applied (platform objects, inventory,
// Flux objects) to its resourceVersion (HelmReleases: generation and
// dodai's managed fields).
func versions(t *testing.T, ctx context.Context, env *kubetest.Env) map[string]string {
	t.Helper()
	out := map[string]string{}
	add := func(gvr schema.GroupVersionResource, ns string) {
		list, err := env.Dynamic.Resource(gvr).Namespace(ns).List(ctx, metav1.ListOptions{LabelSelector: render.ManagedByLabel + "=" + render.ManagedBy})
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range list.Items {
			v := u.GetResourceVersion()
			if gvr == status.HelmReleaseGVR {
				// helm-controller updates the status of HelmReleases on its
				// own schedule (which bumps resourceVersion): compare what
				// dodai owns instead, the generation and its managed fields.
				v = fmt.Sprintf("generation %d", u.GetGeneration())
				for _, mf := range u.GetManagedFields() {
					if strings.HasPrefix(mf.Manager, install.FieldManager) {
						v += fmt.Sprintf(" %s@%s:%s", mf.Manager, mf.Time, mf.FieldsV1.GetRawString())
					}
				}
			}
			out[fmt.Sprintf("%s %s/%s", gvr.Resource, u.GetNamespace(), u.GetName())] = v
		}
	}
	add(status.HelmReleaseGVR, "")
	add(schema.GroupVersionResource{Group: "source.toolkit.fluxcd.io", Version: "v1", Resource: "helmrepositories"}, "")
	add(schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}, "")
	add(cmGVR, "flux-system")
	dl, err := env.Dynamic.Resource(schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}).Namespace("flux-system").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range dl.Items {
		out["deployment "+u.GetName()] = u.GetResourceVersion()
	}
	if len(out) < 24+19+2 {
		t.Fatalf("only %d objects found", len(out))
	}
	return out
}

// waitAllReady waits (up to 60 s) until n HelmReleases exist and all are
// Ready at the same time.
func waitAllReady(t *testing.T, ctx context.Context, env *kubetest.Env, n int) []helmv2.HelmRelease {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		hrs := helmReleases(t, ctx, env)
		rep := status.FromHelmReleases(hrs, time.Now())
		if len(rep.Releases) == n && rep.AllReady() {
			return hrs
		}
		if time.Now().After(deadline) {
			var b strings.Builder
			rep.WriteRootCauses(&b)
			t.Fatalf("%d releases (want %d), all ready %v\n%s", len(rep.Releases), n, rep.AllReady(), b.String())
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// waitStable waits until n HelmReleases are all Ready and none of them has
// changed for 6 s (longer than --requeue-dependency), so requeues that
// helm-controller scheduled earlier have run.
func waitStable(t *testing.T, ctx context.Context, env *kubetest.Env, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	last, since := "", time.Now()
	for time.Now().Before(deadline) {
		hrs := waitAllReady(t, ctx, env, n)
		var b strings.Builder
		for _, hr := range hrs {
			b.WriteString(hr.ResourceVersion + ",")
		}
		if b.String() != last {
			last, since = b.String(), time.Now()
		} else if time.Since(since) > 6*time.Second {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatal("HelmReleases did not settle within 60 s")
}
