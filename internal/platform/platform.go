// Package platform is the platform stage's entry point for commands: it
// resolves a cluster file's spec.platform against the embedded catalog,
// reports its problems located in the cluster file (for `dodai validate`),
// and decides where Flux's install manifests come from. The work itself is
// in the sub-packages (catalog, graph, render, install, status, readiness,
// verify).
package platform

import (
	"errors"
	"path/filepath"
	"strings"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/platform/catalog"
	"github.com/dodai-dev/dodai/internal/platform/graph"
	"github.com/dodai-dev/dodai/internal/platform/install"
)

// Resolve builds the validated release graph of spec.platform.
func Resolve(p cluster.Platform) (*graph.Graph, error) {
	cat, err := catalog.Load()
	if err != nil {
		return nil, err
	}
	return graph.Resolve(cat, p)
}

// Validate checks the platform graph of a parsed cluster file (unknown or
// disabled dependencies, cycles, duplicate releases, mirrors) and returns
// each problem at its place in the file. spec.platform.bundle itself is
// left to the cluster file's own validation, which reports it already.
func Validate(src *cluster.Source) cluster.Problems {
	_, err := Resolve(src.Cluster.Spec.Platform)
	if err == nil {
		return nil
	}
	var ges graph.Errors
	if !errors.As(err, &ges) {
		return cluster.Problems{src.Problem(cluster.Error, "spec.platform", "%v", err)}
	}
	var probs cluster.Problems
	for _, e := range ges {
		if e.Path == "spec.platform.bundle" {
			continue
		}
		probs = append(probs, src.Problem(cluster.Error, e.Path, "%s", e.Msg))
	}
	return probs
}

// FluxManifests says where `platform install` reads Flux's install
// manifests from, in this order: the command line (flag), the cluster file
// (spec.platform.flux.manifests, a path relative to clusterDir or a URL),
// else Flux's own release asset for spec.platform.flux.version (default
// install.FluxVersion).
func FluxManifests(flag string, s *cluster.FluxSettings, clusterDir string) string {
	if flag != "" {
		return flag
	}
	if s != nil && s.Manifests != "" {
		if isURL(s.Manifests) || filepath.IsAbs(s.Manifests) {
			return s.Manifests
		}
		return filepath.Join(clusterDir, s.Manifests)
	}
	version := install.FluxVersion
	if s != nil && s.Version != "" {
		version = s.Version
	}
	return install.FluxReleaseURL(version)
}

func isURL(s string) bool {
	return strings.HasPrefix(s, "https://") || strings.HasPrefix(s, "http://")
}
