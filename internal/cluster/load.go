package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Severity of a Problem.
type Severity int

// Severities.
const (
	Error Severity = iota
	Warning
)

func (s Severity) String() string {
	if s == Warning {
		return "warning"
	}
	return "error"
}

// Problem is one finding about a cluster file, located by line, column and
// field path, e.g. `cluster.yaml:12:9: spec.nodes[2].macs[0]: "zz:11" is not a MAC address`.
type Problem struct {
	File     string   `json:"file"`
	Line     int      `json:"line"`
	Column   int      `json:"column"`
	Path     string   `json:"path"`
	Message  string   `json:"message"`
	Severity Severity `json:"-"`
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", p.Line, p.Column)
	}
	b.WriteString(": ")
	if p.Severity == Warning {
		b.WriteString("warning: ")
	}
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// Problems is a list of findings; as an error it reports the errors only.
type Problems []Problem

// Errors returns the problems of severity Error.
func (ps Problems) Errors() Problems {
	var out Problems
	for _, p := range ps {
		if p.Severity == Error {
			out = append(out, p)
		}
	}
	return out
}

// Warnings returns the problems of severity Warning.
func (ps Problems) Warnings() Problems {
	var out Problems
	for _, p := range ps {
		if p.Severity == Warning {
			out = append(out, p)
		}
	}
	return out
}

func (ps Problems) Error() string {
	lines := make([]string, 0, len(ps))
	for _, p := range ps {
		lines = append(lines, p.String())
	}
	return strings.Join(lines, "\n")
}

// Sort orders problems by file, then by position in the file.
func (ps Problems) Sort() {
	sort.SliceStable(ps, func(i, j int) bool {
		if ps[i].File != ps[j].File {
			return ps[i].File < ps[j].File
		}
		if ps[i].Line != ps[j].Line {
			return ps[i].Line < ps[j].Line
		}
		return ps[i].Column < ps[j].Column
	})
}

// Pos is a position in the cluster file.
type Pos struct{ Line, Column int }

// Source is a loaded cluster file: the decoded cluster, where it came from,
// and the position of every field path for error reporting.
type Source struct {
	// Dir is the cluster directory.
	Dir string
	// File is the path of cluster.yaml as given (used in messages).
	File string
	// Raw is the file's content.
	Raw []byte
	// Cluster is the decoded file with defaults applied.
	Cluster *Cluster
	// Root is the parsed YAML document.
	Root *yaml.Node
	pos  map[string]Pos
}

// Pos returns the position of a field path (e.g. spec.nodes[1].name), or of
// its closest existing parent.
func (s *Source) Pos(path string) Pos {
	for p := path; ; {
		if pos, ok := s.pos[p]; ok {
			return pos
		}
		i := strings.LastIndexAny(p, ".[")
		if i <= 0 {
			return s.pos[""]
		}
		p = p[:i]
	}
}

// Problem builds a located problem for a field path.
func (s *Source) Problem(sev Severity, path, format string, args ...any) Problem {
	pos := s.Pos(path)
	return Problem{File: s.File, Line: pos.Line, Column: pos.Column, Path: path, Message: fmt.Sprintf(format, args...), Severity: sev}
}

// Check is one check of a parsed cluster file beyond its own validation
// (e.g. the platform graph); internal/clusterdir runs the list of them.
type Check func(src *Source) Problems

// Parse decodes a cluster file strictly: syntax errors, unknown fields and
// type mismatches become located Problems. It applies defaults but does not
// validate semantics. It returns a nil Source when the file can't be
// decoded; with only unknown or repeated fields it returns both the Source
// and those problems, so semantic checks can still run.
func Parse(file string, raw []byte) (*Source, Problems) {
	name := file
	src := &Source{Dir: filepath.Dir(file), File: name, Raw: raw, pos: map[string]Pos{}}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, Problems{{File: name, Line: 1, Column: 1, Message: "file is empty"}}
		}
		return nil, Problems{syntaxProblem(name, err)}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, Problems{{File: name, Line: extra.Line, Column: extra.Column, Message: "only one YAML document is allowed"}}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, Problems{{File: name, Line: 1, Column: 1, Message: "file is empty"}}
	}
	root := doc.Content[0]
	src.Root = root
	src.pos[""] = Pos{root.Line, root.Column}
	if root.Kind != yaml.MappingNode {
		return nil, Problems{{File: name, Line: root.Line, Column: root.Column, Message: "a cluster file must be a YAML mapping"}}
	}
	var probs Problems
	w := walker{src: src, probs: &probs}
	w.walk(root, reflect.TypeOf(Cluster{}), "")
	probs.Sort()
	// Unknown fields don't stop decoding (the decoder skips them), so the
	// semantic checks can still run and every problem is reported at once.
	// Shape errors do.
	var c Cluster
	if err := root.Decode(&c); err != nil {
		if len(probs) > 0 {
			return nil, probs
		}
		return nil, Problems{syntaxProblem(name, err)}
	}
	src.Cluster = &c
	Default(&c)
	return src, probs
}

