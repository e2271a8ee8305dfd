package verify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/cli"
	"helm.sh/helm/v3/pkg/getter"
	"helm.sh/helm/v3/pkg/registry"
	"helm.sh/helm/v3/pkg/repo"
	"sigs.k8s.io/yaml"

	"github.com/dodai-dev/dodai/charts"
	"github.com/dodai-dev/dodai/internal/platform/graph"
)

// Fetcher gets chart archives through the Helm SDK: from HTTP(S) Helm
// repositories (their index.yaml), OCI registries, a local directory laid
// out as a Helm repository, and dodai's own embedded charts. Archives and
// indexes are cached for the Fetcher's lifetime.
type Fetcher struct {
	// Charts, when set, is one Helm repository (a directory with an
	// index.yaml, or its http(s):// URL) that holds every chart, looked up
	// by chart name and version instead of each release's own source.
	Charts string
	// Timeout bounds each download (default 2 minutes).
	Timeout time.Duration

	mu      sync.Mutex
	indexes map[string]*repo.IndexFile
	getters getter.Providers
}

// Archive is a fetched chart: its .tgz bytes and where it came from.
type Archive struct {
	Name, Version string
	Data          []byte
	// From is the URL or path it was read from.
	From string
}

func (f *Fetcher) init() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.indexes != nil {
		return nil
	}
	if f.Timeout == 0 {
		f.Timeout = 2 * time.Minute
	}
	f.indexes = map[string]*repo.IndexFile{}
	f.getters = getter.All(cli.New())
	return nil
}

// Fetch returns the archive of a release's chart: from Charts when set,
// else from its source. dodai's own charts (Git source) come from the copy
// embedded in the binary (with a mirror in the cluster file they are a Helm
// source like the others).
func (f *Fetcher) Fetch(ctx context.Context, s graph.Source) (*Archive, error) {
	if err := f.init(); err != nil {
		return nil, err
	}
	name := strings.TrimPrefix(s.Chart, "./charts/")
	switch {
	case s.Kind == graph.SourceGit:
		// dodai's own charts ship with the binary: the same content Flux
		// reads from dodai's Git repository.
		return Dodai(name)
	case f.Charts != "":
		return f.fromIndex(ctx, f.Charts, name, s.Version)
	case s.Kind == graph.SourceOCI:
		return f.fromOCI(ctx, s.URL, name, s.Version)
	default:
		return f.fromIndex(ctx, s.URL, name, s.Version)
	}
}

// FetchDependency gets a chart that another chart depends on (Chart.yaml
// dependencies without a vendored copy): from Charts when set, else from
// the dependency's repository.
func (f *Fetcher) FetchDependency(ctx context.Context, d *chart.Dependency) (*Archive, error) {
	if err := f.init(); err != nil {
		return nil, err
	}
	if f.Charts != "" {
		return f.fromIndex(ctx, f.Charts, d.Name, d.Version)
	}
	if strings.HasPrefix(d.Repository, "oci://") {
		return f.fromOCI(ctx, d.Repository, d.Name, d.Version)
	}
	return f.fromIndex(ctx, d.Repository, d.Name, d.Version)
}

// Dodai packages one of dodai's embedded charts (charts/<name>).
func Dodai(name string) (*Archive, error) {
	var files []*loader.BufferedFile
	err := fs.WalkDir(charts.FS, name, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := charts.FS.ReadFile(p)
		files = append(files, &loader.BufferedFile{Name: strings.TrimPrefix(p, name+"/"), Data: b})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dodai chart %s: %w", name, err)
	}
	ch, err := loader.LoadFiles(files)
	if err != nil {
		return nil, fmt.Errorf("loading dodai chart %s: %w", name, err)
	}
	data, err := packageChart(ch)
	if err != nil {
		return nil, err
	}
	return &Archive{Name: name, Version: ch.Metadata.Version, Data: data, From: "dodai charts/" + name}, nil
}

func isLocal(repoURL string) bool {
	return !strings.Contains(repoURL, "://")
}

// index loads (once) the index.yaml of a repository URL or directory.
func (f *Fetcher) index(ctx context.Context, repoURL string) (*repo.IndexFile, error) {
	f.mu.Lock()
	idx, ok := f.indexes[repoURL]
	f.mu.Unlock()
	if ok {
		return idx, nil
	}
	var raw []byte
	var err error
	if isLocal(repoURL) {
		raw, err = os.ReadFile(filepath.Join(repoURL, "index.yaml"))
	} else {
		raw, err = f.get(ctx, strings.TrimSuffix(repoURL, "/")+"/index.yaml")
	}
	if err != nil {
		return nil, fmt.Errorf("reading the index of %s: %w", repoURL, err)
	}
	idx = &repo.IndexFile{}
	if err := yaml.Unmarshal(raw, idx); err != nil {
		return nil, fmt.Errorf("parsing the index of %s: %w", repoURL, err)
	}
	if idx.APIVersion == "" {
		return nil, fmt.Errorf("the index of %s has no apiVersion: not a Helm repository", repoURL)
	}
	idx.SortEntries()
	f.mu.Lock()
	f.indexes[repoURL] = idx
	f.mu.Unlock()
	return idx, nil
}

