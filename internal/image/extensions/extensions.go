// Package extensions knows the official Talos system extensions of every
// Talos release dodai supports: which extensions a release publishes and
// the image tag of each (ghcr.io/siderolabs/<name>:<tag>, tags like
// 9.2.14-v1.11.5 for kernel modules built against that release, the
// upstream version alone for others). The table (releases.txt) holds what
// Sidero Labs published with each release; the imager needs real tags,
// because it does not resolve extension versions itself.
package extensions

import (
	_ "embed"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Registry is where official extension images are published.
const Registry = "ghcr.io/siderolabs"

// Prefix is the Image Factory's prefix of official extension names
// (siderolabs/drbd).
const Prefix = "siderolabs/"

//go:embed releases.txt
var table string

var (
	once     sync.Once
	releases map[string]map[string]string // release → name → tag
	order    []string                     // releases as listed (newest first)
	parseErr error
)

func load() {
	once.Do(func() {
		releases = map[string]map[string]string{}
		var cur map[string]string
		for i, line := range strings.Split(table, "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			f := strings.Fields(line)
			switch {
			case len(f) == 2 && f[0] == "release":
				cur = map[string]string{}
				releases[f[1]] = cur
				order = append(order, f[1])
			case len(f) == 2 && cur != nil:
				cur[f[0]] = f[1]
			default:
				parseErr = fmt.Errorf("releases.txt:%d: malformed line %q", i+1, line)
				return
			}
		}
	})
}

// Releases lists the Talos releases the table knows, newest first.
func Releases() []string {
	load()
	return slices.Clone(order)
}

// Known reports whether the table has the extensions of a Talos release.
func Known(talosVersion string) bool {
	load()
	_, ok := releases[talosVersion]
	return ok
}

// Names returns the official extension names of a release (with the
// siderolabs/ prefix, sorted), or nil when the release is unknown.
func Names(talosVersion string) []string {
	load()
	exts, ok := releases[talosVersion]
	if !ok {
		return nil
	}
	out := make([]string, 0, len(exts))
	for n := range exts {
		out = append(out, Prefix+n)
	}
	slices.Sort(out)
	return out
}

// Official reports whether name (siderolabs/drbd) is an official extension
// of the release. For a release the table does not know, it reports
// whether any known release published the extension.
func Official(talosVersion, name string) bool {
	load()
	short, ok := strings.CutPrefix(name, Prefix)
	if !ok {
		return false
	}
	if exts, known := releases[talosVersion]; known {
		_, ok := exts[short]
		return ok
	}
	for _, exts := range releases {
		if _, ok := exts[short]; ok {
			return true
		}
	}
	return false
}

// Image returns the image an official extension (siderolabs/drbd) was
// published as for a release, e.g. ghcr.io/siderolabs/drbd:9.2.14-v1.11.5;
// ok is false when the release or the extension is unknown.
func Image(talosVersion, name string) (ref string, ok bool) {
	load()
	short, isOfficial := strings.CutPrefix(name, Prefix)
	if !isOfficial {
		return "", false
	}
	tag, ok := releases[talosVersion][short]
	if !ok {
		return "", false
	}
	return Registry + "/" + short + ":" + tag, true
}

// Err reports a malformed table (a test checks it is nil).
func Err() error {
	load()
	return parseErr
}