var yamlLineRe = regexp.MustCompile(`line (\d+):\s*(.*)`)

func syntaxProblem(file string, err error) Problem {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "yaml: ")
	if m := yamlLineRe.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return Problem{File: file, Line: line, Column: 1, Message: "invalid YAML: " + m[2]}
	}
	return Problem{File: file, Line: 1, Column: 1, Message: "invalid YAML: " + msg}
}

// walker checks the YAML tree against the Go types: unknown fields, wrong
// shapes and scalars that don't fit, each with its field path. It also
// records the position of every path.
type walker struct {
	src   *Source
	probs *Problems
}

func (w walker) add(n *yaml.Node, path, format string, args ...any) {
	*w.probs = append(*w.probs, Problem{File: w.src.File, Line: n.Line, Column: n.Column, Path: path, Message: fmt.Sprintf(format, args...)})
}

var (
	patchType       = reflect.TypeOf(Patch{})
	unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()
)

func (w walker) walk(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	w.src.pos[path] = Pos{n.Line, n.Column}
	if n.Tag == "!!null" {
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == patchType || reflect.PointerTo(t).Implements(unmarshalerType) {
		v := reflect.New(t)
		if err := n.Decode(v.Interface()); err != nil {
			w.add(n, path, "%s", cleanDecodeErr(err))
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			w.add(n, path, "expected a mapping, got %s", describe(n))
			return
		}
		fields := yamlFields(t)
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := join(path, k.Value)
			if seen[k.Value] {
				w.add(k, p, "field is set twice")
				continue
			}
			seen[k.Value] = true
			f, ok := fields[k.Value]
			if !ok {
				w.add(k, p, "unknown field%s", suggest(k.Value, fields))
				continue
			}
			w.walk(v, f.Type, p)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			w.add(n, path, "expected a mapping, got %s", describe(n))
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			w.walk(v, t.Elem(), join(path, k.Value))
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			w.add(n, path, "expected a list, got %s", describe(n))
			return
		}
		for i, c := range n.Content {
			w.walk(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	case reflect.Interface:
		// free-form (Helm values): anything goes
	default:
		if n.Kind != yaml.ScalarNode {
			w.add(n, path, "expected a %s, got %s", kindName(t), describe(n))
			return
		}
		v := reflect.New(t)
		if err := n.Decode(v.Interface()); err != nil {
			w.add(n, path, "expected a %s, got %q", kindName(t), n.Value)
		}
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	default:
		return fmt.Sprintf("%q", n.Value)
	}
}

func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint32, reflect.Uint64:
		return "number"
	default:
		return "string"
	}
}

func cleanDecodeErr(err error) string {
	s := err.Error()
	s = strings.TrimPrefix(s, "yaml: unmarshal errors:\n")
	s = strings.TrimSpace(s)
	if m := yamlLineRe.FindStringSubmatch(s); m != nil {
		return m[2]
	}
	return s
}

// yamlFields maps YAML keys to struct fields.
func yamlFields(t reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		name, _, _ := strings.Cut(tag, ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f
	}
	return out
}

func suggest(key string, fields map[string]reflect.StructField) string {
	best, bestD := "", 3
	for name := range fields {
		if d := distance(strings.ToLower(key), strings.ToLower(name)); d < bestD || (d == bestD && best != "" && name < best) {
			best, bestD = name, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// distance is the Levenshtein distance, for "did you mean" hints.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
