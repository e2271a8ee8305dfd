package clusterdir

import (
	"bytes"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/dodai-dev/dodai/internal/cluster"
)

// NodeEdit is what to set on the node of one machine.
type NodeEdit struct {
	// MAC identifies the machine (its first hardware address): the node
	// listing it is changed, else the node named Name, else one is added.
	MAC  string
	Name string
	Role string
	// InterfaceMAC is the MAC of the link carrying the address.
	InterfaceMAC string
	// Disk: a serial (preferred, stable) or else a device path.
	DiskSerial string
	DiskPath   string
	Address    string
	Gateway    string
	DNS        []string
}

// Edit is a change of the cluster file's nodes and VIP.
type Edit struct {
	Nodes []NodeEdit
	// VIP, empty to leave spec.vip unchanged.
	VIP string
	// Protected names nodes that are real machines (discovered or known to
	// bootstrap): another machine may not take them over by name.
	Protected map[string]bool
}

// Apply returns the cluster file with the edit applied to its YAML tree,
// keeping the user's comments and every other field, and checked as Open
// checks it (errors refuse the edit). A node whose MACs include the
// machine's MAC is updated; otherwise the node of that name (e.g. the
// placeholder of `dodai init`) is taken over, else a node is appended.
// The directory itself is not changed (see WriteClusterFile).
func (d *Dir) Apply(a Edit) ([]byte, error) {
	if d.Source == nil {
		return nil, fmt.Errorf("the cluster file does not parse:\n%w", d.Problems)
	}
	// A fresh tree: the loaded one stays as it was read.
	var doc yaml.Node
	if err := yaml.Unmarshal(d.Source.Raw, &doc); err != nil || len(doc.Content) == 0 {
		return nil, fmt.Errorf("re-reading the cluster file: %v", err)
	}
	root := doc.Content[0]
	spec := mapGet(root, "spec")
	if spec == nil {
		spec = &yaml.Node{Kind: yaml.MappingNode}
		mapSet(root, "spec", spec)
	}
	nodes := mapGet(spec, "nodes")
	if nodes == nil || nodes.Kind != yaml.SequenceNode {
		nodes = &yaml.Node{Kind: yaml.SequenceNode}
		mapSet(spec, "nodes", nodes)
	}
	seen := map[string]string{}
	for _, na := range a.Nodes {
		if other, dup := seen[na.Name]; dup {
			return nil, fmt.Errorf("machines %s and %s are both named %q", other, na.MAC, na.Name)
		}
		seen[na.Name] = na.MAC
	}
	for _, na := range a.Nodes {
		mac, err := cluster.ParseMAC(na.MAC)
		if err != nil {
			return nil, err
		}
		n, byMAC := findNode(nodes, mac, na.Name)
		if n != nil && !byMAC && a.Protected[na.Name] {
			return nil, fmt.Errorf("node name %q is already used by another machine; pick another name", na.Name)
		}
		if n == nil {
			n = &yaml.Node{Kind: yaml.MappingNode}
			nodes.Content = append(nodes.Content, n)
		}
		setScalar(n, "name", na.Name)
		setScalar(n, "role", na.Role)
		macs := mapGet(n, "macs")
		if macs == nil || macs.Kind != yaml.SequenceNode || !byMAC {
			// A node taken over by name (e.g. the template's placeholder)
			// gets this machine's MAC instead of its old ones.
			macs = &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
			mapSet(n, "macs", macs)
		}
		if !seqHasMAC(macs, mac) {
			macs.Content = append([]*yaml.Node{strNode(mac)}, macs.Content...)
		}
		if na.DiskSerial != "" || na.DiskPath != "" {
			disk := &yaml.Node{Kind: yaml.MappingNode}
			if na.DiskSerial != "" {
				sel := &yaml.Node{Kind: yaml.MappingNode}
				setScalar(sel, "serial", na.DiskSerial)
				mapSet(disk, "selector", sel)
			} else {
				setScalar(disk, "path", na.DiskPath)
			}
			mapSet(n, "installDisk", disk)
		}
		setOrDelete(n, "address", na.Address)
		setOrDelete(n, "gateway", na.Gateway)
		if len(na.DNS) > 0 {
			seq := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
			for _, dns := range na.DNS {
				seq.Content = append(seq.Content, strNode(dns))
			}
			mapSet(n, "nameservers", seq)
		} else {
			mapDelete(n, "nameservers")
		}
		if ifMAC, err := cluster.ParseMAC(na.InterfaceMAC); err == nil && ifMAC != firstMAC(macs) {
			ifc := mapGet(n, "interface")
			if ifc == nil || ifc.Kind != yaml.MappingNode {
				ifc = &yaml.Node{Kind: yaml.MappingNode}
				mapSet(n, "interface", ifc)
			}
			setScalar(ifc, "mac", ifMAC)
		} else if ifc := mapGet(n, "interface"); ifc != nil {
			mapDelete(ifc, "mac")
			if len(ifc.Content) == 0 {
				mapDelete(n, "interface")
			}
		}
	}
	if a.VIP != "" {
		if v := mapGet(spec, "vip"); v != nil {
			setScalar(spec, "vip", a.VIP)
		} else {
			mapSetAfter(spec, "vip", strNode(a.VIP), "endpoint")
		}
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("encoding cluster file: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	out := buf.Bytes()
	check, probs := d.Check(out)
	if errs := probs.Errors(); check == nil || len(errs) > 0 {
		return nil, fmt.Errorf("the answers make an invalid cluster file:\n%w", errs)
	}
	return out, nil
}

// findNode finds the node owning the MAC, else the node of that name.
func findNode(nodes *yaml.Node, mac, name string) (n *yaml.Node, byMAC bool) {
	for _, n := range nodes.Content {
		if macs := mapGet(n, "macs"); macs != nil && seqHasMAC(macs, mac) {
			return n, true
		}
	}
	for _, n := range nodes.Content {
		if v := mapGet(n, "name"); v != nil && v.Value == name {
			return n, false
		}
	}
	return nil, false
}

func seqHasMAC(seq *yaml.Node, mac string) bool {
	for _, c := range seq.Content {
		if m, err := cluster.ParseMAC(c.Value); err == nil && m == mac {
			return true
		}
	}
	return false
}

func firstMAC(seq *yaml.Node) string {
	if len(seq.Content) == 0 {
		return ""
	}
	m, _ := cluster.ParseMAC(seq.Content[0].Value)
	return m
}

func strNode(v string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v}
	if strings.ContainsAny(v, ":#{}[],&*!|>'\"%@`") || v == "" {
		n.Style = yaml.DoubleQuotedStyle
	}
	return n
}

func mapGet(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func mapSet(m *yaml.Node, key string, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			old := m.Content[i+1]
			v.HeadComment = old.HeadComment
			if v.Kind == yaml.ScalarNode || old.Kind == v.Kind {
				v.LineComment = old.LineComment
			}
			// Comments below lines of the replaced block (often
			// commented-out settings) stay, after the new block.
			var foot []string
			collectFoot(old, &foot)
			if k := m.Content[i]; len(foot) > 0 {
				foot = append([]string{k.FootComment}, foot...)
				k.FootComment = strings.TrimSpace(strings.Join(foot, "\n"))
			}
			m.Content[i+1] = v
			return
		}
	}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, v)
}

