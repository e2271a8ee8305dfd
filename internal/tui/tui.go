// Package tui is `dodai bootstrap --interactive`: terminal screens in the
// spirit of talos-bootstrap's dialog boxes (charmbracelet huh), each field
// prefilled from the machine's inventory. The answers are written into
// cluster.yaml, which stays the single source of truth; bootstrap then runs
// the same declarative path as without --interactive.
package tui

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"github.com/charmbracelet/huh"

	"github.com/dodai-dev/dodai/internal/bootstrap"
	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/clusterdir"
	"github.com/dodai-dev/dodai/internal/discover"
	"github.com/dodai-dev/dodai/internal/state"
	"github.com/dodai-dev/dodai/internal/talos"
)

// Options of the interactive session.
type Options struct {
	// Dir is the opened cluster directory; its cluster file is changed.
	Dir      *clusterdir.Dir
	Networks []netip.Prefix
	Port     int
	In       io.Reader
	Out      io.Writer
	Log      *slog.Logger
}

var labelRe = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// Run discovers machines, asks about them and writes cluster.yaml.
func Run(ctx context.Context, opts Options) ([]string, error) {
	d := opts.Dir
	src, path := d.Source, d.ClusterFile()
	nets := opts.Networks
	if len(nets) == 0 {
		var err error
		if nets, err = discover.DefaultNetworks(); err != nil {
			return nil, err
		}
	}
	hosts, err := discover.RegistryHosts(d.Layout)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(opts.Out, "Searching for Talos machines in maintenance mode on %v…\n", nets)
	machines, err := discover.Scan(ctx, discover.Options{Networks: nets, Hosts: hosts, Port: opts.Port, Log: opts.Log})
	if err != nil {
		return nil, err
	}
	discover.Match(machines, src.Cluster)
	if len(machines) == 0 {
		return nil, fmt.Errorf("no Talos machine in maintenance mode found on %v", nets)
	}

	// Screen 1: which machines.
	var picked []string
	var choices []huh.Option[string]
	for _, m := range machines {
		label := fmt.Sprintf("%-15s %s  %-12s %s, %.0f GiB, %d disks", m.Address, m.MAC, m.Node, m.CPUSummary(), float64(m.MemoryMiB)/1024, len(m.Disks))
		choices = append(choices, huh.NewOption(label, m.MAC).Selected(true))
	}
	if err := form(opts, huh.NewGroup(huh.NewMultiSelect[string]().Title("Machines to configure").
		Description("space: toggle, enter: continue").Options(choices...).Value(&picked).
		Validate(func(v []string) error {
			if len(v) == 0 {
				return errors.New("pick at least one machine")
			}
			return nil
		}))).RunWithContext(ctx); err != nil {
		return nil, err
	}

	// Names and control-plane slots are taken by nodes that are real: they
	// match a discovered machine or bootstrap knows them. The others (like
	// the placeholder node of `dodai init`) may be taken over.
	st, err := state.ReadBootstrap(d.BootstrapState())
	if err != nil {
		return nil, err
	}
	cps := 0
	taken := map[string]bool{}
	real := map[string]bool{}
	for _, n := range src.Cluster.Spec.Nodes {
		isReal := st.Nodes[n.Name] != nil
		for _, m := range machines {
			if m.Node == n.Name {
				isReal = true
			}
		}
		if !isReal {
			continue
		}
		taken[n.Name] = true
		real[n.Name] = true
		if n.Role == cluster.RoleControlPlane {
			cps++
		}
	}
	var answers clusterdir.Edit
	var groups []*huh.Group
	type pending struct {
		m   *talos.Machine
		a   *clusterdir.NodeEdit
		dns *string
	}
	var all []pending
	for _, m := range machines {
		if !slices.Contains(picked, m.MAC) {
			continue
		}
		a, dns := prefill(m, src.Cluster, &cps, taken)
		all = append(all, pending{m, a, dns})
		groups = append(groups, nodeGroup(m, a, dns, real)...)
	}
	vip := src.Cluster.Spec.VIP
	groups = append(groups, huh.NewGroup(huh.NewInput().Title("Control-plane VIP (optional, shared address for the Kubernetes API)").
		Value(&vip).Validate(optionalIP)))
	if err := form(opts, groups...).RunWithContext(ctx); err != nil {
		return nil, err
	}
	var names []string
	for _, p := range all {
		names = append(names, p.a.Name)
		p.a.DNS = splitList(*p.dns)
		p.a.DiskSerial = ""
		for _, disk := range p.m.Disks {
			if disk.DevPath == p.a.DiskPath {
				p.a.DiskSerial = disk.Serial
			}
		}
		answers.Nodes = append(answers.Nodes, *p.a)
	}
	answers.VIP = strings.TrimSpace(vip)
	answers.Protected = real

	out, err := d.Apply(answers)
	if err != nil {
		return nil, err
	}
	confirm := true
	if err := form(opts, huh.NewGroup(
		huh.NewNote().Title("Changes to "+path).Description(summary(answers)),
		huh.NewConfirm().Title("Write cluster.yaml and bootstrap?").Affirmative("Yes").Negative("No").Value(&confirm),
	)).RunWithContext(ctx); err != nil {
		return nil, err
	}
	if !confirm {
		return nil, errors.New("cancelled: cluster.yaml not changed")
	}
	if err := d.WriteClusterFile(out); err != nil {
		return nil, err
	}
	// The disks the user picked are the confirmed ones.
	for _, p := range all {
		for _, disk := range p.m.Disks {
			if (p.a.DiskSerial != "" && disk.Serial == p.a.DiskSerial) || (p.a.DiskSerial == "" && disk.DevPath == p.a.DiskPath) {
				if err := bootstrap.ConfirmDisk(d.Layout, p.a.Name, disk); err != nil {
					return nil, err
				}
			}
		}
	}
	fmt.Fprintf(opts.Out, "Wrote %s\n", path)
	return names, nil
}

