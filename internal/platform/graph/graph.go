// Package graph turns the platform catalog plus the cluster file's
// spec.platform into the validated set of releases to deliver: bundle
// selection, enable/disable overrides, user components, value merging,
// mirrors, and checks for unknown or disabled dependencies, cycles and
// duplicate Helm releases. Nothing here touches a cluster.
package graph

import (
	"fmt"
	"net/url"
	"sort"
	"strings"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/platform/catalog"
)

// Release is one resolved component: what becomes a HelmRelease.
type Release struct {
	// Name is the component (and HelmRelease object) name.
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	// ReleaseName is the Helm release name.
	ReleaseName string `json:"releaseName"`
	Privileged  bool   `json:"privileged,omitempty"`
	// CNI releases are pre-installed with the Helm SDK.
	CNI bool `json:"cni,omitempty"`
	// Source of the chart.
	Source Source `json:"source"`
	// Values are the catalog defaults with the user's overrides merged in.
	Values map[string]any `json:"values,omitempty"`
	// DependsOn names enabled releases (edges to components the bundle
	// leaves out are dropped).
	DependsOn []string `json:"dependsOn,omitempty"`
	// Namespaces the chart writes into besides Namespace (created by dodai).
	Namespaces []string `json:"namespaces,omitempty"`
	// Extra marks a user-defined component.
	Extra bool `json:"extra,omitempty"`
}

// Source kinds.
const (
	// SourceHelm is an https:// Helm repository.
	SourceHelm = "helm"
	// SourceOCI is an oci:// registry prefix (HelmRepository type oci).
	SourceOCI = "oci"
	// SourceGit is a chart path in a Git repository (dodai's own charts).
	SourceGit = "git"
)

// Source locates a release's chart after mirrors are applied.
type Source struct {
	Kind string `json:"kind"`
	// RepoName names the Flux source object (shared by releases of one repo).
	RepoName string `json:"repoName"`
	// URL of the Helm repository, OCI prefix or Git repository.
	URL string `json:"url"`
	// Chart is the chart name (Helm/OCI) or path in the Git repository.
	Chart   string `json:"chart"`
	Version string `json:"version"`
	// GitRef is the branch for Git sources.
	GitRef string `json:"gitRef,omitempty"`
}

// Graph is the validated release set, in catalog order then user order.
type Graph struct {
	Bundle   string    `json:"bundle"`
	Releases []Release `json:"releases"`
	// Dropped lists dependency edges removed because of dropDependents.
	Dropped []string `json:"dropped,omitempty"`
}

// Error is one validation failure at a cluster-file path.
type Error struct {
	Path string
	Msg  string
}

func (e Error) String() string { return e.Path + ": " + e.Msg }

// Errors are all validation failures found.
type Errors []Error

func (es Errors) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "invalid platform (%d problem(s)):", len(es))
	for _, e := range es {
		b.WriteString("\n  " + e.String())
	}
	return b.String()
}

// Release returns the named release.
func (g *Graph) Release(name string) (*Release, bool) {
	for i := range g.Releases {
		if g.Releases[i].Name == name {
			return &g.Releases[i], true
		}
	}
	return nil, false
}