func collectFoot(n *yaml.Node, out *[]string) {
	if n.FootComment != "" {
		*out = append(*out, n.FootComment)
	}
	for _, c := range n.Content {
		collectFoot(c, out)
	}
}

// mapSetAfter adds key after the key `after` (or at the end), or replaces it.
func mapSetAfter(m *yaml.Node, key string, v *yaml.Node, after string) {
	if mapGet(m, key) != nil {
		mapSet(m, key, v)
		return
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == after {
			k := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}
			m.Content = append(m.Content[:i+2], append([]*yaml.Node{k, v}, m.Content[i+2:]...)...)
			return
		}
	}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, v)
}

func mapDelete(m *yaml.Node, key string) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content = append(m.Content[:i], m.Content[i+2:]...)
			return
		}
	}
}

// setScalar changes a scalar in place (keeping its comments) or adds it.
func setScalar(m *yaml.Node, key, value string) {
	if v := mapGet(m, key); v != nil && v.Kind == yaml.ScalarNode {
		if v.Value != value {
			nv := strNode(value)
			v.Value, v.Tag, v.Style = nv.Value, nv.Tag, nv.Style
		}
		return
	}
	mapSet(m, key, strNode(value))
}

func setOrDelete(m *yaml.Node, key, value string) {
	if value == "" {
		mapDelete(m, key)
		return
	}
	setScalar(m, key, value)
}
