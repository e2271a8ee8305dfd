package tui

import (
	"testing"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/talos"
)

// The interface MAC of a known node is prefilled in the canonical form the
// menu offers, whatever notation cluster.yaml uses; otherwise the menu
// would silently fall back to its first link.
func TestPrefillCanonicalInterfaceMAC(t *testing.T) {
	c := &cluster.Cluster{Spec: cluster.Spec{Nodes: []cluster.Node{{
		Name: "w1", Role: cluster.RoleWorker, MACs: []string{"52:54:00:AA:00:01"},
		Interface: &cluster.Interface{MAC: "52-54-00-AA-00-02"},
	}}}}
	m := &talos.Machine{MAC: "52:54:00:aa:00:01"}
	cps := 0
	a, _ := prefill(m, c, &cps, map[string]bool{})
	if a.Name != "w1" || a.InterfaceMAC != "52:54:00:aa:00:02" {
		t.Fatalf("prefill: name %q, interface %q", a.Name, a.InterfaceMAC)
	}
}
