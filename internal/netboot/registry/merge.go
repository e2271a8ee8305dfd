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
	m.Stage, m.BootStarted, m.Reinstall = mergeStage(m.Machine, rec, func() bool { return r.appliedSinceLocked(m) })
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

// MergeStage is Merge's stage rule for two records of one machine held
// outside a registry (the shared store's Machine, ours, and a replica's
// record about to be written over it, theirs): it returns the stage, boot
// start and reinstall request the merged record has, so a record from a
// replica that saw less of a boot never moves the stored stage back, while
// a later boot or reinstall request still starts over. Unlike Merge it
// knows nothing of configs applied since a boot began: the registry that
// wrote theirs already took that into account.
func MergeStage(ours, theirs state.Machine) (stage string, bootStarted, reinstall time.Time) {
	return mergeStage(ours, theirs, func() bool { return false })
}

// mergeStage decides stage, boot start and reinstall request of ours
// merged with theirs; appliedSince reports whether a config was applied
// after ours' boot began (see Merge; asked only when it matters).
func mergeStage(ours, theirs state.Machine, appliedSince func() bool) (string, time.Time, time.Time) {
	// The shared store keeps whole seconds.
	t, o := theirs.Reinstall.Truncate(time.Second), ours.Reinstall.Truncate(time.Second)
	switch {
	case t.After(o):
		return theirs.Stage, theirs.BootStarted, theirs.Reinstall
	case t.Before(o):
		// older than the reinstall request we know: its stage is stale
		return ours.Stage, ours.BootStarted, ours.Reinstall
	}
	if ours.BootStarted.IsZero() {
		// ours never saw a boot start (a new record, or one seen over
		// HTTP only): theirs knows when it began.
		ours.BootStarted = theirs.BootStarted
	}
	mine, their := Stage(ours.Stage), Stage(theirs.Stage)
	installed := string(StageInstalled)
	// fetched reports whether a record's boot got Talos installed.
	fetched := func(st Stage) bool { return st == StageConfig }
	switch {
	case mine == StageInstalled || their == StageInstalled:
		return installed, ours.BootStarted, ours.Reinstall
	case ours.BootStarted.IsZero() || theirs.BootStarted.IsZero() || theirs.BootStarted.Sub(ours.BootStarted).Abs() <= bootSlack:
		if their.rank() > mine.rank() {
			return theirs.Stage, ours.BootStarted, ours.Reinstall
		}
		return ours.Stage, ours.BootStarted, ours.Reinstall
	case theirs.BootStarted.After(ours.BootStarted):
		if their.rank() < StageKernel.rank() && (fetched(mine) || (mine.rank() >= StageKernel.rank() && appliedSince())) {
			return installed, ours.BootStarted, ours.Reinstall
		}
		return theirs.Stage, theirs.BootStarted, ours.Reinstall
	default:
		if mine.rank() < StageKernel.rank() && fetched(their) {
			return installed, ours.BootStarted, ours.Reinstall
		}
		return ours.Stage, ours.BootStarted, ours.Reinstall
	}
}
