package kubetest

import (
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory" // the registry's storage
	"github.com/sirupsen/logrus"
	"helm.sh/helm/v3/pkg/registry"
)

// OCIRegistry is an OCI registry (the CNCF distribution registry, run in
// process with in-memory storage) on 127.0.0.1, for Helm charts pushed as
// OCI artifacts.
type OCIRegistry struct {
	// Host is "127.0.0.1:<port>".
	Host string
	srv  *httptest.Server
}

// ServeOCIRegistry starts a registry that lives until the test ends.
func ServeOCIRegistry(t testing.TB) *OCIRegistry {
	t.Helper()
	cfg := &configuration.Configuration{}
	cfg.Storage = configuration.Storage{"inmemory": configuration.Parameters{}, "delete": configuration.Parameters{"enabled": true}}
	cfg.Log.Level = "panic" // its 404s during a push are expected
	cfg.Log.AccessLog.Disabled = true
	logrus.SetOutput(io.Discard) // the registry logs through logrus' standard logger
	cfg.HTTP.Secret = "dodai-test"
	app := handlers.NewApp(context.Background(), cfg)
	srv := httptest.NewServer(app) // listens on 127.0.0.1
	t.Cleanup(srv.Close)
	return &OCIRegistry{Host: strings.TrimPrefix(srv.URL, "http://"), srv: srv}
}

// URL is the oci:// prefix charts are pushed under: a HelmRepository URL
// (type oci) or a catalog repo URL.
func (r *OCIRegistry) URL() string { return "oci://" + r.Host + "/charts" }

// Push packages a test chart and pushes it as <URL>/<name>:<version>.
func (r *OCIRegistry) Push(name string, spec ChartSpec) error {
	data, err := PackageChart(name, spec)
	if err != nil {
		return err
	}
	version := spec.Version
	if version == "" {
		version = "0.1.0"
	}
	c, err := registry.NewClient(registry.ClientOptPlainHTTP(), registry.ClientOptWriter(io.Discard))
	if err != nil {
		return err
	}
	ref := fmt.Sprintf("%s/charts/%s:%s", r.Host, name, version)
	if _, err := c.Push(data, ref); err != nil {
		return fmt.Errorf("pushing %s: %w", ref, err)
	}
	return nil
}
