package graph

// MergeValues deep-merges override over base like Helm merges values
// files: maps merge key by key, anything else (lists, scalars) replaces,
// and an explicit null in override deletes the key. Neither input is
// modified; the result shares no maps with them.
func MergeValues(base, override map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range base {
		out[k] = deepCopy(v)
	}
	for k, v := range override {
		if v == nil {
			delete(out, k)
			continue
		}
		bm, bok := out[k].(map[string]any)
		om, ook := v.(map[string]any)
		if bok && ook {
			out[k] = MergeValues(bm, om)
			continue
		}
		out[k] = deepCopy(v)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func deepCopy(v any) any {
	switch t := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, x := range t {
			m[k] = deepCopy(x)
		}
		return m
	case []any:
		l := make([]any, len(t))
		for i, x := range t {
			l[i] = deepCopy(x)
		}
		return l
	default:
		return v
	}
}
