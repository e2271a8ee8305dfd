package rollout_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	helmv2 "github.com/fluxcd/helm-controller/api/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/platform"
	"github.com/dodai-dev/dodai/internal/platform/catalog"
	"github.com/dodai-dev/dodai/internal/platform/status"
	"github.com/dodai-dev/dodai/internal/testutil"
	"github.com/dodai-dev/dodai/test/kubetest"
)

// TestPlatformUpgradeThroughApply takes one platform component through
// plan → apply: installed at its catalog chart version A, then the file
// asks for version B with other values. plan shows A → B and the values
// diff; apply upgrades it and returns only once the NEW generation is Ready
// (observedGeneration == generation, the readiness rule of
// internal/platform); the chart's objects in the cluster are B's; a re-run
// of plan shows nothing. The nodes are not touched.
func TestPlatformUpgradeThroughApply(t *testing.T) {
	ctx := testutil.Context(t, 8*time.Minute)
	// Its own test Kubernetes with the real Flux controllers: a cluster
	// with a HelmRelease API gets its file's platform planned, and the other
	// tests' files (no platform section: the default bundle) must not.
	fluxOpts := kubetest.FluxOptions{RequeueDependency: 2 * time.Second, Concurrent: 4}
	env := kubetest.StartT(t, kubetest.Options{Flux: &fluxOpts})

	cat, err := catalog.Load()
	if err != nil {
		t.Fatal(err)
	}
	const component = "telepresence"
	// The hosted bundle with every component but one turned off, its charts
	// from a local Helm repository named as the mirror (ConfigMap-only test
	// charts under the catalog's chart names).
	repo := kubetest.NewHelmRepo(t)
	components := ""
	for _, name := range cat.Bundles["hosted"] {
		if name != component {
			components += fmt.Sprintf("      %s: {enabled: false}\n", name)
		}
	}
	platformYAML := func(version, tier string) string {
		v := ""
		if version != "" {
			v = "version: " + version + ", "
		}
		return "    bundle: hosted\n    mirror:\n      helm: " + repo.URL() + "\n    components:\n" + components +
			fmt.Sprintf("      %s: {%svalues: {data: {tier: %s}}}\n", component, v, tier)
	}
	g, err := platform.Resolve(mustPlatform(t, platformYAML("", "a")))
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Releases) != 1 || g.Releases[0].Name != component {
		t.Fatalf("platform resolves to %+v", g.Releases)
	}
	rel := g.Releases[0]
	from := rel.Source.Version
	to := nextPatch(t, from)
	// Both versions are in the index from the start (source-controller
	// caches it).
	for _, v := range []string{from, to} {
		if err := repo.Add(rel.Source.Chart, kubetest.ChartSpec{Version: v}); err != nil {
			t.Fatal(err)
		}
	}
	cmName := rel.ReleaseName + "-" + rel.Source.Chart

	tc := newCluster(t, clusterOpts{CPs: 1, RebootDelay: 100 * time.Millisecond, Kube: env, Spec: spec{Platform: platformYAML("", "a")}})
	tc.bootstrap(ctx)

	// Version A: plan shows an install, apply installs it.
	code, out, errOut := tc.dodai(ctx, "plan")
	if code != 2 || !hasRow(out, rel.Namespace, component, "install", rel.Source.Chart, "- → "+from) {
		t.Fatalf("plan of the platform: exit %d\n%s\n%s", code, out, errOut)
	}
	if code, out, errOut = tc.apply(ctx, "--platform-timeout", "3m"); code != 0 {
		t.Fatalf("apply of the platform: exit %d\n%s\n%s\n%s", code, out, errOut, env.LogTails(30))
	}
	tc.checkRelease(ctx, rel.Namespace, component, cmName, from, "a")

	// Version B with other values.
	s := tc.spec
	s.Platform = platformYAML(to, "b")
	tc.write(s)
	code, out, errOut = tc.dodai(ctx, "plan")
	if code != 2 || !hasRow(out, rel.Namespace, component, "upgrade", rel.Source.Chart, from+" → "+to, "changed") ||
		!strings.Contains(out, "\n  -  tier: a\n") || !strings.Contains(out, "\n  +  tier: b\n") || strings.Contains(out, "machine config") {
		t.Fatalf("plan of the chart upgrade: exit %d\n%s\n%s", code, out, errOut)
	}
	t.Logf("plan of the chart upgrade:\n%s", out)
	code, p := tc.planJSON(ctx)
	if code != 2 || len(p.Platform) != 1 || p.Platform[0].Action != "upgrade" || p.Platform[0].FromVersion != from || p.Platform[0].ToVersion != to {
		t.Fatalf("plan -o json: exit %d %+v", code, p.Platform)
	}
	gen := tc.release(ctx, rel.Namespace, component).Generation
	since := time.Now()
	// With helm-controller stopped the release keeps the previous
	// generation's Ready=True: apply must not take it for the upgrade.
	if err := env.StopFlux(); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = tc.apply(ctx, "--platform-timeout", "3s")
	if code != 1 || !strings.Contains(errOut, "apply stopped: step platform: ") ||
		!strings.Contains(errOut, rel.Namespace+"/"+component+": LatestGenerationNotObserved") {
		t.Fatalf("apply with a stale Ready: exit %d\n%s\n%s", code, out, errOut)
	}
	t.Logf("apply while helm-controller is stopped:\n%s", errOut)
	if err := env.StartFlux(ctx, fluxOpts); err != nil {
		t.Fatal(err)
	}
	// The next apply resumes the wait (the HelmRelease already matches the
	// file: the plan alone shows nothing to do).
	if code, out, errOut = tc.apply(ctx, "--platform-timeout", "3m"); code != 0 || !strings.Contains(errOut, "resumed after: node -, step platform: ") {
		t.Fatalf("apply of the chart upgrade: exit %d\n%s\n%s\n%s", code, out, errOut, env.LogTails(30))
	}
	t.Logf("apply of the chart upgrade:\n%s\n%s", out, errOut)
	// Read at once after apply returned: the new generation is the one
	// that is Ready.
	if hr := tc.checkRelease(ctx, rel.Namespace, component, cmName, to, "b"); hr.Generation <= gen {
		t.Fatalf("HelmRelease generation %d after the upgrade, was %d", hr.Generation, gen)
	}
	if n := tc.count("ApplyConfiguration", since); len(n) != 0 {
		t.Fatalf("a platform upgrade applied node configs: %v", n)
	}

	// Converged.
	if code, out, _ = tc.dodai(ctx, "plan"); code != 0 || !strings.Contains(out, "No changes: the cluster matches cluster.yaml.") {
		t.Fatalf("plan after the upgrade: exit %d\n%s", code, out)
	}
	if code, out, _ = tc.apply(ctx); code != 0 || !strings.Contains(out, "Nothing to do: the cluster matches cluster.yaml.") {
		t.Fatalf("apply after the upgrade: exit %d\n%s", code, out)
	}
}

