package cluster

import (
	"encoding/json"

	"github.com/invopop/jsonschema"
)

// JSONSchema returns the JSON Schema of the cluster file, generated from
// the Go types (yaml field names, doc comments as descriptions are not
// available at run time, so the schema carries types, enums and patterns).
func JSONSchema() ([]byte, error) {
	r := &jsonschema.Reflector{
		FieldNameTag:               "yaml",
		RequiredFromJSONSchemaTags: false,
		AllowAdditionalProperties:  false,
		ExpandedStruct:             true,
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
