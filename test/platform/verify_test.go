package platform_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dodai-dev/dodai/internal/platform/graph"
	"github.com/dodai-dev/dodai/internal/platform/verify"
	"github.com/dodai-dev/dodai/test/kubetest"
)

// controlPlaneNodes creates Node objects labelled as Talos labels control
// planes (node-role.kubernetes.io/control-plane: ""), with an InternalIP,
// for charts that look the Nodes up (kube-ovn).
func controlPlaneNodes(t *testing.T, ctx context.Context, env *kubetest.Env, n int) {
	t.Helper()
	for i := 1; i <= n; i++ {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "cp-" + string(rune('0'+i)),
			Labels: map[string]string{"node-role.kubernetes.io/control-plane": "", "kubernetes.io/os": "linux"}}}
		created, err := env.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		created.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.5.0." + string(rune('1'+i))}}
		if _, err := env.Client.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// lookupNodes fails like kube-ovn's helpers when no Node carries the label.
const lookupNodes = `{{- $ips := list }}
{{- range (lookup "v1" "Node" "" "").items }}
{{- if hasKey .metadata.labels "node-role.kubernetes.io/control-plane" }}
{{- range .status.addresses }}{{ if eq .type "InternalIP" }}{{ $ips = append $ips .address }}{{ end }}{{ end }}
{{- end }}
{{- end }}
{{- if not $ips }}{{ fail "No nodes found with label 'node-role.kubernetes.io/control-plane'" }}{{ end }}
apiVersion: v1
kind: ConfigMap
metadata:
  name: masters
data:
  MASTER_NODES: {{ join "," $ips | quote }}
`

const strictCRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.example.com
spec:
  group: example.com
  names: {kind: Gadget, plural: gadgets, singular: gadget, listKind: GadgetList}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer}
`

// Server-side dry-run against the real kube-apiserver: the operator's CRD
// is created first (so its custom resources can be checked at all), a
// custom resource its schema rejects and a Service the API server rejects
// are reported with the API server's message, and a chart that looks up the
// control-plane Nodes renders only once they exist.
func TestVerifyDryRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	env := kubetest.StartT(t, kubetest.Options{})
	repo := kubetest.NewHelmRepo(t)
	for name, spec := range map[string]kubetest.ChartSpec{
		"ovnlike":    {Templates: map[string]string{"masters.yaml": lookupNodes}},
		"badservice": {Templates: map[string]string{"svc.yaml": "apiVersion: v1\nkind: Service\nmetadata: {name: bad}\nspec:\n  ports: [{port: 99999}]\n"}},
		"operator":   {CRDs: map[string]string{"gadgets.yaml": strictCRD}},
		"user":       {Values: "size: 3\n", Templates: map[string]string{"gadget.yaml": "apiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: g}\nspec: {size: {{ .Values.size }}}\n"}},
	} {
		if err := repo.Add(name, spec); err != nil {
			t.Fatal(err)
		}
	}
	rel := func(name, chart string, values map[string]any, deps ...string) graph.Release {
		return graph.Release{Name: name, Namespace: "vt-" + name, ReleaseName: name, DependsOn: deps, Values: values,
			Source: graph.Source{Kind: graph.SourceHelm, RepoName: "test", URL: repo.URL(), Chart: chart, Version: "0.1.0"}}
	}
	g := &graph.Graph{Releases: []graph.Release{
		rel("ovnlike", "ovnlike", nil),
		rel("badservice", "badservice", nil),
		rel("operator", "operator", nil),
		rel("user", "user", nil, "operator"),
		rel("baduser", "user", map[string]any{"size": "three"}, "operator"),
	}}
	run := func() map[string]*verify.Release {
		rep, err := verify.Verify(ctx, g, verify.Options{RESTConfig: env.RESTConfig()})
		if err != nil {
			t.Fatal(err)
		}
		if !rep.DryRun || !strings.HasPrefix(rep.KubeVersion, "v1.") {
			t.Errorf("dry-run %v, version %q", rep.DryRun, rep.KubeVersion)
		}
		out := map[string]*verify.Release{}
		for _, r := range rep.Releases {
			out[r.Name] = r
			var fs []string
			for _, f := range r.Findings {
				fs = append(fs, f.String())
			}
			t.Logf("%s: %s %s", r.Name, r.Result(), strings.Join(fs, "; "))
		}
		return out
	}
	msg := func(r *verify.Release) string {
		var s []string
		for _, f := range r.Findings {
			s = append(s, f.String())
		}
		return strings.Join(s, "\n")
	}

	res := run()
	if r := res["ovnlike"]; r.Result() != verify.CheckRender || !strings.Contains(msg(r), "No nodes found with label") {
		t.Errorf("ovnlike without Nodes: %s %s", r.Result(), msg(r))
	}
	if r := res["badservice"]; r.Result() != verify.CheckRejected || !strings.Contains(msg(r), "Service vt-badservice/bad") ||
		!strings.Contains(msg(r), "spec.ports[0].port: Invalid value: 99999: must be between 1 and 65535") {
		t.Errorf("badservice: %s %s", r.Result(), msg(r))
	}
	if r := res["baduser"]; r.Result() != verify.CheckRejected || !strings.Contains(msg(r), ".spec.size: expected numeric (int or float), got string") {
		t.Errorf("baduser: %s %s", r.Result(), msg(r))
	}
	for _, n := range []string{"operator", "user"} {
		if !res[n].OK() {
			t.Errorf("%s: %s", n, msg(res[n]))
		}
	}
	// Only the CRD and the namespaces were created; the rest was a dry-run.
	if _, err := env.Client.CoreV1().Services("vt-badservice").Get(ctx, "bad", metav1.GetOptions{}); err == nil {
		t.Error("the dry-run created a Service")
	}
	if _, err := env.Client.CoreV1().Namespaces().Get(ctx, "vt-user", metav1.GetOptions{}); err != nil {
		t.Errorf("namespace vt-user: %v", err)
	}

	controlPlaneNodes(t, ctx, env, 3)
	res = run()
	if r := res["ovnlike"]; !r.OK() {
		t.Errorf("ovnlike with control-plane Nodes: %s", msg(r))
	}
}

// Acceptance (not part of the project's own tests): with
// DODAI_ACCEPT_CHARTS pointing at a directory of the real upstream charts
// (one Helm repository, index.yaml at its root), the full bundle verifies
// against the real kube-apiserver: every chart renders with the catalog's
// values, nothing collides, and every object passes the server-side
// dry-run. The exact command and result are in docs/platform.md.
func TestVerifyAcceptance(t *testing.T) {
	charts := os.Getenv("DODAI_ACCEPT_CHARTS")
	if charts == "" {
		t.Skip("DODAI_ACCEPT_CHARTS is unset (a directory of the upstream charts)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	env := kubetest.StartT(t, kubetest.Options{})
	controlPlaneNodes(t, ctx, env, 3)
	dir := filepath.Join(t.TempDir(), "cluster")
	writeCluster(t, ctx, dir, "    bundle: full\n")
	out, errOut, code := dodai(t, ctx, "-C", dir, "platform", "verify", "--charts", charts, "--kubeconfig", env.Kubeconfig)
	t.Logf("dodai platform verify --charts %s --kubeconfig KUBECONFIG (exit %d):\n%s%s", charts, code, out, errOut)
	if code != 0 {
		t.Errorf("verify failed (exit %d)", code)
	}
	if !strings.Contains(out, "24 releases, 0 failed") || !strings.Contains(out, "server-side dry-run: yes") {
		t.Errorf("unexpected summary:\n%s", out)
	}
}
