package verify

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/repo"

	"github.com/dodai-dev/dodai/internal/fsutil"
	"github.com/dodai-dev/dodai/internal/platform/graph"
)

// Mirrored is one chart written by Mirror.
type Mirrored struct {
	File    string `json:"file"`
	Chart   string `json:"chart"`
	Version string `json:"version"`
	From    string `json:"from"`
	// Kept: the file was there already with the same content.
	Kept bool `json:"kept,omitempty"`
}

// Mirror writes the chart of every release of g into dir as one Helm
// repository (<chart>-<version>.tgz files and an index.yaml with relative
// URLs), which `dodai platform verify --charts DIR` reads and which, served
// over HTTP, is the cluster file's spec.platform.mirror.helm. dodai's own
// charts are packaged with their Chart.yaml dependencies vendored in, so a
// site without internet needs nothing else. Existing files and index
// entries are kept (re-running adds what is new).
func Mirror(ctx context.Context, g *graph.Graph, f *Fetcher, dir string) ([]Mirrored, error) {
	if f == nil {
		f = &Fetcher{}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	idx := repo.NewIndexFile()
	indexPath := filepath.Join(dir, "index.yaml")
	if _, err := os.Stat(indexPath); err == nil {
		old, err := repo.LoadIndexFile(indexPath)
		if err != nil {
			return nil, fmt.Errorf("%s exists but is not a Helm index (not overwriting it): %w", indexPath, err)
		}
		idx = old
	}
	var out []Mirrored
	seen := map[string]bool{}
	// add writes an archive once (charts shared by releases, or a
	// dependency that is also a release's chart, are written once).
	add := func(a *Archive) error {
		file := archiveName(a.Name, a.Version)
		if seen[file] {
			return nil
		}
		seen[file] = true
		m, err := writeArchive(dir, file, a, idx)
		if err != nil {
			return err
		}
		out = append(out, m)
		return nil
	}
	for _, r := range g.Releases {
		a, err := f.Fetch(ctx, r.Source)
		if err != nil {
			return out, fmt.Errorf("%s/%s: %w", r.Namespace, r.Name, err)
		}
		if r.Source.Kind == graph.SourceGit || len(a.Data) > 0 && needsVendoring(a.Data) {
			// Vendor missing dependencies so the archive is self-contained,
			// and mirror them as charts of their own too (for Chart.yaml
			// dependency resolution against the mirror).
			ch, err := f.Load(ctx, a)
			if err != nil {
				return out, fmt.Errorf("%s/%s: %w", r.Namespace, r.Name, err)
			}
			for _, d := range ch.Metadata.Dependencies {
				da, err := f.FetchDependency(ctx, d)
				if err != nil {
					return out, fmt.Errorf("%s/%s: dependency %s: %w", r.Namespace, r.Name, d.Name, err)
				}
				if err := add(da); err != nil {
					return out, err
				}
			}
			data, err := packageChart(ch)
			if err != nil {
				return out, err
			}
			a.Data = data
		}
		if err := add(a); err != nil {
			return out, err
		}
	}
	idx.SortEntries()
	// Helm's WriteFile writes atomically (temporary file, then rename).
	if err := idx.WriteFile(indexPath, 0o644); err != nil {
		return out, fmt.Errorf("writing %s: %w", indexPath, err)
	}
	return out, nil
}

// needsVendoring: the archive declares dependencies it does not carry.
func needsVendoring(data []byte) bool {
	ch, err := loader.LoadArchive(bytes.NewReader(data))
	if err != nil {
		return false
	}
	return len(ch.Metadata.Dependencies) > len(ch.Dependencies())
}

func writeArchive(dir, file string, a *Archive, idx *repo.IndexFile) (Mirrored, error) {
	m := Mirrored{File: file, Chart: a.Name, Version: a.Version, From: a.From}
	ch, err := loader.LoadArchive(bytes.NewReader(a.Data))
	if err != nil {
		return m, fmt.Errorf("%s: %w", file, err)
	}
	p := filepath.Join(dir, file)
	if old, err := os.ReadFile(p); err == nil && bytes.Equal(old, a.Data) {
		m.Kept = true
	} else if err := fsutil.WriteFileAtomic(p, a.Data, 0o644); err != nil {
		return m, fmt.Errorf("writing %s: %w", p, err)
	}
	sum := sha256.Sum256(a.Data)
	if idx.Has(ch.Metadata.Name, ch.Metadata.Version) {
		// Replace the entry: the digest must match the file now there.
		vs := idx.Entries[ch.Metadata.Name]
		for i := len(vs) - 1; i >= 0; i-- {
			if vs[i].Version == ch.Metadata.Version {
				vs = append(vs[:i], vs[i+1:]...)
			}
		}
		idx.Entries[ch.Metadata.Name] = vs
	}
	if err := idx.MustAdd(ch.Metadata, file, "", hex.EncodeToString(sum[:])); err != nil {
		return m, fmt.Errorf("indexing %s: %w", file, err)
	}
	return m, nil
}
