// Package power drives machines' baseboard management controllers (BMCs):
// power state, on, off, cycle, and "boot from the network once" before a
// power-on. One interface, two protocols: IPMI v2.0 over LAN (RMCP+) with
// github.com/bougou/go-ipmi, a native Go implementation (no ipmitool
// binary), and Redfish with github.com/stmcginnis/gofish. Run acts on many
// nodes in parallel, each bounded by its own timeout, so one dead BMC never
// holds up the others.
package power

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/poll"
)

// State is a machine's power state as its BMC reports it.
type State string

// Power states.
const (
	On      State = "on"
	Off     State = "off"
	Unknown State = "unknown"
)

// Action is what Run does.
type Action string

// Actions.
const (
	Status   Action = "status"
	PowerOn  Action = "on"
	PowerOff Action = "off"
	Cycle    Action = "cycle"
)

// ParseAction accepts status, on, off and cycle.
func ParseAction(s string) (Action, error) {
	switch a := Action(s); a {
	case Status, PowerOn, PowerOff, Cycle:
		return a, nil
	}
	return "", fmt.Errorf("unknown power action %q (want status, on, off or cycle)", s)
}

// BMC is one machine's management controller, connected.
type BMC interface {
	// PowerState reads the chassis power state.
	PowerState(ctx context.Context) (State, error)
	// PowerOn, PowerOff (hard) and PowerCycle change it. PowerCycle is only
	// defined for a machine that is on.
	PowerOn(ctx context.Context) error
	PowerOff(ctx context.Context) error
	PowerCycle(ctx context.Context) error
	// SetPXEOnce makes the next boot, and only the next, a network boot.
	SetPXEOnce(ctx context.Context) error
	// Close ends the session.
	Close(ctx context.Context) error
}

// Target is one node's BMC with its credentials.
type Target struct {
	Node        string
	Protocol    string // cluster.BMCProtocolIPMI or cluster.BMCProtocolRedfish
	Address     string
	Port        int
	BootMode    string // cluster.BootModeLegacy, cluster.BootModeUEFI or ""
	CipherSuite int    // IPMI: pinned cipher suite, 0 = negotiate
	Insecure    bool   // Redfish: skip TLS verification
	Username    string
	Password    string
}

// Endpoint is the BMC's host:port.
func (t Target) Endpoint() string { return net.JoinHostPort(t.Address, strconv.Itoa(t.Port)) }

// TargetFor builds a node's Target from its cluster entry and credentials.
func TargetFor(n cluster.Node, c cluster.BMCCredential) (Target, error) {
	if n.BMC == nil {
		return Target{}, fmt.Errorf("node %q has no bmc in cluster.yaml", n.Name)
	}
	b := n.BMC
	return Target{Node: n.Name, Protocol: b.Protocol, Address: b.Address, Port: b.Port, BootMode: b.BootMode,
		CipherSuite: b.CipherSuite, Insecure: b.Insecure, Username: c.Username, Password: c.Password}, nil
}

// Dial connects to a target's BMC with the protocol it names.
func Dial(ctx context.Context, t Target) (BMC, error) {
	switch t.Protocol {
	case cluster.BMCProtocolIPMI, "":
		return DialIPMI(ctx, t)
	case cluster.BMCProtocolRedfish:
		return DialRedfish(ctx, t, nil)
	}
	return nil, fmt.Errorf("unknown BMC protocol %q", t.Protocol)
}

// Request is what Run does on every target.
type Request struct {
	Action Action
	// PXEOnce sets the next boot to the network before powering on
	// (on, cycle). Ignored by status and off.
	PXEOnce bool
	// Timeout bounds each node's whole operation (connect, act, confirm).
	// Default 60s.
	Timeout time.Duration
	// Parallel is the most nodes handled at once; 0 means all.
	Parallel int
	// Dial connects to a BMC; default Dial.
	Dial func(ctx context.Context, t Target) (BMC, error)
	// Poll is the interval of state checks after an action; default 500ms.
	Poll time.Duration
}

// Result is what happened on one node.
type Result struct {
	Node     string        `json:"node"`
	BMC      string        `json:"bmc"`
	Protocol string        `json:"protocol"`
	Action   Action        `json:"action"`
	PXEOnce  bool          `json:"pxeOnce,omitempty"`
	Before   State         `json:"before"`
	After    State         `json:"after"`
	Done     string        `json:"done"`
	Duration time.Duration `json:"-"`
	Seconds  float64       `json:"seconds"`
	Error    string        `json:"error,omitempty"`
	Err      error         `json:"-"`
}

