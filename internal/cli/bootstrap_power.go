package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/dodai-dev/dodai/internal/bootstrap"
	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/machineconfig"
	"github.com/dodai-dev/dodai/internal/netboot/registry"
	"github.com/dodai-dev/dodai/internal/power"
	"github.com/dodai-dev/dodai/internal/talos"
)

// bootPower is `dodai bootstrap --power`: hands-free install through the
// nodes' BMCs before the normal bootstrap path.
type bootPower struct {
	on      bool
	batch   int
	reach   time.Duration
	timeout time.Duration
}

func (p *bootPower) flags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.BoolVar(&p.on, "power", false, "first power the nodes that are not installed yet through their BMCs, booting from the network once, and follow them through dodai netboot (which must be running)")
	f.IntVar(&p.batch, "power-batch", 0, "with --power: at most this many machines booting at once; the next is powered when one has fetched its kernel (0: all)")
	f.DurationVar(&p.reach, "power-wait", 10*time.Minute, "with --power: bound for each machine from power-on until its Talos API answers")
	f.DurationVar(&p.timeout, "power-timeout", 60*time.Second, "with --power: bound for each BMC operation")
}

// run powers the selected nodes with a bmc that do not answer the
// authenticated Talos API yet, in batches, and waits until each netbooted
// and its Talos API (maintenance mode, or configured when netboot served
// its config) answers. It prints one row per node to stderr (stdout keeps
// bootstrap's own result) and returns the failures, each naming its node.
func (p *bootPower) run(ctx context.Context, g *Globals, src *cluster.Source, r *machineconfig.Renderer, names []string, port int) error {
	sel, err := selectPower(g, src, names, "--power: not powering (no bmc)")
	if err != nil {
		return err
	}
	tc, err := r.Talosconfig()
	if err != nil {
		return err
	}
	byName := map[string]*cluster.Node{}
	for i := range src.Cluster.Spec.Nodes {
		byName[src.Cluster.Spec.Nodes[i].Name] = &src.Cluster.Spec.Nodes[i]
	}
	// Installed nodes (answering the authenticated API on their address)
	// are left alone: --power never reboots a working node.
	installed := make([]bool, len(sel.Targets))
	var wg sync.WaitGroup
	for i, t := range sel.Targets {
		if a := bootstrap.NodeIP(byName[t.Node]); a != "" {
			wg.Go(func() { installed[i] = bootstrap.Answers(ctx, tc, a, port) == nil })
		}
	}
	wg.Wait()
	var ms []power.Machine
	for i, t := range sel.Targets {
		n := byName[t.Node]
		if installed[i] {
			fmt.Fprintf(g.Err, "--power: %s is installed (answers on %s), not powering it\n", n.Name, bootstrap.NodeIP(n))
			continue
		}
		ms = append(ms, power.Machine{Target: t, MACs: n.MACs})
	}
	var errs []error
	for _, f := range sel.Failed {
		errs = append(errs, &bootstrap.NodeError{Node: f.Node, Err: fmt.Errorf("power: %w", f.Err)})
	}
	if len(ms) == 0 {
		return errors.Join(errs...)
	}
	ready := func(ctx context.Context, node, ip string) error {
		addrs := []string{}
		if ip != "" {
			addrs = append(addrs, ip)
		}
		if a := bootstrap.NodeIP(byName[node]); a != "" && a != ip {
			addrs = append(addrs, a)
		}
		var last error
		for _, a := range addrs {
			d := net.Dialer{Timeout: 2 * time.Second}
			c, err := d.DialContext(ctx, "tcp", talos.Endpoint(a, port))
			if err == nil {
				c.Close()
				return nil
			}
			last = err
		}
		if last == nil {
			last = errors.New("no address known yet")
		}
		return fmt.Errorf("the Talos API does not answer: %w", last)
	}
	g.Log.Info("powering for a network install", "nodes", len(ms), "batch", p.batch)
	rs := power.Install(ctx, ms, power.InstallOptions{Batch: p.batch, Until: registry.StageKernel, Reach: p.reach, Ready: ready,
		Machines: power.NetbootMachines(g.Paths().MachinesState()), Power: power.Request{Timeout: p.timeout}, Log: g.Log})
	rows := make([][]string, 0, len(rs))
	for _, x := range rs {
		res := "ok"
		if x.Err != nil {
			res = "error: " + x.Error
			errs = append(errs, &bootstrap.NodeError{Node: x.Node(), Err: x.Err})
		}
		rows = append(rows, []string{x.Node(), x.Power.BMC, orDash(x.Power.Done), orDash(x.Stage), orDash(x.IP), fmt.Sprintf("%.1fs", x.Seconds), res})
	}
	if err := Table(g.Err, []string{"NODE", "BMC", "POWER", "NETBOOT", "IP", "TIME", "RESULT"}, rows); err != nil {
		return err
	}
	return errors.Join(errs...)
}
