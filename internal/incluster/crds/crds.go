// Package crds installs dodai's CustomResourceDefinitions (the generated
// manifests in charts/dodai/crds, embedded in the binary) with server-side
// apply and waits until the apiserver serves them.
package crds

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"strings"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/dodai-dev/dodai/charts"
	"github.com/dodai-dev/dodai/internal/kubewait"
)

// FieldManager is the server-side apply field manager of the install.
const FieldManager = "dodai"

// dir is where the generated CRDs sit in the charts file system.
const dir = "dodai/crds"

// Load returns the embedded CRDs.
func Load() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	entries, err := fs.ReadDir(charts.FS, dir)
	if err != nil {
		return nil, fmt.Errorf("reading embedded CRDs: %w", err)
	}
	var out []*apiextensionsv1.CustomResourceDefinition
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".yaml") {
			continue
		}
		b, err := fs.ReadFile(charts.FS, path.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.UnmarshalStrict(b, crd); err != nil {
			return nil, fmt.Errorf("embedded CRD %s: %w", e.Name(), err)
		}
		crd.APIVersion, crd.Kind = "apiextensions.k8s.io/v1", "CustomResourceDefinition"
		out = append(out, crd)
	}
	return out, nil
}

// Install applies the CRDs (server-side apply, forced: dodai owns them) and
// waits until each is Established, bounded by ctx.
func Install(ctx context.Context, c client.Client) error {
	list, err := Load()
	if err != nil {
		return err
	}
	for _, crd := range list {
		ac, err := applyConfiguration(crd)
		if err != nil {
			return err
		}
		if err := c.Apply(ctx, ac, client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
			return fmt.Errorf("applying CRD %s: %w", crd.Name, err)
		}
	}
	for _, crd := range list {
		err := kubewait.WaitEstablished(ctx, crd.Name, func(ctx context.Context) (*unstructured.Unstructured, error) {
			u := &unstructured.Unstructured{}
			u.SetGroupVersionKind(apiextensionsv1.SchemeGroupVersion.WithKind("CustomResourceDefinition"))
			return u, c.Get(ctx, client.ObjectKey{Name: crd.Name}, u)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// applyConfiguration is what server-side apply sends for crd: its
// metadata's name and labels, and its spec (no status, no server-set
// metadata).
func applyConfiguration(crd *apiextensionsv1.CustomResourceDefinition) (runtime.ApplyConfiguration, error) {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1",
		"kind":       "CustomResourceDefinition",
	}}
	u.SetName(crd.Name)
	u.SetLabels(crd.Labels)
	u.SetAnnotations(crd.Annotations)
	spec, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&crd.Spec)
	if err != nil {
		return nil, fmt.Errorf("CRD %s: %w", crd.Name, err)
	}
	u.Object["spec"] = spec
	return client.ApplyConfigurationFromUnstructured(u), nil
}
