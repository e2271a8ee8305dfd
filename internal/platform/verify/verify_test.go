package verify

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/repo"

	"github.com/dodai-dev/dodai/internal/platform/graph"
	"github.com/dodai-dev/dodai/test/kubetest"
)

const widgetCRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  names: {kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
`

const widget = `apiVersion: example.com/v1
kind: Widget
metadata:
  name: {{ .Release.Name }}
spec: {size: 3}
`

const sharedRole = `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: shared
rules: []
`

const deployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}
spec:
  selector: {matchLabels: {app: x}}
  template:
    metadata: {labels: {app: x}}
    spec:
      initContainers:
      - {name: init, image: "busybox:1.37"}
      containers:
      - name: main
        image: {{ .Values.image | quote }}
        env:
        - {name: RELATED_IMAGE_AGENT, value: "ghcr.io/example/agent:v2"}
`

// testCharts serves the test charts from an HTTP Helm repository and an
// OCI registry, and returns the graph of releases that use them.
func testCharts(t *testing.T) *graph.Graph {
	t.Helper()
	http := kubetest.NewHelmRepo(t)
	oci := kubetest.ServeOCIRegistry(t)
	add := func(name string, spec kubetest.ChartSpec) {
		if err := http.Add(name, spec); err != nil {
			t.Fatal(err)
		}
	}
	add("good", kubetest.ChartSpec{Version: "1.0.0", Values: "image: docker.io/bitnami/redis:7.2\n", Templates: map[string]string{"deploy.yaml": deployment}})
	add("broken", kubetest.ChartSpec{Fail: "broken on purpose"})
	add("foreign", kubetest.ChartSpec{Templates: map[string]string{"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: stray, namespace: nowhere}\n"}})
	add("owner-a", kubetest.ChartSpec{Templates: map[string]string{"role.yaml": sharedRole}})
	add("owner-b", kubetest.ChartSpec{Templates: map[string]string{"role.yaml": sharedRole}})
	add("operator", kubetest.ChartSpec{CRDs: map[string]string{"widgets.yaml": widgetCRD}})
	add("user", kubetest.ChartSpec{Templates: map[string]string{"widget.yaml": widget}})
	if err := oci.Push("ocichart", kubetest.ChartSpec{Version: "2.0.0"}); err != nil {
		t.Fatal(err)
	}
	rel := func(name, chart, version string, deps ...string) graph.Release {
		return graph.Release{Name: name, Namespace: "ns-" + name, ReleaseName: name, DependsOn: deps,
			Source: graph.Source{Kind: graph.SourceHelm, RepoName: "test", URL: http.URL(), Chart: chart, Version: version}}
	}
	g := &graph.Graph{Releases: []graph.Release{
		rel("good", "good", "1.0.0"),
		rel("broken", "broken", "0.1.0"),
		rel("foreign", "foreign", "0.1.0"),
		rel("owner-a", "owner-a", "0.1.0"),
		rel("owner-b", "owner-b", "0.1.0"),
		rel("operator", "operator", "0.1.0"),
		rel("user", "user", "0.1.0", "operator"),
		rel("orphan", "user", "0.1.0"), // a Widget without depending on operator
		rel("missing", "good", "9.9.9"),
		{Name: "oci", Namespace: "ns-oci", ReleaseName: "oci",
			Source: graph.Source{Kind: graph.SourceOCI, RepoName: "oci", URL: oci.URL(), Chart: "ocichart", Version: "2.0.0"}},
		{Name: "linstor", Namespace: "ns-linstor", ReleaseName: "linstor", DependsOn: []string{"operator"},
			Source: graph.Source{Kind: graph.SourceGit, RepoName: "dodai-charts", Chart: "./charts/linstor", Version: "0.1.0"}},
	}}
	return g
}

func findings(r *Release) string {
	var s []string
	for _, f := range r.Findings {
		s = append(s, f.String())
	}
	return strings.Join(s, "\n")
}

func TestVerifyOffline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	g := testCharts(t)
	rep, err := Verify(ctx, g, Options{KubeVersion: "v1.34.1"})
	if err != nil {
		t.Fatal(err)
	}
	check := func(rep *Report) {
		t.Helper()
		want := map[string]struct{ result, finding string }{
			"good":     {"ok", ""},
			"broken":   {CheckRender, "broken on purpose"},
			"foreign":  {CheckForeign, `ConfigMap nowhere/stray: namespace "nowhere" is created by neither this chart nor dodai`},
			"owner-a":  {CheckCollision, "ClusterRole.rbac.authorization.k8s.io shared: also rendered by release ns-owner-b/owner-b"},
			"owner-b":  {CheckCollision, "also rendered by release ns-owner-a/owner-a"},
			"operator": {"ok", ""},
			"user":     {"ok", ""},
			"orphan":   {CheckMissingCRD, "Widget.example.com ns-orphan/orphan: its CRD comes from release operator, which this release does not depend on"},
			"missing":  {CheckFetch, "has no good 9.9.9 (it has 1.0.0)"},
			"oci":      {"ok", ""},
			// dodai's LinstorCluster needs the piraeus CRDs, which no
			// release of this test graph installs.
			"linstor": {CheckMissingCRD, "LinstorCluster.piraeus.io ns-linstor/linstorcluster: no release installs its CRD"},
		}
		if len(rep.Releases) != len(want) {
			t.Fatalf("%d releases", len(rep.Releases))
		}
		for _, r := range rep.Releases {
			w := want[r.Name]
			if r.Result() != w.result || !strings.Contains(findings(r), w.finding) {
				t.Errorf("%s: result %s, want %s with %q; findings:\n%s", r.Name, r.Result(), w.result, w.finding, findings(r))
			}
		}
		if rep.OK() {
			t.Error("report OK with failures")
		}
	}
	check(rep)
	good := rep.Releases[0]
	if good.Objects != 2 || good.From == "" {
		t.Errorf("good: %d objects from %q", good.Objects, good.From)
	}

	// Images: containers, init containers and operator image hints, with a
	// warning for Bitnami's retired repository.
	imgs := map[string]Image{}
	for _, im := range rep.Images() {
		imgs[im.Ref] = im
	}
	for _, ref := range []string{"docker.io/bitnami/redis:7.2", "busybox:1.37", "ghcr.io/example/agent:v2"} {
		if _, ok := imgs[ref]; !ok {
			t.Errorf("image %s not listed: %v", ref, imgs)
		}
	}
	if w := imgs["docker.io/bitnami/redis:7.2"].Warning; !strings.Contains(w, "bitnamilegacy") {
		t.Errorf("no warning for bitnami: %q", w)
	}
	if w := imgs["busybox:1.37"].Warning; w != "" {
		t.Errorf("warning for busybox: %q", w)
	}

	// Mirror: everything that can be fetched lands in one repository that
	// verify reads with --charts and gets the same answers.
	dir := t.TempDir()
	ok := &graph.Graph{}
	for _, r := range g.Releases {
		if r.Name != "missing" {
			ok.Releases = append(ok.Releases, r)
		}
	}
	ms, err := Mirror(ctx, ok, nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 9 { // user and orphan share a chart
		t.Errorf("mirrored %d charts: %v", len(ms), ms)
	}
	idx, err := repo.LoadIndexFile(filepath.Join(dir, "index.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"good", "ocichart", "linstor", "operator"} {
		if len(idx.Entries[n]) != 1 || idx.Entries[n][0].URLs[0] != idx.Entries[n][0].Name+"-"+idx.Entries[n][0].Version+".tgz" || idx.Entries[n][0].Digest == "" {
			t.Errorf("index entry %s: %+v", n, idx.Entries[n])
		}
	}
	rep2, err := Verify(ctx, g, Options{KubeVersion: "v1.34.1", Fetcher: &Fetcher{Charts: dir}})
	if err != nil {
		t.Fatal(err)
	}
	check(rep2) // "missing" is not in the mirror either: the mirror has good 1.0.0 only
	if f := findings(rep2.Releases[8]); !strings.Contains(f, dir+" has no good 9.9.9") {
		t.Errorf("missing, read from the mirror: %s", f)
	}
	// Re-running keeps what is there.
	before, _ := os.ReadFile(filepath.Join(dir, "index.yaml"))
	ms, err = Mirror(ctx, ok, nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if !m.Kept && m.Chart != "linstor" { // dodai's charts are repackaged (timestamps)
			t.Errorf("%s rewritten", m.File)
		}
	}
	after, _ := os.ReadFile(filepath.Join(dir, "index.yaml"))
	if strings.Count(string(after), "name: good") != strings.Count(string(before), "name: good") {
		t.Errorf("index grew on re-run:\n%s", after)
	}
}

// A chart directory without index.yaml, or a missing directory, is a clear
// error per release, not a crash.
func TestFetchErrors(t *testing.T) {
	ctx := context.Background()
	f := &Fetcher{Charts: t.TempDir()}
	_, err := f.Fetch(ctx, graph.Source{Kind: graph.SourceHelm, Chart: "x", Version: "1.0.0"})
	if err == nil || !strings.Contains(err.Error(), "reading the index of") {
		t.Errorf("empty dir: %v", err)
	}
	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, "index.yaml"), []byte("hello: world\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f = &Fetcher{Charts: bad}
	if _, err := f.Fetch(ctx, graph.Source{Chart: "x", Version: "1"}); err == nil || !strings.Contains(err.Error(), "not a Helm repository") {
		t.Errorf("bad index: %v", err)
	}
}

// A repository that refuses connections, or accepts them and never
// answers (HTTP index or OCI registry), is a clear error per release within
// the Fetcher's timeout, not a hang; an archive that is not a chart is an
// error naming the chart.
func TestFetchUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Accepts and holds every connection without a byte of answer.
	hang, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := hang.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		hang.Close()
		<-done
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	})
	// A port nothing listens on.
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := closed.Addr().String()
	closed.Close()

	for _, c := range []struct {
		name string
		src  graph.Source
		want string
	}{
		{"http refused", graph.Source{Kind: graph.SourceHelm, URL: "http://" + refused, Chart: "x", Version: "1.0.0"}, "reading the index of http://" + refused},
		{"http silent", graph.Source{Kind: graph.SourceHelm, URL: "http://" + hang.Addr().String(), Chart: "x", Version: "1.0.0"}, "reading the index of http://" + hang.Addr().String()},
		{"oci refused", graph.Source{Kind: graph.SourceOCI, URL: "oci://" + refused + "/charts", Chart: "x", Version: "1.0.0"}, "pulling oci://" + refused + "/charts/x:1.0.0"},
		{"oci silent", graph.Source{Kind: graph.SourceOCI, URL: "oci://" + hang.Addr().String() + "/charts", Chart: "x", Version: "1.0.0"}, "pulling oci://" + hang.Addr().String() + "/charts/x:1.0.0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := &Fetcher{Timeout: 500 * time.Millisecond}
			start := time.Now()
			_, err := f.Fetch(ctx, c.src)
			took := time.Since(start)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("want an error with %q, got %v", c.want, err)
			}
			if took > 20*time.Second {
				t.Errorf("took %s with a 500ms timeout", took)
			}
			t.Logf("%s: %v (%s)", c.name, err, took.Round(time.Millisecond))
		})
	}

	// An index entry whose archive is not a chart.
	dir := t.TempDir()
	idx := "apiVersion: v1\nentries:\n  x:\n  - name: x\n    version: 1.0.0\n    apiVersion: v2\n    urls: [x-1.0.0.tgz]\n"
	if err := os.WriteFile(filepath.Join(dir, "index.yaml"), []byte(idx), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "x-1.0.0.tgz"), []byte("not a tarball"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := &Fetcher{Charts: dir}
	a, err := f.Fetch(ctx, graph.Source{Kind: graph.SourceHelm, Chart: "x", Version: "1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Load(ctx, a); err == nil || !strings.Contains(err.Error(), "loading x 1.0.0") {
		t.Errorf("bad archive: %v", err)
	}
}
