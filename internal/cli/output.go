package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"gopkg.in/yaml.v3"
)

// Print writes data in the format chosen by --output: the table function
// for "table", else v as JSON or YAML.
func (g *Globals) Print(v any, table func(w io.Writer) error) error {
	switch g.Output {
	case "json":
		enc := json.NewEncoder(g.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "yaml":
		enc := yaml.NewEncoder(g.Out)
		enc.SetIndent(2)
		if err := enc.Encode(v); err != nil {
			return err
		}
		return enc.Close()
	default:
		tw := tabwriter.NewWriter(g.Out, 0, 0, 3, ' ', 0)
		if err := table(tw); err != nil {
			return err
		}
		return tw.Flush()
	}
}

// Table writes a header and rows separated by tabs (for Print's table func).
func Table(w io.Writer, header []string, rows [][]string) error {
	line := func(cells []string) {
		for i, c := range cells {
			if i > 0 {
				fmt.Fprint(w, "\t")
			}
			fmt.Fprint(w, c)
		}
		fmt.Fprintln(w)
	}
	line(header)
	for _, r := range rows {
		line(r)
	}
	return nil
}