// Run performs the request on every target in parallel (at most
// req.Parallel at once) and returns one result per target, in order.
// Per-node failures are in the results; Run itself never fails.
func Run(ctx context.Context, targets []Target, req Request) []Result {
	if req.Timeout <= 0 {
		req.Timeout = 60 * time.Second
	}
	if req.Dial == nil {
		req.Dial = Dial
	}
	if req.Poll <= 0 {
		req.Poll = 500 * time.Millisecond
	}
	par := req.Parallel
	if par <= 0 || par > len(targets) {
		par = len(targets)
	}
	results := make([]Result, len(targets))
	sem := make(chan struct{}, max(par, 1))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				results[i] = Result{Node: t.Node, BMC: t.Endpoint(), Protocol: t.Protocol, Action: req.Action, Before: Unknown, After: Unknown, Err: ctx.Err(), Error: ctx.Err().Error()}
				return
			}
			defer func() { <-sem }()
			results[i] = runOne(ctx, t, req)
		}()
	}
	wg.Wait()
	return results
}

func runOne(ctx context.Context, t Target, req Request) (r Result) {
	start := time.Now()
	r = Result{Node: t.Node, BMC: t.Endpoint(), Protocol: t.Protocol, Action: req.Action, Before: Unknown, After: Unknown,
		PXEOnce: req.PXEOnce && (req.Action == PowerOn || req.Action == Cycle)}
	ctx, cancel := context.WithTimeout(ctx, req.Timeout)
	defer cancel()
	defer func() {
		r.Duration = time.Since(start)
		r.Seconds = r.Duration.Round(time.Millisecond).Seconds()
		if r.Err != nil {
			if ctx.Err() != nil && !errors.Is(r.Err, context.DeadlineExceeded) && errors.Is(ctx.Err(), context.DeadlineExceeded) {
				r.Err = fmt.Errorf("%w (gave up after %s)", r.Err, req.Timeout)
			}
			r.Error = r.Err.Error()
		}
	}()
	b, err := req.Dial(ctx, t)
	if err != nil {
		r.Err = err
		return r
	}
	defer func() {
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
		defer ccancel()
		b.Close(cctx)
	}()
	r.Before, err = b.PowerState(ctx)
	if err != nil {
		r.Err = fmt.Errorf("reading power state: %w", err)
		return r
	}
	r.After = r.Before
	var want State
	switch req.Action {
	case Status:
		r.Done = "-"
		return r
	case PowerOff:
		want = Off
		if r.Before == Off {
			r.Done = "already off"
			return r
		}
		if err := b.PowerOff(ctx); err != nil {
			r.Err = fmt.Errorf("power off: %w", err)
			return r
		}
		r.Done = "powered off"
	case PowerOn, Cycle:
		want = On
		if req.Action == PowerOn && r.Before == On {
			r.Done = "already on"
			if r.PXEOnce {
				// Setting the flag now would make some later, unrelated
				// reboot netboot; refuse instead of surprising.
				r.Err = errors.New("already on: --pxe-once only applies to a power-on; use cycle to reboot it into the network boot")
			}
			return r
		}
		if r.PXEOnce {
			if err := b.SetPXEOnce(ctx); err != nil {
				r.Err = fmt.Errorf("setting the next boot to PXE: %w", err)
				return r
			}
		}
		if r.Before == On {
			if err := b.PowerCycle(ctx); err != nil {
				r.Err = fmt.Errorf("power cycle: %w", err)
				return r
			}
			r.Done = "power cycled"
		} else {
			if err := b.PowerOn(ctx); err != nil {
				r.Err = fmt.Errorf("power on: %w", err)
				return r
			}
			r.Done = "powered on"
			if req.Action == Cycle {
				r.Done = "was off: powered on"
			}
		}
		if r.PXEOnce {
			r.Done += ", PXE once"
		}
	}
	// Confirm: the BMC must report the state the action leads to. A BMC busy
	// with the action may drop the session: after a failed read, reconnect.
	read := false  // a read after the action succeeded
	var last error // the latest read's error (nil: it succeeded)
	err = poll.Until(ctx, poll.Options{Interval: req.Poll}, func(ctx context.Context) (bool, error) {
		s, err := b.PowerState(ctx)
		last = err
		if err == nil {
			r.After, read = s, true
			return s == want, nil
		}
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
		b.Close(cctx)
		ccancel()
		if nb, derr := req.Dial(ctx, t); derr == nil {
			b = nb
		}
		return false, nil
	})
	if err == nil {
		return r
	}
	// A read cut by the deadline itself says nothing about the BMC: the
	// last state it did report is the answer then.
	if last != nil && (!read || !errors.Is(last, context.DeadlineExceeded) && !errors.Is(last, context.Canceled)) {
		r.Err = fmt.Errorf("%s, but reading the power state afterwards failed: %w", r.Done, last)
	} else {
		r.Err = fmt.Errorf("%s, but the BMC still reports %s after %s", r.Done, r.After, req.Timeout)
	}
	return r
}

// Failed counts the results with an error.
func Failed(rs []Result) int {
	n := 0
	for _, r := range rs {
		if r.Err != nil {
			n++
		}
	}
	return n
}
