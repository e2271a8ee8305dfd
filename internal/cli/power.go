package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/power"
)

// bmcCredentialProblems is validate's check of BMC credentials: the
// credentials file itself and a complete user name and password for every
// node with a bmc (environment variables count, as for `dodai power`).
func bmcCredentialProblems(src *cluster.Source) cluster.Problems {
	hasBMC := false
	for _, n := range src.Cluster.Spec.Nodes {
		hasBMC = hasBMC || n.BMC != nil
	}
	creds, probs := cluster.LoadBMCCredentials(src.Dir)
	if !hasBMC {
		return probs
	}
	_, rp := cluster.ResolveBMCCredentials(src, creds, os.LookupEnv)
	return append(probs, rp...)
}

func newPowerCmd(g *Globals) *cobra.Command {
	var (
		nodes    []string
		pxeOnce  bool
		timeout  time.Duration
		parallel int
	)
	cmd := &cobra.Command{
		Use:   "power status|on|off|cycle",
		Short: "Read or switch the machines' power through their BMCs (IPMI or Redfish), all in parallel",
		Long: `Acts on every node with a bmc in cluster.yaml (or the --node ones), in parallel,
and prints one row per node. Credentials come from bmc-credentials.yaml in the
cluster directory (mode 0600) or DODAI_BMC_[<NODE>_]USERNAME/PASSWORD.

  status   the power state
  on       power on (a node already on is left alone)
  off      hard power off
  cycle    power cycle a node that is on, power on one that is off

--pxe-once makes the next boot (only the next) a network boot before powering
on (IPMI boot flags "force PXE, next boot only"; Redfish BootSourceOverride
Pxe/Once). Each node is bounded by --timeout; a BMC that fails or does not
answer fails only its own row. Exit status 1 when any node failed.`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"status", "on", "off", "cycle"},
		RunE: func(cmd *cobra.Command, args []string) error {
			action, err := power.ParseAction(args[0])
			if err != nil {
				return err
			}
			if pxeOnce && (action == power.Status || action == power.PowerOff) {
				return fmt.Errorf("--pxe-once goes with on or cycle, not %s", action)
			}
			src, err := g.Load()
			if err != nil {
				return err
			}
			sel, err := selectPower(g, src, nodes, "skipped (no bmc)")
			if err != nil {
				return err
			}
			results := power.Run(cmd.Context(), sel.Targets, power.Request{Action: action, PXEOnce: pxeOnce, Timeout: timeout, Parallel: parallel})
			results = append(results, sel.Failed...)
			if err := printPower(g, action, results); err != nil {
				return err
			}
			if n := power.Failed(results); n > 0 {
				return &ExitError{Code: 1, Err: fmt.Errorf("%d of %d node(s) failed", n, len(results))}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&nodes, "node", nil, "act on this node only (repeatable); default: every node with a bmc")
	f.BoolVar(&pxeOnce, "pxe-once", false, "boot from the network on the next boot only (on, cycle)")
	f.DurationVar(&timeout, "timeout", 60*time.Second, "bound for each node (connect, act, confirm the new state)")
	f.IntVar(&parallel, "parallel", 0, "at most this many BMCs at once (0: all)")
	return cmd
}

// selectPower picks the nodes for a power action (power.Select, with the
// environment's credentials) and prints the credential warnings and the
// nodes skipped for want of a bmc, after skipped.
func selectPower(g *Globals, src *cluster.Source, nodes []string, skipped string) (*power.Selection, error) {
	sel, err := power.Select(src, nodes, os.LookupEnv)
	if err != nil {
		return nil, err
	}
	for _, w := range sel.Warnings {
		fmt.Fprintln(g.Err, w.String())
	}
	if len(sel.Skipped) > 0 {
		fmt.Fprintf(g.Err, "%s: %s\n", skipped, strings.Join(sel.Skipped, ", "))
	}
	return sel, nil
}

func printPower(g *Globals, action power.Action, rs []power.Result) error {
	return g.Print(rs, func(w io.Writer) error {
		var rows [][]string
		for _, r := range rs {
			res := "ok"
			if r.Err != nil {
				res = "error: " + r.Error
			}
			secs := fmt.Sprintf("%.1fs", r.Seconds)
			if action == power.Status {
				rows = append(rows, []string{r.Node, r.BMC, r.Protocol, string(r.Before), secs, res})
			} else {
				rows = append(rows, []string{r.Node, r.BMC, r.Protocol, string(r.Before), orDash(r.Done), string(r.After), secs, res})
			}
		}
		if action == power.Status {
			return Table(w, []string{"NODE", "BMC", "PROTOCOL", "POWER", "TIME", "RESULT"}, rows)
		}
		return Table(w, []string{"NODE", "BMC", "PROTOCOL", "BEFORE", "DONE", "AFTER", "TIME", "RESULT"}, rows)
	})
}
