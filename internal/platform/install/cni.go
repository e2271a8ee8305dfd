package install

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	helmv2 "github.com/fluxcd/helm-controller/api/v2"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/cli"
	"helm.sh/helm/v3/pkg/registry"
	"helm.sh/helm/v3/pkg/storage/driver"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/dodai-dev/dodai/internal/platform/graph"
)

// PreinstallCNI installs a CNI release directly with the Helm SDK before
// Flux can run pods (Flux needs a CNI only for its own Service/DNS traffic;
// dodai's Flux is on the host network, but the CNI is still the first thing
// every other release needs). It uses the HelmRelease's release name,
// namespace and values, and stamps helm-controller's origin labels, so
// helm-controller adopts the release (it finds an unmanaged release in
// storage and upgrades it in place) instead of failing with "invalid
// ownership metadata". It does nothing when the release already exists.
func PreinstallCNI(ctx context.Context, kubeconfig string, r graph.Release, hr *helmv2.HelmRelease, timeout time.Duration, log *slog.Logger) (installed bool, err error) {
	ns := hr.Namespace
	if hr.Spec.StorageNamespace != "" {
		ns = hr.Spec.StorageNamespace
	}
	releaseName := hr.Spec.ReleaseName
	if releaseName == "" {
		releaseName = hr.Name
	}
	tmp, err := os.MkdirTemp("", "dodai-helm-")
	if err != nil {
		return false, err
	}
	defer os.RemoveAll(tmp)
	settings := cli.New()
	settings.KubeConfig = kubeconfig
	settings.RepositoryConfig = filepath.Join(tmp, "repositories.yaml")
	settings.RepositoryCache = filepath.Join(tmp, "cache")
	settings.RegistryConfig = filepath.Join(tmp, "registry.json")
	cfg := new(action.Configuration)
	if err := cfg.Init(settings.RESTClientGetter(), ns, "secret", func(f string, a ...any) {
		log.Debug("helm: " + fmt.Sprintf(f, a...))
	}); err != nil {
		return false, fmt.Errorf("initialising Helm for %s/%s: %w", ns, releaseName, err)
	}
	if _, err := action.NewHistory(cfg).Run(releaseName); err == nil {
		return false, nil // exists: Flux owns it from here
	} else if !errors.Is(err, driver.ErrReleaseNotFound) {
		return false, fmt.Errorf("reading Helm history of %s/%s: %w", ns, releaseName, err)
	}

	inst := action.NewInstall(cfg)
	inst.ReleaseName = releaseName
	inst.Namespace = hr.Namespace
	inst.Timeout = timeout
	inst.Version = r.Source.Version
	rc, err := registry.NewClient(registry.ClientOptCredentialsFile(settings.RegistryConfig), registry.ClientOptWriter(io.Discard))
	if err != nil {
		return false, fmt.Errorf("creating OCI registry client: %w", err)
	}
	inst.SetRegistryClient(rc)
	chartRef := r.Source.Chart
	switch r.Source.Kind {
	case graph.SourceOCI:
		chartRef = strings.TrimSuffix(r.Source.URL, "/") + "/" + r.Source.Chart
	case graph.SourceHelm:
		inst.RepoURL = r.Source.URL
	default:
		return false, fmt.Errorf("pre-installing %s: chart source %q is not a Helm repository", r.Name, r.Source.Kind)
	}
	path, err := inst.LocateChart(chartRef, settings)
	if err != nil {
		return false, fmt.Errorf("fetching chart %s %s from %s: %w", r.Source.Chart, r.Source.Version, r.Source.URL, err)
	}
	ch, err := loader.Load(path)
	if err != nil {
		return false, fmt.Errorf("loading chart %s: %w", path, err)
	}
	vals := map[string]any{}
	if hr.Spec.Values != nil {
		if err := json.Unmarshal(hr.Spec.Values.Raw, &vals); err != nil {
			return false, fmt.Errorf("decoding values of %s: %w", hr.Name, err)
		}
	}
	inst.PostRenderer = originLabels{labels: map[string]string{
		helmv2.GroupVersion.Group + "/name":      hr.Name,
		helmv2.GroupVersion.Group + "/namespace": hr.Namespace,
	}}
	if _, err := inst.RunWithContext(ctx, ch, vals); err != nil {
		return false, fmt.Errorf("installing %s/%s with Helm: %w", ns, releaseName, err)
	}
	log.Info("pre-installed CNI with Helm", "release", ns+"/"+releaseName, "chart", ch.Name()+"@"+ch.Metadata.Version)
	return true, nil
}

// originLabels is a Helm post-renderer adding labels to every object, the
// same ones helm-controller's own post-renderer adds.
type originLabels struct{ labels map[string]string }

func (o originLabels) Run(in *bytes.Buffer) (*bytes.Buffer, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(in.Bytes()), 4096)
	var out bytes.Buffer
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("post-rendering: %w", err)
		}
		if len(m) == 0 {
			continue
		}
		md, _ := m["metadata"].(map[string]any)
		if md == nil {
			md = map[string]any{}
			m["metadata"] = md
		}
		l, _ := md["labels"].(map[string]any)
		if l == nil {
			l = map[string]any{}
		}
		for k, v := range o.labels {
			l[k] = v
		}
		md["labels"] = l
		b, err := yaml.Marshal(m)
		if err != nil {
			return nil, err
		}
		out.WriteString("---\n")
		out.Write(b)
	}
	return &out, nil
}
