// Command talos-validate checks Talos machine configs the way a node of one
// Talos release reads them: it is built against that release's machinery
// (go.mod: v1.12, go.v1.11.mod: v1.11; see hack/deps/talos.sh), decodes
// each config strictly (unknown documents and fields are errors, as on the
// node) and runs machinery's validator for metal.
//
// Usage: talos-validate FILE... ("-" reads standard input). It prints
// "FILE: ok (N warnings)" per valid config, the first error of an invalid
// one on standard error, and exits 1 if any config was rejected. With
// -version it prints the machinery version it was built with.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
)

// metal is machinery's validation mode for bare metal.
type metal struct{}

func (metal) String() string        { return "metal" }
func (metal) RequiresInstall() bool { return true }
func (metal) InContainer() bool     { return false }

func machineryVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/siderolabs/talos/pkg/machinery" {
				return d.Version
			}
		}
	}
	return "unknown"
}

func check(name string) error {
	var (
		data []byte
		err  error
	)
	if name == "-" {
		data, err = io.ReadAll(os.Stdin)
	} else {
		data, err = os.ReadFile(name)
	}
	if err != nil {
		return err
	}
	cfg, err := configloader.NewFromBytes(data)
	if err != nil {
		return fmt.Errorf("loading: %w", err)
	}
	warnings, err := cfg.Validate(metal{})
	if err != nil {
		return fmt.Errorf("validating: %w", err)
	}
	for _, w := range warnings {
		fmt.Printf("%s: warning: %s\n", name, w)
	}
	fmt.Printf("%s: ok (%d warnings)\n", name, len(warnings))
	return nil
}

func main() {
	if len(os.Args) == 2 && os.Args[1] == "-version" {
		fmt.Println(machineryVersion())
		return
	}
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: talos-validate FILE... | -version")
		os.Exit(2)
	}
	failed := false
	for _, name := range os.Args[1:] {
		if err := check(name); err != nil {
			fmt.Fprintf(os.Stderr, "%s: machinery %s rejects it: %v\n", name, machineryVersion(), err)
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}
