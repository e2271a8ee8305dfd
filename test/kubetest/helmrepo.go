package kubetest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// ChartSpec describes a small test chart that needs no controllers (there is
// no kubelet): by default one ConfigMap named "<release>-<chart>" in the
// release namespace whose data records the chart, its version and the
// render time ("renderedAt", RFC 3339 with microseconds), so tests can check
// install order.
type ChartSpec struct {
	// Version is the chart version (default "0.1.0").
	Version string
	// AppVersion is the chart's appVersion (default "1.0").
	AppVersion string
	// Data is added to the default ConfigMap's data.
	Data map[string]string
	// Values is the chart's values.yaml. Values under the key "data" (a
	// string map) are added to the ConfigMap, so HelmRelease values show up
	// in the cluster.
	Values string
	// Templates are extra files under templates/ (name → content).
	Templates map[string]string
	// CRDs are files under crds/ (name → content), which Helm installs
	// before the templates.
	CRDs map[string]string
	// Fail makes rendering fail with this message (a template calling
	// `fail`), like a broken chart.
	Fail string
	// InvalidYAML adds a template that renders invalid YAML, which Helm
	// rejects when parsing the manifest.
	InvalidYAML bool
}

// configMapTemplate is the chart's default template.
const configMapTemplate = `apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-{{ .Chart.Name }}
  namespace: {{ .Release.Namespace }}
  labels:
    app.kubernetes.io/name: {{ .Chart.Name }}
    app.kubernetes.io/instance: {{ .Release.Name }}
data:
  chart: {{ .Chart.Name | quote }}
  version: {{ .Chart.Version | quote }}
  renderedAt: {{ now | date "2006-01-02T15:04:05.000000Z07:00" | quote }}
  {{- range $k, $v := .Values.data }}
  {{ $k }}: {{ $v | quote }}
  {{- end }}
`

// HelmRepo is a Helm chart repository served over HTTP on 127.0.0.1.
type HelmRepo struct {
	dir string
	url string
	srv *http.Server

	mu     sync.Mutex
	charts map[string]map[string]indexEntry // name -> version -> entry
}

// URL returns the repository URL (http://127.0.0.1:<port>), for a
// HelmRepository's spec.url.
func (r *HelmRepo) URL() string { return r.url }

// ServeHelmRepo packages charts (name → spec) into a Helm repository served
// on 127.0.0.1 until the test ends and returns its URL.
func ServeHelmRepo(t testing.TB, charts map[string]ChartSpec) string {
	t.Helper()
	r := NewHelmRepo(t)
	names := make([]string, 0, len(charts))
	for n := range charts {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := r.Add(n, charts[n]); err != nil {
			t.Fatalf("adding chart %s to the test Helm repository: %v", n, err)
		}
	}
	return r.URL()
}

// NewHelmRepo starts an empty Helm repository on 127.0.0.1, stopped and
// removed when the test ends. Add charts (or new versions) with Add.
func NewHelmRepo(t testing.TB) *HelmRepo {
	t.Helper()
	r, err := newHelmRepo(t.TempDir())
	if err != nil {
		t.Fatalf("starting test Helm repository: %v", err)
	}
	t.Cleanup(func() { r.srv.Close() })
	return r
}

func newHelmRepo(dir string) (*HelmRepo, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening on 127.0.0.1: %w", err)
	}
	r := &HelmRepo{
		dir:    dir,
		url:    "http://" + l.Addr().String(),
		srv:    &http.Server{Handler: http.FileServer(http.Dir(dir)), ReadHeaderTimeout: 10 * time.Second},
		charts: map[string]map[string]indexEntry{},
	}
	if err := r.writeIndex(); err != nil {
		l.Close()
		return nil, err
	}
	go r.srv.Serve(l) //nolint:errcheck // returns http.ErrServerClosed on Close
	return r, nil
}

// Add packages a chart as <name>-<version>.tgz and rewrites index.yaml.
// Adding an existing name and version replaces it.
func (r *HelmRepo) Add(name string, spec ChartSpec) error {
	if name == "" || strings.ContainsAny(name, "/\\ ") {
		return fmt.Errorf("invalid chart name %q", name)
	}
	if spec.Version == "" {
		spec.Version = "0.1.0"
	}
	if spec.AppVersion == "" {
		spec.AppVersion = "1.0"
	}
	tgz, err := PackageChart(name, spec)
	if err != nil {
		return err
	}
	file := fmt.Sprintf("%s-%s.tgz", name, spec.Version)
	if err := os.WriteFile(filepath.Join(r.dir, file), tgz, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", file, err)
	}
	sum := sha256.Sum256(tgz)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.charts[name] == nil {
		r.charts[name] = map[string]indexEntry{}
	}
	r.charts[name][spec.Version] = indexEntry{
		APIVersion: "v2", Name: name, Version: spec.Version, AppVersion: spec.AppVersion,
		Created: time.Now().UTC().Format(time.RFC3339Nano), Digest: hex.EncodeToString(sum[:]),
		URLs: []string{r.url + "/" + file},
	}
	return r.writeIndexLocked()
}