// Resolve builds and validates the release graph for spec.platform.
func Resolve(cat *catalog.Catalog, p cluster.Platform) (*Graph, error) {
	var errs Errors
	add := func(path, f string, a ...any) { errs = append(errs, Error{Path: path, Msg: fmt.Sprintf(f, a...)}) }
	bundle := p.Bundle
	if bundle == "" {
		bundle = cluster.DefaultBundle
	}
	if _, ok := cat.Bundles[bundle]; !ok {
		add("spec.platform.bundle", "unknown bundle %q (known: %s)", bundle, strings.Join(cat.BundleNames(), ", "))
		return nil, errs
	}
	g := &Graph{Bundle: bundle}

	known := map[string]bool{}
	for _, c := range cat.Components {
		known[c.Name] = true
	}
	for _, name := range sortedKeys(p.Components) {
		if !known[name] {
			add("spec.platform.components."+name, "unknown component (known: %s)", strings.Join(componentNames(cat), ", "))
		}
	}
	enabled := map[string]bool{}
	userDisabled := map[string]bool{}
	for _, c := range cat.Components {
		on := cat.InBundle(bundle, c.Name)
		if o, ok := p.Components[c.Name]; ok && o.Enabled != nil {
			on = *o.Enabled
			userDisabled[c.Name] = !on
		}
		enabled[c.Name] = on
	}
	for i, e := range p.Extra {
		if known[e.Name] {
			add(fmt.Sprintf("spec.platform.extra[%d].name", i), "%q is already a catalog component (use spec.platform.components.%s to change it)", e.Name, e.Name)
			continue
		}
		if enabled[e.Name] {
			add(fmt.Sprintf("spec.platform.extra[%d].name", i), "%q is listed twice", e.Name)
			continue
		}
		enabled[e.Name] = true
	}

	for _, c := range cat.Components {
		if !enabled[c.Name] {
			continue
		}
		path := "spec.platform.components." + c.Name
		o := p.Components[c.Name]
		r := Release{Name: c.Name, Namespace: c.Namespace, ReleaseName: c.ReleaseName, Privileged: c.Privileged, CNI: c.CNI,
			Namespaces: append([]string(nil), c.Namespaces...)}
		if c.Source.Dodai != "" {
			if o.Version != "" {
				add(path+".version", "%s is one of dodai's own charts; its version follows dodai", c.Name)
			}
			r.Source = Source{Kind: SourceGit, RepoName: "dodai-charts", URL: catalog.DodaiChartsURL, Chart: "./charts/" + c.Source.Dodai,
				Version: catalog.DodaiChartVersion, GitRef: catalog.DodaiChartsRef}
		} else {
			repo := cat.Repos[c.Source.Repo]
			kind := SourceHelm
			if repo.OCI() {
				kind = SourceOCI
			}
			r.Source = Source{Kind: kind, RepoName: c.Source.Repo, URL: repo.URL, Chart: c.Source.Chart, Version: c.Source.Version}
			if o.Version != "" {
				r.Source.Version = o.Version
			}
		}
		vals := c.Values
		for _, w := range sortedKeys(c.ValuesWith) {
			if enabled[w] {
				vals = MergeValues(vals, c.ValuesWith[w])
			}
		}
		r.Values = MergeValues(vals, o.Values)
		for _, d := range c.DependsOn {
			switch {
			case enabled[d]:
				r.DependsOn = append(r.DependsOn, d)
			case userDisabled[d] && p.DropDependents:
				g.Dropped = append(g.Dropped, c.Name+" -> "+d)
			case userDisabled[d]:
				add(path, "depends on %q, which spec.platform.components.%s.enabled disables (enable it, disable %s too, or set spec.platform.dropDependents: true)", d, d, c.Name)
			default:
				// Left out by the bundle: the bundle's own decision (e.g. no
				// kube-ovn in distro); the redundant CNI edges exist for this.
			}
		}
		g.Releases = append(g.Releases, r)
	}
	for i, e := range p.Extra {
		if known[e.Name] {
			continue
		}
		path := fmt.Sprintf("spec.platform.extra[%d]", i)
		rn := e.ReleaseName
		if rn == "" {
			rn = e.Name
		}
		r := Release{Name: e.Name, Namespace: e.Namespace, ReleaseName: rn, Privileged: e.Privileged, Extra: true,
			Values: MergeValues(nil, e.Values)}
		kind := SourceHelm
		if strings.HasPrefix(e.Repo, "oci://") {
			kind = SourceOCI
		}
		r.Source = Source{Kind: kind, RepoName: repoName(e.Repo), URL: strings.TrimSuffix(e.Repo, "/"), Chart: e.Chart, Version: e.Version}
		for _, d := range e.DependsOn {
			switch {
			case enabled[d]:
				r.DependsOn = append(r.DependsOn, d)
			case !known[d] && !isExtra(p, d):
				add(path+".dependsOn", "unknown component %q", d)
			case p.DropDependents:
				g.Dropped = append(g.Dropped, e.Name+" -> "+d)
			default:
				add(path+".dependsOn", "depends on %q, which is not enabled in bundle %q (enable it or set spec.platform.dropDependents: true)", d, bundle)
			}
		}
		g.Releases = append(g.Releases, r)
	}

	// Duplicate Helm releases: one release name per namespace.
	seen := map[string]string{}
	for _, r := range g.Releases {
		key := r.Namespace + "/" + r.ReleaseName
		if other, ok := seen[key]; ok {
			add("spec.platform", "components %q and %q both install Helm release %q in namespace %q", other, r.Name, r.ReleaseName, r.Namespace)
		}
		seen[key] = r.Name
		if len(r.ReleaseName) > 53 {
			add("spec.platform", "component %q: release name %q is longer than 53 characters", r.Name, r.ReleaseName)
		}
	}
	if cyc := g.Cycle(); cyc != nil {
		add("spec.platform", "dependency cycle: %s", strings.Join(cyc, " -> "))
	}
	if err := applyMirror(g, p.Mirror); err != nil {
		add("spec.platform.mirror", "%v", err)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return g, nil
}

func isExtra(p cluster.Platform, name string) bool {
	for _, e := range p.Extra {
		if e.Name == name {
			return true
		}
	}
	return false
}

// repoName derives a Flux source name from a repository URL.
func repoName(u string) string {
	pu, err := url.Parse(u)
	s := u
	if err == nil {
		s = pu.Host + pu.Path
	}
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else if b.Len() > 0 && !strings.HasSuffix(b.String(), "-") {
			b.WriteByte('-')
		}
	}
	n := strings.Trim(b.String(), "-")
	if len(n) > 50 {
		n = strings.Trim(n[:50], "-")
	}
	return "extra-" + n
}

