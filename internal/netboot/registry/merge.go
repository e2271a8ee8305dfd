package registry

import (
	"time"

	"github.com/dodai-dev/dodai/internal/macaddr"
	"github.com/dodai-dev/dodai/internal/state"
)

// bootSlack is how far apart two boot servers' BootStarted of one boot can
// be: both see the same DISCOVER, but each stamps it when it gets to it
// (and the shared store keeps whole seconds). Two netboots of one machine
// are further apart than this: a boot that reaches the config fetch and an
// install takes minutes, and firmware retries a failed boot after seconds
// of timeouts.
const bootSlack = 10 * time.Second

// Merge takes in a record of a machine that another boot server wrote
// (in-cluster replicas share one registry through the Kubernetes API), so
// that boot once holds whichever replica the machine reaches next. It
// returns the merged record and whether anything changed. It does not call
// OnChange: the record came from the shared store, and writing it back
// would echo it between replicas forever.
//
// The rules, in order:
//   - a later reinstall request (Reinstall) wins: its stage and boot start
//     replace ours; a record from before our latest reinstall request
//     changes no stage;
//   - installed is kept: either side installed means installed;
//   - one boot seen by both (BootStarted within bootSlack): the further
//     stage;
//   - the other saw a later boot: its stage, unless ours says the config
//     was fetched (or applied) in the earlier boot — then the later boot is
//     the reboot after the install, and the machine is installed;
//   - the other's record is of an earlier boot: our stage, unless it saw
//     that boot fetch its config — installed, for the same reason.
//
// Address and architecture come from whichever record was seen last;
// LastSeen is the later of the two. The boot address that may fetch the
// machine's config is never taken from another server (see ConfigAllowed).
func (r *Registry) Merge(rec state.Machine) (state.Machine, bool) {
	mac, err := macaddr.Parse(rec.MAC)
	if err != nil {
		return state.Machine{}, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.machines[mac]
	if m == nil {
		r.dirty = true
		return r.loadLocked(mac, rec).Machine, true
	}
	before := m.Machine
	// Another replica recorded the machine: a change this replica holds
	// from its offer is not the one to pass on.
	m.held = false
	// The shared store keeps whole seconds.
	theirs, ours := rec.Reinstall.Truncate(time.Second), m.Reinstall.Truncate(time.Second)
	switch {
	case theirs.After(ours):
		m.Stage, m.BootStarted, m.Reinstall = rec.Stage, rec.BootStarted, rec.Reinstall
	case theirs.Before(ours):
		// older than the reinstall request we know: its stage is stale
	default:
		m.Stage, m.BootStarted = r.mergeStageLocked(m, rec)
	}
	if m.IP == "" || (rec.IP != "" && rec.LastSeen.After(m.LastSeen)) {
		m.IP = rec.IP
	}
	if m.Arch == "" || (rec.Arch != "" && rec.LastSeen.After(m.LastSeen)) {
		m.Arch = rec.Arch
	}
	if rec.LastSeen.After(m.LastSeen) {
		m.LastSeen = rec.LastSeen
	}
	changed := m.Machine != before
	r.dirty = r.dirty || changed
	return m.Machine, changed
}

// mergeStageLocked decides stage and boot start of m merged with rec (same
// reinstall epoch); see Merge.
func (r *Registry) mergeStageLocked(m *machine, rec state.Machine) (string, time.Time) {
	mine, theirs := Stage(m.Stage), Stage(rec.Stage)
	installed := string(StageInstalled)
	// fetched reports whether a record's boot got Talos installed.
	fetched := func(st Stage) bool { return st == StageConfig }
	switch {
	case mine == StageInstalled || theirs == StageInstalled:
		return installed, m.BootStarted
	case m.BootStarted.IsZero() || rec.BootStarted.IsZero() || rec.BootStarted.Sub(m.BootStarted).Abs() <= bootSlack:
		if theirs.rank() > mine.rank() {
			return rec.Stage, m.BootStarted
		}
		return m.Stage, m.BootStarted
	case rec.BootStarted.After(m.BootStarted):
		if theirs.rank() < StageKernel.rank() && (fetched(mine) || (mine.rank() >= StageKernel.rank() && r.appliedSinceLocked(m))) {
			return installed, m.BootStarted
		}
		return rec.Stage, rec.BootStarted
	default:
		if mine.rank() < StageKernel.rank() && fetched(theirs) {
			return installed, m.BootStarted
		}
		return m.Stage, m.BootStarted
	}
}
