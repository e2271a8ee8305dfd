package graph

import (
	"reflect"
	"strings"
	"testing"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/platform/catalog"
)

func load(t *testing.T) *catalog.Catalog {
	t.Helper()
	c, err := catalog.Load()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func off() *bool { b := false; return &b }
func on() *bool  { b := true; return &b }

func extra(name string, deps ...string) cluster.ExtraComponent {
	return cluster.ExtraComponent{Name: name, Namespace: "ns-" + name, Repo: "https://charts.example.com", Chart: name, Version: "1.0.0", DependsOn: deps}
}

func TestValidationErrors(t *testing.T) {
	cat := load(t)
	cases := []struct {
		name string
		p    cluster.Platform
		want []string // substrings of the error, all must appear
	}{
		{"unknown bundle", cluster.Platform{Bundle: "tiny"}, []string{`spec.platform.bundle: unknown bundle "tiny" (known: distro, full, hosted)`}},
		{"unknown component override", cluster.Platform{Components: map[string]cluster.ComponentOverride{"ciliumm": {Enabled: off()}}},
			[]string{"spec.platform.components.ciliumm: unknown component"}},
		{"dependency on disabled", cluster.Platform{Components: map[string]cluster.ComponentOverride{"cert-manager": {Enabled: off()}}},
			[]string{`spec.platform.components.cert-manager-issuers: depends on "cert-manager", which spec.platform.components.cert-manager.enabled disables`,
				`spec.platform.components.kamaji: depends on "cert-manager"`}},
		{"extra unknown dep", cluster.Platform{Extra: []cluster.ExtraComponent{extra("app", "nosuch")}},
			[]string{`spec.platform.extra[0].dependsOn: unknown component "nosuch"`}},
		{"extra dep not in bundle", cluster.Platform{Bundle: "hosted", Extra: []cluster.ExtraComponent{extra("app", "cilium")}},
			[]string{`spec.platform.extra[0].dependsOn: depends on "cilium", which is not enabled in bundle "hosted"`}},
		{"cycle", cluster.Platform{Extra: []cluster.ExtraComponent{extra("a", "c"), extra("b", "a"), extra("c", "b", "cilium")}},
			[]string{"spec.platform: dependency cycle: a -> c -> b -> a"}},
		{"self cycle", cluster.Platform{Extra: []cluster.ExtraComponent{extra("a", "a")}},
			[]string{"dependency cycle: a -> a"}},
		{"duplicate release", cluster.Platform{Extra: []cluster.ExtraComponent{{Name: "cilium2", Namespace: "cozy-cilium", ReleaseName: "cilium",
			Repo: "https://x.example", Chart: "c", Version: "1"}}},
			[]string{`components "cilium" and "cilium2" both install Helm release "cilium" in namespace "cozy-cilium"`}},
		{"extra shadows catalog", cluster.Platform{Extra: []cluster.ExtraComponent{extra("cilium")}},
			[]string{`spec.platform.extra[0].name: "cilium" is already a catalog component`}},
		{"extra twice", cluster.Platform{Extra: []cluster.ExtraComponent{extra("a"), extra("a")}},
			[]string{`spec.platform.extra[1].name: "a" is listed twice`}},
		{"version on dodai chart", cluster.Platform{Components: map[string]cluster.ComponentOverride{"linstor": {Version: "9.9.9"}}},
			[]string{"spec.platform.components.linstor.version: linstor is one of dodai's own charts"}},
		{"bad mirror", cluster.Platform{Mirror: &cluster.Mirror{Helm: "ftp://x"}}, []string{`spec.platform.mirror: helm: "ftp://x" is not an http(s):// URL`}},
		{"bad oci mirror", cluster.Platform{Mirror: &cluster.Mirror{OCI: "https://x"}}, []string{`oci: "https://x" is not an oci:// URL`}},
		{"long release name", cluster.Platform{Extra: []cluster.ExtraComponent{{Name: "x", Namespace: "n", ReleaseName: strings.Repeat("r", 54),
			Repo: "https://x.example", Chart: "c", Version: "1"}}}, []string{"longer than 53 characters"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Resolve(cat, tc.p)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n%v\ndoes not contain\n%s", err, w)
				}
			}
		})
	}
}

