package cluster

import (
	"fmt"

	"github.com/invopop/jsonschema"
	"gopkg.in/yaml.v3"
)

// UnmarshalYAML keeps the patch as a generic value and remembers where it is.
func (p *Patch) UnmarshalYAML(n *yaml.Node) error {
	var v any
	if err := n.Decode(&v); err != nil {
		return err
	}
	switch v.(type) {
	case map[string]any, []any, string:
	default:
		return fmt.Errorf("line %d: a patch must be a mapping (strategic merge), a list (JSON patch) or \"@file\"", n.Line)
	}
	p.Value, p.Line, p.Column = v, n.Line, n.Column
	return nil
}

// MarshalYAML writes the patch back as it was given.
func (p Patch) MarshalYAML() (any, error) { return p.Value, nil }

// JSONSchema describes the three accepted forms of a patch.
func (Patch) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{
		Description: "Talos config patch: a mapping (strategic merge), a list of RFC 6902 operations, or \"@file\"",
		OneOf: []*jsonschema.Schema{
			{Type: "object"},
			{Type: "array", Items: &jsonschema.Schema{Type: "object"}},
			{Type: "string", Pattern: "^@.+"},
		},
	}
}
