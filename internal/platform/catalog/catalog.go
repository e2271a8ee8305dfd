// Package catalog holds dodai's embedded platform catalog: the system
// components (name, namespace, release name, chart source and pinned version,
// default values, dependencies) and the bundles that pick a set of them.
package catalog

import (
	_ "embed"
	"fmt"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

//go:embed catalog.yaml
var catalogYAML []byte

// DodaiChartsURL is the Git repository Flux reads dodai's own charts from
// (charts/ in this repository).
const DodaiChartsURL = "https://github.com/dodai-dev/dodai"

// DodaiChartsRef is the Git branch of DodaiChartsURL used for dodai's charts.
const DodaiChartsRef = "main"

// DodaiChartVersion is the version of every chart in charts/.
const DodaiChartVersion = "0.1.0"

// Catalog is the whole embedded catalog.
type Catalog struct {
	// Repos maps a repository name to its URL (https:// Helm repository or
	// oci:// registry prefix).
	Repos map[string]Repo `yaml:"repos"`
	// Components in catalog order.
	Components []Component `yaml:"components"`
	// Bundles map a bundle name to the components it enables.
	Bundles map[string][]string `yaml:"bundles"`
}

// Repo is an upstream chart repository.
type Repo struct {
	URL string `yaml:"url"`
}

// OCI reports whether the repository is an OCI registry.
func (r Repo) OCI() bool { return strings.HasPrefix(r.URL, "oci://") }

// Component is one system component delivered as a HelmRelease.
type Component struct {
	Name      string `yaml:"name"`
	Namespace string `yaml:"namespace"`
	// ReleaseName defaults to Name.
	ReleaseName string `yaml:"releaseName,omitempty"`
	// Privileged namespaces get Pod Security "privileged" labels.
	Privileged bool `yaml:"privileged,omitempty"`
	// CNI components are pre-installed with the Helm SDK before Flux runs.
	CNI    bool           `yaml:"cni,omitempty"`
	Source Source         `yaml:"source"`
	Values map[string]any `yaml:"values,omitempty"`
	// ValuesWith maps another component's name to values merged over Values
	// when that component is enabled too (e.g. cilium chained with kubeovn).
	ValuesWith map[string]map[string]any `yaml:"valuesWith,omitempty"`
	// Namespaces the chart writes into besides its release namespace
	// (hard-coded by the chart); dodai creates them like release namespaces.
	Namespaces []string `yaml:"namespaces,omitempty"`
	// DependsOn names other components.
	DependsOn []string `yaml:"dependsOn,omitempty"`
}

// Source says where a component's chart comes from: Repo+Chart+Version, or
// Dodai naming a chart in charts/.
type Source struct {
	Repo    string `yaml:"repo,omitempty"`
	Chart   string `yaml:"chart,omitempty"`
	Version string `yaml:"version,omitempty"`
	Dodai   string `yaml:"dodai,omitempty"`
}

// Load parses the embedded catalog and checks its internal consistency.
func Load() (*Catalog, error) {
	return Parse(catalogYAML)
}

// Parse parses a catalog document (Load uses the embedded one).
func Parse(b []byte) (*Catalog, error) {
	var c Catalog
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("parsing platform catalog: %w", err)
	}
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("platform catalog: %w", err)
	}
	return &c, nil
}

func (c *Catalog) check() error {
	seen := map[string]bool{}
	for i := range c.Components {
		comp := &c.Components[i]
		if comp.Name == "" || comp.Namespace == "" {
			return fmt.Errorf("component #%d needs a name and a namespace", i)
		}
		if seen[comp.Name] {
			return fmt.Errorf("component %q listed twice", comp.Name)
		}
		seen[comp.Name] = true
		if comp.ReleaseName == "" {
			comp.ReleaseName = comp.Name
		}
		s := comp.Source
		switch {
		case s.Dodai != "" && s.Repo == "" && s.Chart == "" && s.Version == "":
		case s.Dodai == "" && s.Repo != "" && s.Chart != "" && s.Version != "":
			if _, ok := c.Repos[s.Repo]; !ok {
				return fmt.Errorf("component %q: unknown repo %q", comp.Name, s.Repo)
			}
		default:
			return fmt.Errorf("component %q: source needs either dodai or repo+chart+version", comp.Name)
		}
	}
	for _, comp := range c.Components {
		for _, d := range comp.DependsOn {
			if !seen[d] {
				return fmt.Errorf("component %q depends on unknown %q", comp.Name, d)
			}
		}
		for w := range comp.ValuesWith {
			if !seen[w] {
				return fmt.Errorf("component %q: valuesWith names unknown %q", comp.Name, w)
			}
		}
	}
	for b, names := range c.Bundles {
		for _, n := range names {
			if !seen[n] {
				return fmt.Errorf("bundle %q lists unknown component %q", b, n)
			}
		}
	}
	return nil
}

// Component returns the named component.
func (c *Catalog) Component(name string) (Component, bool) {
	for _, comp := range c.Components {
		if comp.Name == name {
			return comp, true
		}
	}
	return Component{}, false
}

// BundleNames returns the bundle names, sorted.
func (c *Catalog) BundleNames() []string {
	var n []string
	for b := range c.Bundles {
		n = append(n, b)
	}
	sort.Strings(n)
	return n
}

// InBundle reports whether the bundle enables the component by default.
func (c *Catalog) InBundle(bundle, name string) bool {
	for _, n := range c.Bundles[bundle] {
		if n == name {
			return true
		}
	}
	return false
}
