// Package phase names where a node stands, as dodai reports and compares it
// across packages: the stage a Talos node reports about itself (Talos'
// runtime.MachineStage: booting, maintenance, running, …), what dodai sees
// from outside (not installed, unreachable) and what a run did to the node
// (applied, configured, failed). Bootstrap's results, `dodai status`, the
// interactive mode and the day-2 rollout use these constants and Healthy;
// nothing compares stage strings by hand. A Phase is a string, so tables
// and JSON show it as it reads.
//
// A new phase (e.g. a stage of the day-2 rollout: cordoned, draining,
// upgrading) is a constant here, with a comment saying who sets it.
package phase

import "github.com/siderolabs/talos/pkg/machinery/resources/runtime"

// Phase is where a node stands.
type Phase string

// Stages a Talos node reports about itself (runtime.MachineStage).
const (
	Unknown      Phase = "unknown"
	Booting      Phase = "booting"
	Installing   Phase = "installing"
	Maintenance  Phase = "maintenance"
	Running      Phase = "running"
	Rebooting    Phase = "rebooting"
	ShuttingDown Phase = "shutting down"
	Resetting    Phase = "resetting"
	Upgrading    Phase = "upgrading"
)

// What dodai sees from outside (`dodai status`).
const (
	// NotInstalled: no address is known for the node, or no config was
	// ever applied to it.
	NotInstalled Phase = "not installed"
	// Unreachable: the node was installed but does not answer its
	// authenticated API.
	Unreachable Phase = "unreachable"
)

// What a run did to a node (`dodai bootstrap`'s RESULT).
const (
	// Applied: this run applied the config and the node came back
	// configured.
	Applied Phase = "applied"
	// Configured: the node already answered the authenticated API; nothing
	// was sent.
	Configured Phase = "configured"
	// Failed: the run could not bring the node up (its error says why).
	Failed Phase = "failed"
)

// FromMachineStage converts the stage a node reports.
func FromMachineStage(s runtime.MachineStage) Phase {
	switch s {
	case runtime.MachineStageBooting:
		return Booting
	case runtime.MachineStageInstalling:
		return Installing
	case runtime.MachineStageMaintenance:
		return Maintenance
	case runtime.MachineStageRunning:
		return Running
	case runtime.MachineStageRebooting:
		return Rebooting
	case runtime.MachineStageShuttingDown:
		return ShuttingDown
	case runtime.MachineStageResetting:
		return Resetting
	case runtime.MachineStageUpgrading:
		return Upgrading
	default:
		return Unknown
	}
}

// Healthy is the one rule for "this node is done": it runs and reports
// Ready (Talos' MachineStatus: every service it needs is up).
func Healthy(stage Phase, ready bool) bool { return stage == Running && ready }
