package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/dodai-dev/dodai/internal/netboot/registry"
	"github.com/dodai-dev/dodai/internal/poll"
	"github.com/dodai-dev/dodai/internal/power"
)

// reinstallPower is `dodai node reinstall --power`: the reset powers the
// machine off, and it comes back through its BMC and dodai netboot.
type reinstallPower struct {
	on      bool
	reach   time.Duration
	timeout time.Duration
}

func (p *reinstallPower) flags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.BoolVar(&p.on, "power", false, "hands-free through the node's BMC: the reset powers the machine off, then it is powered on booting from the network once and followed through dodai netboot (which must be running) before the install")
	f.DurationVar(&p.reach, "power-wait", 10*time.Minute, "with --power: bound for the machine to power off after the reset, and from power-on until it fetched its kernel from dodai netboot")
	f.DurationVar(&p.timeout, "power-timeout", 60*time.Second, "with --power: bound for each BMC operation")
}

// powerOn returns node.Options.PowerOn for the named node, or an error
// before anything changes when the node has no usable BMC.
func (p *reinstallPower) powerOn(g *Globals, d *day2, name string, macs []string, interval time.Duration) (func(context.Context) (string, error), error) {
	sel, err := selectPower(g, d.src, []string{name}, "--power: no bmc")
	if err != nil {
		return nil, fmt.Errorf("--power: %w", err)
	}
	if len(sel.Failed) > 0 {
		return nil, fmt.Errorf("--power: node %s: %w", name, sel.Failed[0].Err)
	}
	if len(sel.Targets) != 1 {
		return nil, fmt.Errorf("--power: node %s has no bmc in the cluster file", name)
	}
	t := sel.Targets[0]
	// A BMC is asked at most every half second, whatever the poll interval.
	interval = max(interval, 500*time.Millisecond)
	return func(ctx context.Context) (string, error) {
		// Talos powers the machine off at the end of its reset, after the
		// wipe; its API stops answering before that. Powering on (a
		// cycle, while it still runs) must wait for the BMC to say off.
		start := time.Now()
		err := poll.Until(ctx, poll.Options{Interval: interval, Timeout: p.reach, OnProgress: func(pr poll.Progress) {
			g.Log.Info("waiting for the machine to power off after the reset", "node", name, "elapsed", pr.Elapsed.Round(time.Second), "last", pr.Last)
		}}, func(ctx context.Context) (bool, error) {
			r := power.Run(ctx, []power.Target{t}, power.Request{Action: power.Status, Timeout: p.timeout})[0]
			if r.Err != nil {
				return false, r.Err
			}
			return r.Before == power.Off, nil
		})
		if err != nil {
			return "", fmt.Errorf("the BMC (%s) does not report the machine off after the reset: %w", t.Address, err)
		}
		g.Log.Info("powered off after the reset", "node", name, "after", time.Since(start).Round(100*time.Millisecond))
		r := power.Install(ctx, []power.Machine{{Target: t, MACs: macs}}, power.InstallOptions{Batch: 1, Until: registry.StageKernel, Reach: p.reach,
			Machines: power.NetbootMachines(d.layout.MachinesState()), Power: power.Request{Timeout: p.timeout}, Log: g.Log})[0]
		if r.Err != nil {
			return "", r.Err
		}
		return fmt.Sprintf("%s; netboot stage %s at %s after %.1fs", r.Power.Done, r.Stage, r.IP, r.Seconds), nil
	}, nil
}
