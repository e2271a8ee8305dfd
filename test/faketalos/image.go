package faketalos

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/siderolabs/image-factory/pkg/schematic"
)

// Factory is the Image Factory as the fake nodes see it: the schematics it
// knows by ID and the official extensions each one carries. An installer
// image <host>/metal-installer/<id>:<version> (or <host>/installer/<id>:…)
// boots with that schematic's extensions; ghcr.io/siderolabs/installer:<v>
// is the vanilla image without any; other images cannot be pulled.
type Factory struct {
	mu         sync.Mutex
	schematics map[string][]string
}

// NewFactory returns a factory that knows no schematic yet.
func NewFactory() *Factory { return &Factory{schematics: map[string][]string{}} }

// Add registers a schematic (as POST /schematics does) and returns its ID.
func (f *Factory) Add(s *schematic.Schematic) (string, error) {
	id, err := s.ID()
	if err != nil {
		return "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.schematics[id] = slices.Clone(s.Customization.SystemExtensions.OfficialExtensions)
	return id, nil
}

// Extensions returns the official extensions of a known schematic.
func (f *Factory) Extensions(id string) ([]string, bool) {
	if f == nil {
		return nil, false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.schematics[id]
	return slices.Clone(e), ok
}

// installerImage is what an installer image reference resolves to.
type installerImage struct {
	version    string
	schematic  string // "" for the vanilla installer
	extensions []string
}

// resolve parses an installer reference the way the node would pull it.
func (f *Factory) resolve(ref string) (installerImage, error) {
	repo, tag, ok := strings.Cut(ref, ":")
	if !ok || !strings.HasPrefix(tag, "v") {
		return installerImage{}, fmt.Errorf("failed to pull image %q: no version tag", ref)
	}
	if repo == "ghcr.io/siderolabs/installer" {
		return installerImage{version: tag}, nil
	}
	parts := strings.Split(repo, "/")
	if len(parts) >= 3 && (parts[len(parts)-2] == "metal-installer" || parts[len(parts)-2] == "installer") {
		id := parts[len(parts)-1]
		if exts, ok := f.Extensions(id); ok {
			return installerImage{version: tag, schematic: id, extensions: exts}, nil
		}
		return installerImage{}, fmt.Errorf("failed to pull image %q: schematic %s not found", ref, id)
	}
	return installerImage{}, fmt.Errorf("failed to pull image %q: not found", ref)
}
