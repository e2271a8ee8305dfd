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

// Run discovers machines, asks about them and writes cluster.yaml. What it
// proposes is decided by bootstrap.Propose; the screens show it and ask.
func Run(ctx context.Context, opts Options) ([]string, error) {
	d := opts.Dir
	fmt.Fprintln(opts.Out, "Searching for Talos machines in maintenance mode…")
	tg, machines, err := discover.Find(ctx, d.Layout, d.Cluster(), opts.Networks, discover.Options{Port: opts.Port, Log: opts.Log})
	if err != nil {
		return nil, err
	}
	if len(machines) == 0 {
		return nil, fmt.Errorf("no Talos machine in maintenance mode found on %v %v", tg.Networks, tg.Hosts)
	}

	// Screen 1: which machines.
	var pickedMACs []string
	var choices []huh.Option[string]
	for _, m := range machines {
		label := fmt.Sprintf("%-15s %s  %-12s %s, %.0f GiB, %d disks", m.Address, m.MAC, m.Node, m.CPUSummary(), float64(m.MemoryMiB)/1024, len(m.Disks))
		choices = append(choices, huh.NewOption(label, m.MAC).Selected(true))
	}
	if err := form(opts, huh.NewGroup(huh.NewMultiSelect[string]().Title("Machines to configure").
		Description("space: toggle, enter: continue").Options(choices...).Value(&pickedMACs).
		Validate(func(v []string) error {
			if len(v) == 0 {
				return errors.New("pick at least one machine")
			}
			return nil
		}))).RunWithContext(ctx); err != nil {
		return nil, err
	}
	var picked []*talos.Machine
	for _, m := range machines {
		if slices.Contains(pickedMACs, m.MAC) {
			picked = append(picked, m)
		}
	}

	// Screen 2: one per machine, prefilled with the proposal.
	st, err := state.ReadBootstrap(d.BootstrapState())
	if err != nil {
		return nil, err
	}
	prop := bootstrap.Propose(d.Cluster(), st, machines, picked)
	answers := make([]clusterdir.NodeEdit, len(prop.Machines))
	dns := make([]string, len(prop.Machines))
	var groups []*huh.Group
	for i, mp := range prop.Machines {
		answers[i] = mp.Edit
		dns[i] = strings.Join(mp.Edit.DNS, ", ")
		groups = append(groups, nodeGroup(prop, mp, &answers[i], &dns[i]))
	}
	vip := d.Cluster().Spec.VIP
	groups = append(groups, huh.NewGroup(huh.NewInput().Title("Control-plane VIP (optional, shared address for the Kubernetes API)").
		Value(&vip).Validate(optionalIP)))
	if err := form(opts, groups...).RunWithContext(ctx); err != nil {
		return nil, err
	}
	edit := clusterdir.Edit{VIP: strings.TrimSpace(vip), Protected: prop.Protected}
	disks := make([]talos.Disk, len(prop.Machines))
	var names []string
	for i, mp := range prop.Machines {
		answers[i].DNS = splitList(dns[i])
		answers[i], disks[i] = mp.Finish(answers[i])
		edit.Nodes = append(edit.Nodes, answers[i])
		names = append(names, answers[i].Name)
	}
	out, err := d.Apply(edit)
	if err != nil {
		return nil, err
	}

	// Screen 3: confirm.
	confirm := true
	if err := form(opts, huh.NewGroup(
		huh.NewNote().Title("Changes to "+d.ClusterFile()).Description(summary(edit)),
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
	for i, a := range edit.Nodes {
		if disks[i].DevPath == "" {
			continue
		}
		if err := bootstrap.ConfirmDisk(d.Layout, a.Name, disks[i]); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(opts.Out, "Wrote %s\n", d.ClusterFile())
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

// nodeGroup is the screen for one machine: talos-bootstrap's questions.
func nodeGroup(prop bootstrap.Proposal, mp bootstrap.MachineProposal, a *clusterdir.NodeEdit, dns *string) *huh.Group {
	m := mp.Machine
	var diskOpts []huh.Option[string]
	for _, d := range mp.Disks {
		diskOpts = append(diskOpts, huh.NewOption(fmt.Sprintf("%-8s %8s  %s  serial %s  %s", d.Name, d.PrettySize, d.Model, orDash(d.Serial), d.Transport), d.DevPath))
	}
	var linkOpts []huh.Option[string]
	for _, l := range m.Links {
		linkState := "down"
		if l.Up {
			linkState = "up"
		}
		linkOpts = append(linkOpts, huh.NewOption(fmt.Sprintf("%s  %s  %s  %s", l.MAC, l.Name, linkState, strings.Join(l.Addresses, ",")), l.MAC))
	}
	return huh.NewGroup(
		huh.NewNote().Title(fmt.Sprintf("Machine %s (%s)", m.MAC, m.Address)).Description(fmt.Sprintf("%s · %s · %.0f GiB · Talos %s", orDash(m.Hostname), m.CPUSummary(), float64(m.MemoryMiB)/1024, m.TalosVersion)),
		huh.NewSelect[string]().Title("Role").Options(huh.NewOption("control plane", cluster.RoleControlPlane), huh.NewOption("worker", cluster.RoleWorker)).Value(&a.Role),
		huh.NewInput().Title("Hostname (node name)").Value(&a.Name).Validate(func(s string) error { return prop.CheckName(mp, s) }),
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
	)
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