func TestBundlesResolve(t *testing.T) {
	cat := load(t)
	for bundle, n := range map[string]int{"full": 24, "distro": 23, "hosted": 13} {
		g, err := Resolve(cat, cluster.Platform{Bundle: bundle})
		if err != nil {
			t.Fatalf("%s: %v", bundle, err)
		}
		if len(g.Releases) != n {
			t.Errorf("%s: %d releases, want %d", bundle, len(g.Releases), n)
		}
		for _, r := range g.Releases {
			for _, d := range r.DependsOn {
				if _, ok := g.Release(d); !ok {
					t.Errorf("%s: %s depends on absent %s", bundle, r.Name, d)
				}
			}
		}
	}
	// The article's layers (reference §2), except kamaji: its etcd needs the
	// default StorageClass that linstor creates, so it waits for linstor.
	g, _ := Resolve(cat, cluster.Platform{})
	layers := g.Layers()
	want := [][]string{{"cilium"}, {"kubeovn"},
		{"cert-manager", "fluxcd", "dashboard", "grafana-operator", "kubevirt-operator", "kubevirt-cdi-operator", "metallb", "rabbitmq-operator", "redis-operator", "telepresence"},
		{"cert-manager-issuers", "victoria-metrics-operator", "postgres-operator", "piraeus-operator", "capi-operator", "kubevirt", "kubevirt-cdi"},
		{"monitoring", "mariadb-operator", "linstor", "capi-providers"},
		{"kamaji"}}
	if len(layers) != len(want) {
		t.Errorf("%d layers, want %d", len(layers), len(want))
	}
	for i := range want {
		got := append([]string(nil), layers[i]...)
		if !sameSet(got, want[i]) {
			t.Errorf("layer %d = %v, want %v", i, got, want[i])
		}
	}
	// distro: kube-ovn left out by the bundle, so its edges are dropped and
	// cert-manager sits right above cilium.
	d, _ := Resolve(cat, cluster.Platform{Bundle: "distro"})
	cm, _ := d.Release("cert-manager")
	if !reflect.DeepEqual(cm.DependsOn, []string{"cilium"}) {
		t.Errorf("distro cert-manager deps %v", cm.DependsOn)
	}
	h, _ := Resolve(cat, cluster.Platform{Bundle: "hosted"})
	cm, _ = h.Release("cert-manager")
	if len(cm.DependsOn) != 0 {
		t.Errorf("hosted cert-manager deps %v", cm.DependsOn)
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, x := range a {
		m[x]++
	}
	for _, x := range b {
		m[x]--
	}
	for _, v := range m {
		if v != 0 {
			return false
		}
	}
	return true
}

func TestOverridesAndDropDependents(t *testing.T) {
	cat := load(t)
	p := cluster.Platform{
		Bundle:         "hosted",
		DropDependents: true,
		Components: map[string]cluster.ComponentOverride{
			"cert-manager": {Enabled: off()},
			"metallb":      {Enabled: on(), Version: "0.15.0", Values: map[string]any{"speaker": map[string]any{"enabled": false}}},
		},
		Extra: []cluster.ExtraComponent{extra("app", "cert-manager-issuers", "cert-manager")},
	}
	g, err := Resolve(cat, p)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := g.Release("cert-manager"); ok {
		t.Error("cert-manager still enabled")
	}
	iss, _ := g.Release("cert-manager-issuers")
	if len(iss.DependsOn) != 0 {
		t.Errorf("issuers deps %v", iss.DependsOn)
	}
	app, _ := g.Release("app")
	if !reflect.DeepEqual(app.DependsOn, []string{"cert-manager-issuers"}) || !app.Extra || app.Source.RepoName != "extra-charts-example-com" {
		t.Errorf("app = %+v", app)
	}
	mlb, ok := g.Release("metallb")
	if !ok || mlb.Source.Version != "0.15.0" || mlb.Values["speaker"].(map[string]any)["enabled"] != false {
		t.Errorf("metallb = %+v", mlb)
	}
	wantDropped := []string{"cert-manager-issuers -> cert-manager", "kamaji -> cert-manager", "mariadb-operator -> cert-manager",
		"postgres-operator -> cert-manager", "victoria-metrics-operator -> cert-manager", "app -> cert-manager"}
	if !sameSet(g.Dropped, wantDropped) {
		t.Errorf("dropped %v", g.Dropped)
	}
}

func TestMergeValues(t *testing.T) {
	base := map[string]any{"a": 1, "m": map[string]any{"x": 1, "y": map[string]any{"deep": true}}, "l": []any{1, 2}, "gone": "x"}
	over := map[string]any{"m": map[string]any{"y": map[string]any{"more": 2}, "z": 3}, "l": []any{9}, "gone": nil, "new": "n"}
	got := MergeValues(base, over)
	want := map[string]any{"a": 1, "m": map[string]any{"x": 1, "y": map[string]any{"deep": true, "more": 2}, "z": 3}, "l": []any{9}, "new": "n"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
	// Inputs untouched, output unshared.
	if _, ok := base["m"].(map[string]any)["z"]; ok {
		t.Error("base modified")
	}
	got["m"].(map[string]any)["x"] = 42
	if base["m"].(map[string]any)["x"] != 1 {
		t.Error("result shares maps with base")
	}
	if MergeValues(nil, nil) != nil {
		t.Error("empty merge should be nil")
	}
	// A map replaces a scalar and vice versa.
	got = MergeValues(map[string]any{"k": 1, "j": map[string]any{"a": 1}}, map[string]any{"k": map[string]any{"b": 2}, "j": "s"})
	if !reflect.DeepEqual(got, map[string]any{"k": map[string]any{"b": 2}, "j": "s"}) {
		t.Errorf("replace: %v", got)
	}
}

func TestMirrors(t *testing.T) {
	cat := load(t)
	cases := []struct {
		name   string
		m      cluster.Mirror
		check  string // component
		kind   string
		url    string
		chart  string
		repoNm string
	}{
		{"helm mirror rewrites https", cluster.Mirror{Helm: "https://mirror.local/charts/"}, "cilium", SourceHelm, "https://mirror.local/charts", "cilium", "mirror"},
		{"helm mirror rewrites oci", cluster.Mirror{Helm: "https://mirror.local/charts"}, "rabbitmq-operator", SourceHelm, "https://mirror.local/charts", "rabbitmq-cluster-operator", "mirror"},
		{"helm mirror serves dodai charts", cluster.Mirror{Helm: "https://mirror.local/charts"}, "linstor", SourceHelm, "https://mirror.local/charts", "linstor", "mirror"},
		{"oci mirror only", cluster.Mirror{OCI: "oci://reg.local/charts"}, "cilium", SourceOCI, "oci://reg.local/charts", "cilium", "mirror-oci"},
		{"both: oci stays oci", cluster.Mirror{Helm: "https://m.local", OCI: "oci://reg.local/c"}, "grafana-operator", SourceOCI, "oci://reg.local/c", "grafana-operator", "mirror-oci"},
		{"both: https to helm", cluster.Mirror{Helm: "https://m.local", OCI: "oci://reg.local/c"}, "metallb", SourceHelm, "https://m.local", "metallb", "mirror"},
		{"git mirror", cluster.Mirror{Git: "https://git.local/dodai.git"}, "kubevirt", SourceGit, "https://git.local/dodai.git", "./charts/kubevirt", "dodai-charts"},
		{"git mirror leaves helm", cluster.Mirror{Git: "https://git.local/dodai.git"}, "cilium", SourceHelm, "https://helm.cilium.io/", "cilium", "cilium"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.m
			g, err := Resolve(cat, cluster.Platform{Mirror: &m})
			if err != nil {
				t.Fatal(err)
			}
			r, _ := g.Release(tc.check)
			s := r.Source
			if s.Kind != tc.kind || s.URL != tc.url || s.Chart != tc.chart || s.RepoName != tc.repoNm {
				t.Errorf("source %+v", s)
			}
		})
	}
}

// Cilium is chained behind kube-ovn only where kube-ovn is enabled (full);
// in distro it is the only CNI and keeps its own CNI config. A user's values
// still win over both.
func TestValuesWithOtherComponent(t *testing.T) {
	cat, err := catalog.Load()
	if err != nil {
		t.Fatal(err)
	}
	chaining := func(p cluster.Platform) any {
		g, err := Resolve(cat, p)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := g.Release("cilium")
		cni, _ := c.Values["cni"].(map[string]any)
		return cni["chainingMode"]
	}
	if got := chaining(cluster.Platform{Bundle: "full"}); got != "generic-veth" {
		t.Errorf("full: chainingMode %v", got)
	}
	if got := chaining(cluster.Platform{Bundle: "distro"}); got != nil {
		t.Errorf("distro: chainingMode %v, want none", got)
	}
	if got := chaining(cluster.Platform{Bundle: "full", DropDependents: true, Components: map[string]cluster.ComponentOverride{"kubeovn": {Enabled: off()}}}); got != nil {
		t.Errorf("kubeovn disabled: chainingMode %v", got)
	}
	user := cluster.Platform{Components: map[string]cluster.ComponentOverride{"cilium": {Values: map[string]any{"cni": map[string]any{"chainingMode": "none"}}}}}
	if got := chaining(user); got != "none" {
		t.Errorf("user override: chainingMode %v", got)
	}
}