// mustPlatform parses a spec.platform section as the cluster file has it.
func mustPlatform(t *testing.T, section string) cluster.Platform {
	t.Helper()
	src, problems := cluster.Parse("cluster.yaml", []byte("apiVersion: dodai.dev/v1alpha1\nkind: Cluster\nmetadata: {name: p}\nspec:\n  platform:\n"+section))
	if src == nil || len(problems.Errors()) > 0 {
		t.Fatalf("platform section: %v", problems)
	}
	return src.Cluster.Spec.Platform
}

// nextPatch is version with its last number one higher (1.2.3 → 1.2.4).
func nextPatch(t *testing.T, version string) string {
	t.Helper()
	i := strings.LastIndex(version, ".")
	n, err := strconv.Atoi(version[i+1:])
	if i < 0 || err != nil {
		t.Fatalf("chart version %q: not x.y.z", version)
	}
	return version[:i+1] + strconv.Itoa(n+1)
}

// hasRow reports whether a table of out has a row of these cells.
func hasRow(out string, cells ...string) bool {
	for _, l := range strings.Split(out, "\n") {
		// ("- → 1.0.0" is one cell of three fields.)
		if strings.HasPrefix(strings.Join(strings.Fields(l), " ")+" ", strings.Join(cells, " ")+" ") {
			return true
		}
	}
	return false
}

func (tc *testCluster) release(ctx context.Context, ns, name string) *helmv2.HelmRelease {
	tc.t.Helper()
	u, err := tc.kube.Dynamic.Resource(status.HelmReleaseGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		tc.t.Fatal(err)
	}
	var hr helmv2.HelmRelease
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &hr); err != nil {
		tc.t.Fatal(err)
	}
	return &hr
}

// checkRelease checks, right after apply returned, that the HelmRelease is
// Ready at its current generation with the chart version, and that the
// chart's ConfigMap in the cluster is that version's with these values.
func (tc *testCluster) checkRelease(ctx context.Context, ns, name, cm, version, tier string) *helmv2.HelmRelease {
	tc.t.Helper()
	hr := tc.release(ctx, ns, name)
	ready := false
	for _, c := range hr.Status.Conditions {
		if c.Type == "Ready" {
			ready = c.Status == metav1.ConditionTrue && c.ObservedGeneration == hr.Generation
		}
	}
	if !ready || hr.Status.ObservedGeneration != hr.Generation || hr.Spec.Chart.Spec.Version != version ||
		hr.Status.LastAttemptedRevision != version {
		tc.t.Fatalf("HelmRelease %s/%s after apply: generation %d, observed %d, chart %s, last attempted %s, conditions %+v",
			ns, name, hr.Generation, hr.Status.ObservedGeneration, hr.Spec.Chart.Spec.Version, hr.Status.LastAttemptedRevision, hr.Status.Conditions)
	}
	if h := hr.Status.History.Latest(); h == nil || h.ChartVersion != version || h.Status != "deployed" {
		tc.t.Fatalf("HelmRelease %s/%s history: %+v", ns, name, hr.Status.History)
	}
	c, err := tc.kube.Client.CoreV1().ConfigMaps(ns).Get(ctx, cm, metav1.GetOptions{})
	if err != nil || c.Data["version"] != version || c.Data["tier"] != tier {
		tc.t.Fatalf("ConfigMap %s/%s of the chart: %v %v", ns, cm, err, c.Data)
	}
	return hr
}