// applyMirror points every source at the mirror: Helm serves every chart
// (including dodai's own, packaged), OCI is a registry prefix serving every
// chart. With both, https and dodai charts come from Helm, OCI ones from OCI.
func applyMirror(g *Graph, m *cluster.Mirror) error {
	if m == nil || (m.Helm == "" && m.OCI == "" && m.Git == "") {
		return nil
	}
	if m.Helm != "" {
		if u, err := url.Parse(m.Helm); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("helm: %q is not an http(s):// URL", m.Helm)
		}
	}
	if m.OCI != "" {
		if u, err := url.Parse(m.OCI); err != nil || u.Scheme != "oci" || u.Host == "" {
			return fmt.Errorf("oci: %q is not an oci:// URL", m.OCI)
		}
	}
	if m.Git != "" {
		if u, err := url.Parse(m.Git); err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "ssh") || u.Host == "" {
			return fmt.Errorf("git: %q is not an http(s):// or ssh:// URL", m.Git)
		}
	}
	for i := range g.Releases {
		s := &g.Releases[i].Source
		target := ""
		switch s.Kind {
		case SourceOCI:
			target = firstNonEmpty(m.OCI, m.Helm)
		case SourceHelm:
			target = firstNonEmpty(m.Helm, m.OCI)
		case SourceGit:
			if m.Git != "" {
				s.URL = m.Git
				continue
			}
			target = firstNonEmpty(m.Helm, m.OCI)
			if target != "" {
				s.Chart = strings.TrimPrefix(s.Chart, "./charts/")
			}
		}
		if target == "" {
			continue
		}
		s.URL = strings.TrimSuffix(target, "/")
		if strings.HasPrefix(target, "oci://") {
			s.Kind, s.RepoName = SourceOCI, "mirror-oci"
		} else {
			s.Kind, s.RepoName = SourceHelm, "mirror"
		}
	}
	return nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

func sortedKeys[V any](m map[string]V) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	sort.Strings(k)
	return k
}

func componentNames(cat *catalog.Catalog) []string {
	var n []string
	for _, c := range cat.Components {
		n = append(n, c.Name)
	}
	sort.Strings(n)
	return n
}

// Cycle returns one dependency cycle as a closed path (a, b, ..., a), or nil.
func (g *Graph) Cycle() []string {
	const (
		white = iota
		grey
		black
	)
	color := map[string]int{}
	deps := map[string][]string{}
	for _, r := range g.Releases {
		deps[r.Name] = r.DependsOn
	}
	var stack []string
	var found []string
	var visit func(n string) bool
	visit = func(n string) bool {
		color[n] = grey
		stack = append(stack, n)
		for _, d := range deps[n] {
			if _, ok := deps[d]; !ok {
				continue
			}
			switch color[d] {
			case grey:
				for i, s := range stack {
					if s == d {
						found = append(append([]string{}, stack[i:]...), d)
						return true
					}
				}
			case white:
				if visit(d) {
					return true
				}
			}
		}
		stack = stack[:len(stack)-1]
		color[n] = black
		return false
	}
	for _, r := range g.Releases {
		if color[r.Name] == white && visit(r.Name) {
			return found
		}
	}
	return nil
}

// Layers groups releases by the longest dependency path from a root (layer
// 0 has no dependencies). The graph must be acyclic.
func (g *Graph) Layers() [][]string {
	layer := map[string]int{}
	var depth func(n string) int
	depth = func(n string) int {
		if l, ok := layer[n]; ok {
			return l
		}
		r, _ := g.Release(n)
		l := 0
		for _, d := range r.DependsOn {
			if dl := depth(d) + 1; dl > l {
				l = dl
			}
		}
		layer[n] = l
		return l
	}
	var out [][]string
	for _, r := range g.Releases {
		l := depth(r.Name)
		for len(out) <= l {
			out = append(out, nil)
		}
		out[l] = append(out[l], r.Name)
	}
	return out
}
