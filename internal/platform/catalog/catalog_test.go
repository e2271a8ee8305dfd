package catalog

import (
	"strings"
	"testing"
)

// The full bundle is the article's table: 24 HelmReleases with these
// namespaces and the edges of Cozystack's paas-full bundle.
func TestFullBundleIsTheArticleTable(t *testing.T) {
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"cert-manager": "cozy-cert-manager", "cert-manager-issuers": "cozy-cert-manager", "cilium": "cozy-cilium",
		"capi-operator": "cozy-cluster-api", "capi-providers": "cozy-cluster-api", "dashboard": "cozy-dashboard",
		"fluxcd": "cozy-fluxcd", "grafana-operator": "cozy-grafana-operator", "kamaji": "cozy-kamaji",
		"kubeovn": "cozy-kubeovn", "kubevirt-cdi": "cozy-kubevirt-cdi", "kubevirt-cdi-operator": "cozy-kubevirt-cdi",
		"linstor": "cozy-linstor", "piraeus-operator": "cozy-linstor", "mariadb-operator": "cozy-mariadb-operator",
		"metallb": "cozy-metallb", "monitoring": "cozy-monitoring", "postgres-operator": "cozy-postgres-operator",
		"rabbitmq-operator": "cozy-rabbitmq-operator", "redis-operator": "cozy-redis-operator",
		"telepresence": "cozy-telepresence", "victoria-metrics-operator": "cozy-victoria-metrics-operator",
		"kubevirt": "cozy-kubevirt", "kubevirt-operator": "cozy-kubevirt",
	}
	if got := len(c.Bundles["full"]); got != 24 {
		t.Fatalf("full bundle has %d components, want 24", got)
	}
	for _, n := range c.Bundles["full"] {
		comp, ok := c.Component(n)
		if !ok {
			t.Fatalf("missing %s", n)
		}
		if want[n] != comp.Namespace {
			t.Errorf("%s: namespace %q, want %q", n, comp.Namespace, want[n])
		}
	}
	tel, _ := c.Component("telepresence")
	if tel.ReleaseName != "traffic-manager" {
		t.Errorf("telepresence release name %q", tel.ReleaseName)
	}
	for _, n := range c.Bundles["distro"] {
		if n == "kubeovn" {
			t.Error("distro must not contain kubeovn")
		}
	}
	for _, n := range c.Bundles["hosted"] {
		comp, _ := c.Component(n)
		if comp.CNI || strings.Contains(n, "linstor") || strings.Contains(n, "piraeus") || strings.Contains(n, "kubevirt") {
			t.Errorf("hosted must not contain CNI, storage or virtualization, has %s", n)
		}
	}
}

func TestParseRejectsBadCatalogs(t *testing.T) {
	for name, doc := range map[string]string{
		"unknown field":   "components: [{name: a, namespace: n, source: {dodai: a}, bogus: 1}]",
		"duplicate":       "components: [{name: a, namespace: n, source: {dodai: a}}, {name: a, namespace: n, source: {dodai: a}}]",
		"unknown repo":    "components: [{name: a, namespace: n, source: {repo: r, chart: c, version: 1.0.0}}]",
		"half source":     "components: [{name: a, namespace: n, source: {chart: c}}]",
		"unknown dep":     "components: [{name: a, namespace: n, source: {dodai: a}, dependsOn: [b]}]",
		"unknown in bndl": "components: [{name: a, namespace: n, source: {dodai: a}}]\nbundles: {x: [b]}",
		"no namespace":    "components: [{name: a, source: {dodai: a}}]",
	} {
		if _, err := Parse([]byte(doc)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
