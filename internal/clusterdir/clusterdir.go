// Package clusterdir is the one way into a cluster directory. Open reads
// cluster.yaml, applies the defaults and runs every check: the cluster
// file's own validation (internal/cluster), the checks listed in checks.go
// (the platform graph of internal/platform, the traps of the directory's
// other files), and returns every problem located as
// FILE:LINE:COL: path: message. The directory's paths come with it
// (cluster.Layout), and Apply edits the cluster file keeping the user's
// comments (what the interactive mode writes).
//
// Commands open the directory once, through this package, and hand the
// result to the libraries; no other package reads cluster.yaml.
package clusterdir

import (
	"fmt"
	"os"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/fsutil"
)

// Dir is an opened cluster directory.
type Dir struct {
	cluster.Layout
	// Source is the parsed cluster file with defaults applied; nil when the
	// file could not be decoded at all (Problems say why).
	Source *cluster.Source
	// Problems are every problem found, errors and warnings, sorted by
	// file and position.
	Problems cluster.Problems
}

// Open reads and checks the cluster directory dir. The error is non-nil
// only when cluster.yaml cannot be read; what is wrong with its content is
// in Dir.Problems (Err returns the errors among them).
func Open(dir string) (*Dir, error) {
	d := &Dir{Layout: cluster.At(dir)}
	raw, err := os.ReadFile(d.ClusterFile())
	if err != nil {
		return nil, fmt.Errorf("reading the cluster file (create it with `dodai init`): %w", err)
	}
	d.Source, d.Problems = d.Check(raw)
	return d, nil
}

// Check parses content for the cluster file of this directory and runs
// every check Open runs. The Source is nil when content can't be decoded.
func (d *Dir) Check(raw []byte) (*cluster.Source, cluster.Problems) {
	src, probs := cluster.Parse(d.ClusterFile(), raw)
	if src == nil {
		probs.Sort()
		return nil, probs
	}
	probs = append(probs, cluster.Validate(src)...)
	for _, c := range checks {
		probs = append(probs, c(src)...)
	}
	probs.Sort()
	return src, probs
}

// Err returns the error-severity problems as an error of type
// cluster.Problems, or nil when there are none.
func (d *Dir) Err() error {
	if errs := d.Problems.Errors(); len(errs) > 0 {
		return errs
	}
	return nil
}

// Cluster is the decoded cluster file (nil when it could not be decoded).
func (d *Dir) Cluster() *cluster.Cluster {
	if d.Source == nil {
		return nil
	}
	return d.Source.Cluster
}

// WriteClusterFile replaces cluster.yaml with body (atomically, keeping the
// file's mode) after checking it, and reloads d from it. Content with
// error-severity problems is refused and nothing is written.
func (d *Dir) WriteClusterFile(body []byte) error {
	src, probs := d.Check(body)
	if errs := probs.Errors(); src == nil || len(errs) > 0 {
		return fmt.Errorf("refusing to write an invalid cluster file:\n%w", errs)
	}
	mode := os.FileMode(0o644)
	if fi, err := os.Stat(d.ClusterFile()); err == nil {
		mode = fi.Mode().Perm()
	}
	if err := fsutil.WriteFileAtomic(d.ClusterFile(), body, mode); err != nil {
		return fmt.Errorf("writing the cluster file: %w", err)
	}
	d.Source, d.Problems = src, probs
	return nil
}
