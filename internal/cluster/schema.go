package cluster

import (
	_ "embed"
	"encoding/json"

	"github.com/invopop/jsonschema"
)

// schemaJSON is the published schema (also at docs/cluster.schema.json),
// generated from these Go types and their doc comments by GenerateSchema;
// a test keeps it current.
//
//go:embed cluster.schema.json
var schemaJSON []byte

// JSONSchema returns the JSON Schema of the cluster file.
func JSONSchema() []byte { return schemaJSON }

// GenerateSchema builds the JSON Schema from the Go types, taking field
// descriptions from the doc comments of the package sources in srcDir.
func GenerateSchema(srcDir string) ([]byte, error) {
	r := &jsonschema.Reflector{
		FieldNameTag:              "yaml",
		AllowAdditionalProperties: false,
		ExpandedStruct:            true,
	}
	if err := r.AddGoComments("github.com/dodai-dev/dodai/internal/cluster", srcDir); err != nil {
		return nil, err
	}
	s := r.Reflect(&Cluster{})
	s.ID = "https://dodai.dev/schemas/cluster-v1alpha1.json"
	s.Title = "dodai cluster file (dodai.dev/v1alpha1, kind Cluster)"
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