func form(opts Options, groups ...*huh.Group) *huh.Form {
	f := huh.NewForm(groups...).WithShowHelp(true)
	if opts.In != nil {
		f = f.WithInput(opts.In)
	}
	if opts.Out != nil {
		f = f.WithOutput(opts.Out)
	}
	return f
}

// prefill answers from the cluster file (when the machine is a known node)
// and the machine's inventory.
func prefill(m *talos.Machine, c *cluster.Cluster, cps *int, taken map[string]bool) (*clusterdir.NodeEdit, *string) {
	a := &clusterdir.NodeEdit{MAC: m.MAC}
	node := discover.NodeFor(m, c)
	if node != nil {
		a.Name, a.Role, a.Address, a.Gateway, a.DNS = node.Name, node.Role, node.Address, node.Gateway, node.Nameservers
		if node.Interface != nil {
			// The menu offers canonical MACs; a prefill in another notation
			// (upper case, dashes) would match no choice and silently become
			// the first link.
			a.InterfaceMAC = node.Interface.MAC
			if mac, err := cluster.ParseMAC(node.Interface.MAC); err == nil {
				a.InterfaceMAC = mac
			}
		}
		if d, err := bootstrap.ResolveDisk(node, m.Disks); err == nil {
			a.DiskSerial, a.DiskPath = d.Serial, d.DevPath
		}
	} else {
		a.Role = cluster.RoleWorker
		prefix := "w"
		if *cps < 3 {
			a.Role, prefix = cluster.RoleControlPlane, "cp"
			*cps++
		}
		for i := 1; ; i++ {
			if name := fmt.Sprint(prefix, i); !taken[name] {
				a.Name = name
				taken[name] = true
				break
			}
		}
	}
	if a.DiskSerial == "" && a.DiskPath == "" {
		for _, d := range m.Disks {
			if safeDisk(d) {
				a.DiskSerial, a.DiskPath = d.Serial, d.DevPath
				break
			}
		}
	}
	for _, l := range m.Links {
		if a.InterfaceMAC == "" && len(l.Addresses) > 0 {
			a.InterfaceMAC = l.MAC
		}
	}
	if a.InterfaceMAC == "" {
		a.InterfaceMAC = m.MAC
	}
	if a.Address == "" && len(m.Addresses) > 0 {
		a.Address = m.Addresses[0]
	}
	if a.Gateway == "" {
		a.Gateway = m.Gateway
	}
	if len(a.DNS) == 0 {
		a.DNS = m.DNS
	}
	dns := strings.Join(a.DNS, ", ")
	return a, &dns
}

