package power

import (
	"fmt"

	"github.com/dodai-dev/dodai/internal/cluster"
)

// Selection is the outcome of choosing nodes for a power action.
type Selection struct {
	// Targets are the nodes to act on.
	Targets []Target
	// Failed are nodes that can't be acted on (no credentials), as results
	// with an error, so they appear beside the others.
	Failed []Result
	// Skipped names nodes without a bmc (only when no names were given).
	Skipped []string
	// Warnings are non-fatal findings in the credentials file.
	Warnings cluster.Problems
}

// Select picks the nodes named (all nodes with a bmc when names is empty)
// and attaches their credentials from the cluster directory's
// bmc-credentials.yaml and env (os.LookupEnv in the CLI). A name that is
// not a node, or a node without a bmc, is an error; so is an unreadable or
// malformed credentials file.
func Select(src *cluster.Source, names []string, env func(string) (string, bool)) (*Selection, error) {
	creds, probs := cluster.LoadBMCCredentials(src.Dir)
	if errs := probs.Errors(); len(errs) > 0 {
		return nil, errs
	}
	resolved, rprobs := cluster.ResolveBMCCredentials(src, creds, env)
	sel := &Selection{Warnings: append(probs.Warnings(), rprobs.Warnings()...)}
	missing := map[string]string{}
	for _, p := range rprobs.Errors() {
		for i, n := range src.Cluster.Spec.Nodes {
			if p.Path == fmt.Sprintf("spec.nodes[%d].bmc", i) {
				missing[n.Name] = p.String()
			}
		}
	}
	byName := map[string]cluster.Node{}
	for _, n := range src.Cluster.Spec.Nodes {
		byName[n.Name] = n
	}
	var chosen []cluster.Node
	if len(names) == 0 {
		for _, n := range src.Cluster.Spec.Nodes {
			if n.BMC == nil {
				sel.Skipped = append(sel.Skipped, n.Name)
				continue
			}
			chosen = append(chosen, n)
		}
		if len(chosen) == 0 {
			return nil, fmt.Errorf("no node in %s has a bmc (spec.nodes[].bmc)", src.File)
		}
	} else {
		seen := map[string]bool{}
		for _, name := range names {
			n, ok := byName[name]
			switch {
			case !ok:
				return nil, fmt.Errorf("no node %q in %s", name, src.File)
			case n.BMC == nil:
				return nil, fmt.Errorf("node %q has no bmc in %s", name, src.File)
			case seen[name]:
				continue
			}
			seen[name] = true
			chosen = append(chosen, n)
		}
	}
	for _, n := range chosen {
		if msg, bad := missing[n.Name]; bad {
			t, _ := TargetFor(n, cluster.BMCCredential{})
			err := fmt.Errorf("%s", msg)
			sel.Failed = append(sel.Failed, Result{Node: n.Name, BMC: t.Endpoint(), Protocol: t.Protocol, Before: Unknown, After: Unknown, Err: err, Error: err.Error()})
			continue
		}
		t, err := TargetFor(n, resolved[n.Name])
		if err != nil {
			return nil, err
		}
		sel.Targets = append(sel.Targets, t)
	}
	return sel, nil
}