// indexEntry is one chart version in index.yaml (Helm's repo.ChartVersion
// subset that source-controller needs).
type indexEntry struct {
	APIVersion string   `json:"apiVersion"`
	Name       string   `json:"name"`
	Version    string   `json:"version"`
	AppVersion string   `json:"appVersion,omitempty"`
	Created    string   `json:"created"`
	Digest     string   `json:"digest"`
	URLs       []string `json:"urls"`
}

type indexFile struct {
	APIVersion string                  `json:"apiVersion"`
	Entries    map[string][]indexEntry `json:"entries"`
	Generated  string                  `json:"generated"`
}

func (r *HelmRepo) writeIndex() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.writeIndexLocked()
}

// writeIndexLocked writes index.yaml atomically (rename) with absolute URLs
// (the listener's port is known by now). Versions are listed most recently
// added first; Helm and source-controller sort them by semver when loading.
func (r *HelmRepo) writeIndexLocked() error {
	idx := indexFile{APIVersion: "v1", Entries: map[string][]indexEntry{}, Generated: time.Now().UTC().Format(time.RFC3339Nano)}
	for name, versions := range r.charts {
		list := make([]indexEntry, 0, len(versions))
		for _, e := range versions {
			list = append(list, e)
		}
		sort.Slice(list, func(i, j int) bool { return list[i].Created > list[j].Created })
		idx.Entries[name] = list
	}
	b, err := yaml.Marshal(idx)
	if err != nil {
		return fmt.Errorf("encoding index.yaml: %w", err)
	}
	tmp := filepath.Join(r.dir, ".index.yaml.tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("writing index.yaml: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(r.dir, "index.yaml")); err != nil {
		return fmt.Errorf("writing index.yaml: %w", err)
	}
	return nil
}

// PackageChart builds the chart archive Helm expects: a gzip-compressed tar
// whose top directory is the chart name, holding Chart.yaml, values.yaml and
// templates/. (Hand-built with archive/tar to keep the Helm SDK out of this
// package; source-controller and helm-controller load it in the tests.)
func PackageChart(name string, spec ChartSpec) ([]byte, error) {
	if spec.Version == "" {
		spec.Version = "0.1.0"
	}
	if spec.AppVersion == "" {
		spec.AppVersion = "1.0"
	}
	chartYAML, err := yaml.Marshal(map[string]string{
		"apiVersion": "v2", "name": name, "version": spec.Version, "appVersion": spec.AppVersion,
		"description": "dodai test chart", "type": "application",
	})
	if err != nil {
		return nil, fmt.Errorf("encoding Chart.yaml: %w", err)
	}
	values := spec.Values
	if len(spec.Data) > 0 {
		// Merge Data into the values' "data" map so the template renders it.
		v := map[string]any{}
		if err := yaml.Unmarshal([]byte(values), &v); err != nil {
			return nil, fmt.Errorf("chart %s: parsing Values: %w", name, err)
		}
		if v == nil {
			v = map[string]any{}
		}
		d, _ := v["data"].(map[string]any)
		if d == nil {
			d = map[string]any{}
		}
		for k, val := range spec.Data {
			if _, set := d[k]; !set {
				d[k] = val
			}
		}
		v["data"] = d
		b, err := yaml.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("chart %s: encoding values: %w", name, err)
		}
		values = string(b)
	}
	files := map[string]string{
		"Chart.yaml":               string(chartYAML),
		"values.yaml":              values,
		"templates/configmap.yaml": configMapTemplate,
	}
	for n, c := range spec.Templates {
		if strings.Contains(n, "..") || strings.HasPrefix(n, "/") {
			return nil, fmt.Errorf("chart %s: invalid template name %q", name, n)
		}
		files["templates/"+n] = c
	}
	for n, c := range spec.CRDs {
		if strings.Contains(n, "..") || strings.HasPrefix(n, "/") {
			return nil, fmt.Errorf("chart %s: invalid CRD file name %q", name, n)
		}
		files["crds/"+n] = c
	}
	if spec.Fail != "" {
		files["templates/fail.yaml"] = fmt.Sprintf("{{ fail %q }}\n", spec.Fail)
	}
	if spec.InvalidYAML {
		files["templates/invalid.yaml"] = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [unclosed\n"
	}
	return tarGz(name, files)
}

// tarGz writes files (relative path → content) under top/ into a .tgz.
func tarGz(top string, files map[string]string) ([]byte, error) {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	mod := time.Now()
	for _, n := range names {
		c := files[n]
		if err := tw.WriteHeader(&tar.Header{Name: top + "/" + n, Mode: 0o644, Size: int64(len(c)), ModTime: mod, Typeflag: tar.TypeReg}); err != nil {
			return nil, fmt.Errorf("packaging %s: %w", n, err)
		}
		if _, err := tw.Write([]byte(c)); err != nil {
			return nil, fmt.Errorf("packaging %s: %w", n, err)
		}
	}
	if err := errors.Join(tw.Close(), gz.Close()); err != nil {
		return nil, fmt.Errorf("packaging chart %s: %w", top, err)
	}
	return buf.Bytes(), nil
}