func safeDisk(d talos.Disk) bool { return bootstrap.UnsafeReason(d) == "" }

// nodeGroup is the screen for one machine: talos-bootstrap's questions.
func nodeGroup(m *talos.Machine, a *clusterdir.NodeEdit, dns *string, protected map[string]bool) []*huh.Group {
	own := m.Node // the node this machine already is, if any
	title := fmt.Sprintf("Machine %s (%s)", m.MAC, m.Address)
	var diskOpts []huh.Option[string]
	for _, d := range m.Disks {
		if !safeDisk(d) {
			continue
		}
		diskOpts = append(diskOpts, huh.NewOption(fmt.Sprintf("%-8s %8s  %s  serial %s  %s", d.Name, d.PrettySize, d.Model, orDash(d.Serial), d.Transport), d.DevPath))
	}
	var linkOpts []huh.Option[string]
	for _, l := range m.Links {
		state := "down"
		if l.Up {
			state = "up"
		}
		linkOpts = append(linkOpts, huh.NewOption(fmt.Sprintf("%s  %s  %s  %s", l.MAC, l.Name, state, strings.Join(l.Addresses, ",")), l.MAC))
	}
	return []*huh.Group{huh.NewGroup(
		huh.NewNote().Title(title).Description(fmt.Sprintf("%s · %s · %.0f GiB · Talos %s", orDash(m.Hostname), m.CPUSummary(), float64(m.MemoryMiB)/1024, m.TalosVersion)),
		huh.NewSelect[string]().Title("Role").Options(huh.NewOption("control plane", cluster.RoleControlPlane), huh.NewOption("worker", cluster.RoleWorker)).Value(&a.Role),
		huh.NewInput().Title("Hostname (node name)").Value(&a.Name).Validate(func(s string) error {
			if !labelRe.MatchString(s) {
				return errors.New("lowercase letters, digits and '-'")
			}
			if s != own && protected[s] {
				return fmt.Errorf("%s is another machine's node", s)
			}
			return nil
		}),
		huh.NewSelect[string]().Title("Install disk").Options(diskOpts...).Value(&a.DiskPath),
		huh.NewSelect[string]().Title("Interface (selected by MAC)").Options(linkOpts...).Value(&a.InterfaceMAC),
		huh.NewInput().Title("Address (CIDR)").Value(&a.Address).Validate(func(s string) error {
			if _, err := netip.ParsePrefix(strings.TrimSpace(s)); err != nil {
				return errors.New("an address with prefix length, e.g. 192.168.100.11/24")
			}
			return nil
		}),
		huh.NewInput().Title("Gateway").Value(&a.Gateway).Validate(optionalIP),
		huh.NewInput().Title("DNS servers (comma-separated)").Value(dns).Validate(func(s string) error {
			for _, d := range splitList(s) {
				if _, err := netip.ParseAddr(d); err != nil {
					return fmt.Errorf("%q is not an IP address", d)
				}
			}
			return nil
		}),
	)}
}

func optionalIP(s string) error {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	if _, err := netip.ParseAddr(strings.TrimSpace(s)); err != nil {
		return errors.New("an IP address, or empty")
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		out = append(out, strings.TrimSpace(p))
	}
	return out
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// summary is one line per configured machine for the confirmation screen.
func summary(a clusterdir.Edit) string {
	var b strings.Builder
	for _, n := range a.Nodes {
		disk := n.DiskPath
		if n.DiskSerial != "" {
			disk += " (serial " + n.DiskSerial + ")"
		}
		fmt.Fprintf(&b, "%-8s %-12s %s  %-18s gw %-15s disk %s\n", n.Name, n.Role, n.MAC, n.Address, orDash(n.Gateway), disk)
	}
	if a.VIP != "" {
		fmt.Fprintf(&b, "VIP %s\n", a.VIP)
	}
	return b.String()
}