// fromIndex finds name@version in a Helm repository and downloads it.
func (f *Fetcher) fromIndex(ctx context.Context, repoURL, name, version string) (*Archive, error) {
	idx, err := f.index(ctx, repoURL)
	if err != nil {
		return nil, err
	}
	cv, err := idx.Get(name, version)
	if err != nil || cv.Version != version {
		var have []string
		for _, v := range idx.Entries[name] {
			have = append(have, v.Version)
		}
		if len(have) == 0 {
			return nil, fmt.Errorf("%s has no chart %q", repoURL, name)
		}
		return nil, fmt.Errorf("%s has no %s %s (it has %s)", repoURL, name, version, strings.Join(have, ", "))
	}
	if len(cv.URLs) == 0 {
		return nil, fmt.Errorf("%s: %s %s has no download URL", repoURL, name, version)
	}
	ref := cv.URLs[0]
	var data []byte
	var from string
	if isLocal(repoURL) && !strings.Contains(ref, "://") {
		from = filepath.Join(repoURL, filepath.FromSlash(ref))
		data, err = os.ReadFile(from)
	} else {
		base := repoURL
		if isLocal(repoURL) {
			base = "file://" + repoURL
		}
		from, err = repo.ResolveReferenceURL(base, ref)
		if err == nil {
			data, err = f.get(ctx, from)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("downloading %s %s: %w", name, version, err)
	}
	return &Archive{Name: name, Version: version, Data: data, From: from}, nil
}

// get downloads a URL with Helm's HTTP getter.
func (f *Fetcher) get(ctx context.Context, u string) ([]byte, error) {
	pu, err := url.Parse(u)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	g, err := f.getters.ByScheme(pu.Scheme)
	if err != nil {
		return nil, err
	}
	buf, err := g.Get(u, getter.WithURL(u), getter.WithTimeout(f.Timeout))
	if err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// fromOCI pulls oci://host/path/name:version. Registries on the loopback
// address are spoken to over plain HTTP (local mirrors and tests).
func (f *Fetcher) fromOCI(ctx context.Context, prefix, name, version string) (*Archive, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ref := strings.TrimSuffix(strings.TrimPrefix(prefix, "oci://"), "/") + "/" + name + ":" + version
	c, err := f.ociClient(ref)
	if err != nil {
		return nil, err
	}
	res, err := c.Pull(ref, registry.PullOptWithChart(true))
	if err != nil {
		return nil, fmt.Errorf("pulling oci://%s: %w", ref, err)
	}
	return &Archive{Name: name, Version: version, Data: res.Chart.Data, From: "oci://" + ref}, nil
}

func (f *Fetcher) ociClient(ref string) (*registry.Client, error) {
	host := ref
	if i := strings.IndexByte(host, '/'); i >= 0 {
		host = host[:i]
	}
	// Helm's registry client has no timeout of its own (and Pull takes no
	// context): an HTTP client with one bounds every request of a pull,
	// retries included, so a registry that accepts and never answers is
	// an error after f.Timeout instead of a hang.
	hc := &http.Client{Transport: registry.NewTransport(false), Timeout: f.Timeout}
	opts := []registry.ClientOption{registry.ClientOptWriter(&bytes.Buffer{}), registry.ClientOptHTTPClient(hc)}
	if loopback(host) {
		opts = append(opts, registry.ClientOptPlainHTTP())
	}
	return registry.NewClient(opts...)
}

func loopback(hostport string) bool {
	h, _, err := net.SplitHostPort(hostport)
	if err != nil {
		h = hostport
	}
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// Load loads an archive and fills in Chart.yaml dependencies that are not
// vendored (dodai's monitoring chart) with f.FetchDependency.
func (f *Fetcher) Load(ctx context.Context, a *Archive) (*chart.Chart, error) {
	ch, err := loader.LoadArchive(bytes.NewReader(a.Data))
	if err != nil {
		return nil, fmt.Errorf("loading %s %s: %w", a.Name, a.Version, err)
	}
	have := map[string]bool{}
	for _, d := range ch.Dependencies() {
		have[d.Name()] = true
	}
	var errs []error
	for _, d := range ch.Metadata.Dependencies {
		if have[d.Name] {
			continue
		}
		da, err := f.FetchDependency(ctx, d)
		if err != nil {
			errs = append(errs, fmt.Errorf("dependency %s %s: %w", d.Name, d.Version, err))
			continue
		}
		sub, err := loader.LoadArchive(bytes.NewReader(da.Data))
		if err != nil {
			errs = append(errs, fmt.Errorf("dependency %s %s: %w", d.Name, d.Version, err))
			continue
		}
		ch.AddDependency(sub)
	}
	return ch, errors.Join(errs...)
}

// archiveName is how Helm names a packaged chart.
func archiveName(name, version string) string { return path.Clean(name + "-" + version + ".tgz") }
