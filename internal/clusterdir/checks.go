package clusterdir

import (
	"errors"
	"fmt"
	"net"
	"os"

	"gopkg.in/yaml.v3"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/platform"
)

// checks are every check Open runs after the cluster file's own validation,
// in this order. This list is the one place where a check of a cluster
// directory is added: the owning package keeps the logic and exports a
// cluster.Check; it is listed here, so internal/cluster never imports it.
var checks = []cluster.Check{
	platform.Validate, // spec.platform against the catalog: dependencies, cycles, releases, mirrors
	talosconfigTraps,  // the directory's talosconfig
}

// talosconfigTraps warns about a talosconfig context that uses the VIP as
// an endpoint: the VIP only exists once etcd is up, so the Talos API is
// unreachable through it exactly when it is needed. Each finding is located
// in the talosconfig.
func talosconfigTraps(src *cluster.Source) cluster.Problems {
	vip := src.Cluster.Spec.VIP
	if vip == "" {
		return nil
	}
	file := src.Layout().Talosconfig()
	raw, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return cluster.Problems{{File: file, Message: fmt.Sprintf("cannot read: %v", err), Severity: cluster.Warning}}
	}
	var doc yaml.Node
	if yaml.Unmarshal(raw, &doc) != nil || len(doc.Content) == 0 {
		return nil // not ours to judge: Talos' client reports a broken file
	}
	var probs cluster.Problems
	contexts := mapGet(doc.Content[0], "contexts")
	for i := 0; contexts != nil && i+1 < len(contexts.Content); i += 2 {
		name := contexts.Content[i].Value
		eps := mapGet(contexts.Content[i+1], "endpoints")
		for j := 0; eps != nil && j < len(eps.Content); j++ {
			ep := eps.Content[j]
			host := ep.Value
			if h, _, err := net.SplitHostPort(host); err == nil {
				host = h
			}
			if host != vip {
				continue
			}
			probs = append(probs, cluster.Problem{File: file, Line: ep.Line, Column: ep.Column,
				Path: fmt.Sprintf("contexts.%s.endpoints[%d]", name, j), Severity: cluster.Warning,
				Message: fmt.Sprintf("uses the VIP %s (spec.vip) as an endpoint: the VIP only exists once etcd is up, so the Talos API is unreachable exactly when you need it; use node addresses (dodai writes its own talosconfig that way)", vip)})
		}
	}
	return probs
}
