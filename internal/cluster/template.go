package cluster

import (
	"bytes"
	"embed"
	"fmt"
	"text/template"

	"github.com/dodai-dev/dodai/internal/talos/compat"
)

//go:embed templates/*.yaml
var templates embed.FS

// TemplateParams fill the cluster file templates.
type TemplateParams struct {
	Name     string
	Endpoint string
	// TalosVersion defaults to the release new clusters get
	// (DefaultTalosVersion), KubernetesVersion to that Talos' default.
	TalosVersion      string
	KubernetesVersion string
}

// Template renders the commented starter cluster.yaml (example=false) or
// the complete 3 control-plane + 2 worker example (example=true).
func Template(example bool, p TemplateParams) ([]byte, error) {
	name := "templates/init.yaml"
	if example {
		name = "templates/example.yaml"
	}
	t, err := template.ParseFS(templates, name)
	if err != nil {
		return nil, fmt.Errorf("loading template: %w", err)
	}
	if p.TalosVersion == "" {
		p.TalosVersion = DefaultTalosVersion
	}
	if p.KubernetesVersion == "" {
		p.KubernetesVersion = compat.DefaultKubernetesFor(p.TalosVersion)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, p); err != nil {
		return nil, fmt.Errorf("rendering template: %w", err)
	}
	return b.Bytes(), nil
}
