// Command dodai turns a rack of bare-metal servers into a Kubernetes-based
// cloud from one declarative file. The logic lives in internal/; this is the
// thin entry point.
package main

import (
	"os"

	"github.com/dodai-dev/dodai/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
