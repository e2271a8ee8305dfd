package power

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/dodai-dev/dodai/internal/macaddr"
	"github.com/dodai-dev/dodai/internal/netboot/registry"
	"github.com/dodai-dev/dodai/internal/poll"
	"github.com/dodai-dev/dodai/internal/state"
)

// Machine is a node to power for a network install: its BMC and the MACs
// dodai netboot knows it by.
type Machine struct {
	Target
	MACs []string
}

// InstallOptions configure Install.
type InstallOptions struct {
	// Batch is the most machines powered at once (boot storms: DHCP, TFTP
	// and HTTP of many machines at the same moment). The next batch is
	// powered when every machine of this one reached Until or failed.
	// 0 means all at once.
	Batch int
	// Until is the netboot stage that frees a machine's place in its batch
	// (default registry.StageKernel: its kernel and initramfs are fetched).
	Until registry.Stage
	// Reach bounds each machine from its power-on to Until, and to Ready
	// (default 10 minutes).
	Reach time.Duration
	// Ready, if set, is polled once a machine reached Until, with its
	// address from netboot, until it returns nil or Reach ends (for
	// bootstrap: the Talos API answers).
	Ready func(ctx context.Context, node, ip string) error
	// Machines reads dodai netboot's registry (state/machines.json).
	Machines func() ([]state.Machine, error)
	// Power is the request for each batch; Action and PXEOnce are set
	// by Install (cycle, PXE once).
	Power Request
	// Poll is the interval of registry reads (default 1s).
	Poll time.Duration
	// Log receives the live view: one line per stage a machine reaches.
	Log *slog.Logger
}

// InstallResult is one machine's way from power-on to its netboot.
type InstallResult struct {
	Power Result `json:"power"`
	// Stage is the last netboot stage seen in this boot ("" for none).
	Stage string `json:"stage"`
	// IP is the address netboot saw it at.
	IP string `json:"ip,omitempty"`
	// Seconds from power-on to Until (or to Ready, when set).
	Seconds float64 `json:"seconds"`
	Error   string  `json:"error,omitempty"`
	Err     error   `json:"-"`
}

// Node is the machine's node name.
func (r InstallResult) Node() string { return r.Power.Node }

// Install powers the machines in batches, each with its next boot set to
// the network once (a machine that is on is power cycled), and follows each
// through the netboot stages dodai netboot records. A machine whose BMC
// fails, that never shows up at netboot, or that stops short of Until (or
// of Ready) within Reach gets its own error; the others go on.
func Install(ctx context.Context, ms []Machine, o InstallOptions) []InstallResult {
	if o.Until == "" {
		o.Until = registry.StageKernel
	}
	if o.Reach <= 0 {
		o.Reach = 10 * time.Minute
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	batch := o.Batch
	if batch <= 0 || batch > len(ms) {
		batch = len(ms)
	}
	req := o.Power
	req.Action, req.PXEOnce = Cycle, true
	out := make([]InstallResult, len(ms))
	var all sync.WaitGroup
	for start := 0; start < len(ms); start += batch {
		end := min(start+batch, len(ms))
		targets := make([]Target, 0, end-start)
		for _, m := range ms[start:end] {
			targets = append(targets, m.Target)
		}
		// Taken before the BMC calls: whatever netboot sees of these
		// machines from now on is this boot.
		t0 := time.Now()
		prs := Run(ctx, targets, req)
		var gate sync.WaitGroup
		for j, pr := range prs {
			i := start + j
			out[i] = InstallResult{Power: pr}
			if pr.Err != nil {
				out[i].Err, out[i].Error = pr.Err, "power: "+pr.Error
				continue
			}
			o.Log.Info("powered, network boot once", "node", pr.Node, "done", pr.Done, "took", pr.Duration.Round(time.Millisecond))
			gate.Add(1)
			all.Add(1)
			go func() {
				defer all.Done()
				out[i] = follow(ctx, ms[i], pr, t0, o, gate.Done)
			}()
		}
		gate.Wait()
	}
	all.Wait()
	return out
}

// follow watches one machine's netboot from t0 on; reached is called once,
// when the machine reached o.Until or gave up.
func follow(ctx context.Context, m Machine, pr Result, t0 time.Time, o InstallOptions, reached func()) InstallResult {
	res := InstallResult{Power: pr}
	var once sync.Once
	free := func() { once.Do(reached) }
	defer free()
	ctx, cancel := context.WithTimeout(ctx, o.Reach)
	defer cancel()
	macs := map[string]bool{}
	for _, s := range m.MACs {
		if c, err := macaddr.Canonical(s); err == nil {
			macs[c] = true
		}
	}
	until := slices.Index(registry.Stages, o.Until)
	var readErr, readyErr error
	err := poll.Until(ctx, poll.Options{Interval: o.Poll}, func(ctx context.Context) (bool, error) {
		if ms, err := o.Machines(); err != nil {
			readErr = err
		} else {
			readErr = nil
			for _, e := range ms {
				c, err := macaddr.Canonical(e.MAC)
				if err != nil || !macs[c] || e.LastSeen.Before(t0) {
					continue
				}
				if e.Stage != res.Stage {
					res.Stage, res.IP = e.Stage, e.IP
					o.Log.Info("netboot", "node", m.Node, "stage", e.Stage, "ip", e.IP, "after", time.Since(t0).Round(100*time.Millisecond))
				}
			}
		}
		if slices.Index(registry.Stages, registry.Stage(res.Stage)) < until {
			return false, nil
		}
		free()
		if o.Ready == nil {
			return true, nil
		}
		readyErr = o.Ready(ctx, m.Node, res.IP)
		return readyErr == nil, nil
	})
	if err != nil {
		res.Err = stuck(m, res, t0, o, readErr, readyErr, ctx.Err())
		res.Error = res.Err.Error()
		return res
	}
	res.Seconds = time.Since(t0).Round(100 * time.Millisecond).Seconds()
	return res
}

// stuck says where a machine stopped.
func stuck(m Machine, res InstallResult, t0 time.Time, o InstallOptions, readErr, readyErr, ctxErr error) error {
	waited := time.Since(t0).Round(time.Second)
	if ctxErr != context.DeadlineExceeded {
		return fmt.Errorf("stopped after %s at netboot stage %q: %w", waited, orNone(res.Stage), ctxErr)
	}
	switch {
	case readErr != nil:
		return fmt.Errorf("powered on, but reading dodai netboot's machine registry failed: %w", readErr)
	case res.Stage == "":
		return fmt.Errorf("powered on with PXE once, but dodai netboot never saw MAC %v within %s (is dodai netboot running on its boot network? does the machine boot from the network?)", m.MACs, waited)
	case readyErr != nil:
		return fmt.Errorf("netbooted (stage %s, %s), but not ready within %s: %w", res.Stage, res.IP, waited, readyErr)
	}
	return fmt.Errorf("netboot stopped at stage %s (%s) for %s; it must reach %s", res.Stage, res.IP, waited, o.Until)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// NetbootMachines reads dodai netboot's registry file (cluster.Layout's
// MachinesState).
func NetbootMachines(path string) func() ([]state.Machine, error) {
	return func() ([]state.Machine, error) {
		reg, err := state.ReadMachines(path)
		if err != nil {
			return nil, err
		}
		return reg.Machines, nil
	}
}
