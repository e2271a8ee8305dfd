// Package plan compares what a running cluster runs with what its cluster
// file says and lists what `dodai apply` would do, node by node: the
// machine-config diff (secrets redacted) against the node's MachineConfig
// resource with Talos' own dry-run answer (no reboot or reboot), OS
// upgrades when the Talos version or the image schematic changed (with the
// installer image), Kubernetes upgrades (one minor at a time; the removed
// APIs still in use), nodes to install and nodes the file does not know,
// and the platform's HelmRelease changes. Version changes follow the rules
// of internal/talos/compat (Talos one minor at a time along machinery's
// upgrade paths, Kubernetes one minor at a time, the order of a combined
// upgrade). Refusals (an upgrade that would drop an extension the node runs
// and the file still lists, a Talos or Kubernetes minor skipped, a combined
// upgrade without a safe order, unhealthy etcd) are part of the plan, so
// apply can refuse the same way plan shows; version refusals name the
// cluster file's field and the step to take instead.
package plan

import (
	"fmt"
	"slices"
	"strings"

	"github.com/dodai-dev/dodai/internal/talos/compat"
)

// Node states.
const (
	StateUnchanged    = "unchanged"
	StateChanges      = "changes"
	StateNotInstalled = "not installed"
	StateUnreachable  = "unreachable"
	// StateResume is an unreachable node an earlier apply left rebooting
	// (see rollout.Adopt): apply waits for it.
	StateResume = "resume"
)

// Plan is the difference between the cluster file and the running cluster.
type Plan struct {
	Cluster string `json:"cluster" yaml:"cluster"`
	// Nodes of the cluster file, in file order.
	Nodes []*NodePlan `json:"nodes" yaml:"nodes"`
	// Unknown are Kubernetes nodes the file does not list (reported, never
	// removed).
	Unknown []string `json:"unknownNodes,omitempty" yaml:"unknownNodes,omitempty"`
	// Kubernetes is the control-plane version change, nil when none.
	Kubernetes *KubernetesChange `json:"kubernetes,omitempty" yaml:"kubernetes,omitempty"`
	// Steps are the cluster-wide version upgrades in the order apply runs
	// them (compat.UpgradePath: Talos first when the new Talos runs the
	// cluster's Kubernetes), empty when neither version changes.
	Steps []compat.Step `json:"upgradeSteps,omitempty" yaml:"upgradeSteps,omitempty"`
	// Platform lists HelmRelease changes.
	Platform []*ReleaseChange `json:"platform,omitempty" yaml:"platform,omitempty"`
	// Etcd is the etcd health seen by the plan (control-plane steps need
	// all members healthy).
	Etcd *EtcdHealth `json:"etcd,omitempty" yaml:"etcd,omitempty"`
	// Refusals make the plan impossible to apply as it stands.
	Refusals []string `json:"refusals,omitempty" yaml:"refusals,omitempty"`
	// Warnings do not stop apply.
	Warnings []string `json:"warnings,omitempty" yaml:"warnings,omitempty"`
}

// NodePlan is what happens to one node.
type NodePlan struct {
	Name    string `json:"name" yaml:"name"`
	Role    string `json:"role" yaml:"role"`
	Address string `json:"address" yaml:"address"`
	// State: unchanged, changes, not installed or unreachable.
	State string `json:"state" yaml:"state"`
	// Error explains an unreachable node.
	Error string `json:"error,omitempty" yaml:"error,omitempty"`
	// TalosVersion the node runs.
	TalosVersion string `json:"talosVersion,omitempty" yaml:"talosVersion,omitempty"`
	// Extensions the node runs (official names, e.g. siderolabs/drbd).
	Extensions []string `json:"extensions,omitempty" yaml:"extensions,omitempty"`
	// Upgrade of the OS, nil when none.
	Upgrade *Upgrade `json:"upgrade,omitempty" yaml:"upgrade,omitempty"`
	// Config change (without the Kubernetes version), nil when none.
	Config *ConfigChange `json:"config,omitempty" yaml:"config,omitempty"`
	// Kubernetes component changes on this node, nil when none.
	Kubernetes *NodeKubernetes `json:"kubernetes,omitempty" yaml:"kubernetes,omitempty"`
	// Refusals specific to this node.
	Refusals []string `json:"refusals,omitempty" yaml:"refusals,omitempty"`
	Warnings []string `json:"warnings,omitempty" yaml:"warnings,omitempty"`
}

// Upgrade is a Talos OS upgrade of one node.
type Upgrade struct {
	Image         string   `json:"image" yaml:"image"`
	FromVersion   string   `json:"fromVersion" yaml:"fromVersion"`
	ToVersion     string   `json:"toVersion" yaml:"toVersion"`
	FromSchematic string   `json:"fromSchematic,omitempty" yaml:"fromSchematic,omitempty"`
	ToSchematic   string   `json:"toSchematic,omitempty" yaml:"toSchematic,omitempty"`
	AddExtensions []string `json:"addExtensions,omitempty" yaml:"addExtensions,omitempty"`
	// RemoveExtensions the file no longer lists.
	RemoveExtensions []string `json:"removeExtensions,omitempty" yaml:"removeExtensions,omitempty"`
	// Extensions expected after the upgrade; nil when the image's content
	// is not known (a custom installer).
	Extensions []string `json:"expectedExtensions,omitempty" yaml:"expectedExtensions,omitempty"`
	// API the upgrade goes through, the one of the release the node runs:
	// APILifecycle (Talos 1.13+) or APILegacy.
	API string `json:"api" yaml:"api"`
	// NewForm is set when the new release renders the node's config in
	// another form (1.11 → 1.12: the network moves into documents): apply
	// applies that config once the node runs the new release.
	NewForm *FormChange `json:"newForm,omitempty" yaml:"newForm,omitempty"`
}

// FormChange is how the config of a node changes form with its release:
// the kinds of the documents added and removed besides v1alpha1.
type FormChange struct {
	AddDocuments    []string `json:"addDocuments,omitempty" yaml:"addDocuments,omitempty"`
	RemoveDocuments []string `json:"removeDocuments,omitempty" yaml:"removeDocuments,omitempty"`
}

func (f *FormChange) String() string {
	var parts []string
	for _, k := range f.AddDocuments {
		parts = append(parts, "+"+k)
	}
	for _, k := range f.RemoveDocuments {
		parts = append(parts, "-"+k)
	}
	if len(parts) == 0 {
		return "the same documents, changed fields"
	}
	return "documents " + strings.Join(parts, " ")
}

// ConfigChange is a machine-config change of one node.
type ConfigChange struct {
	// Diff of the running config and the file's (unified, secrets redacted).
	Diff string `json:"diff" yaml:"diff"`
	// SecretsChanged: the configs also differ in redacted secret fields.
	SecretsChanged bool `json:"secretsChanged,omitempty" yaml:"secretsChanged,omitempty"`
	// Mode is Talos' own dry-run answer: "no reboot", "reboot", or
	// "staged" (applied by the upgrade's reboot).
	Mode string `json:"mode" yaml:"mode"`
	// TalosAnswer is the first line of Talos' dry-run summary.
	TalosAnswer string `json:"talosAnswer,omitempty" yaml:"talosAnswer,omitempty"`
}

// NodeKubernetes is a Kubernetes version change on one node.
type NodeKubernetes struct {
	// ControlPlane components' version change (control-plane nodes).
	ControlPlane *VersionChange `json:"controlPlane,omitempty" yaml:"controlPlane,omitempty"`
	Kubelet      *VersionChange `json:"kubelet,omitempty" yaml:"kubelet,omitempty"`
}

// VersionChange is from → to.
type VersionChange struct {
	From string `json:"from" yaml:"from"`
	To   string `json:"to" yaml:"to"`
}

func (v *VersionChange) String() string { return v.From + " → " + v.To }

// KubernetesChange is the cluster-wide Kubernetes upgrade.
type KubernetesChange struct {
	From string `json:"from" yaml:"from"`
	To   string `json:"to" yaml:"to"`
	// RemovedAPIs still requested that the new version no longer serves.
	RemovedAPIs []RemovedAPI `json:"removedAPIs,omitempty" yaml:"removedAPIs,omitempty"`
}

// RemovedAPI is one deprecated API in use (apiserver_requested_deprecated_apis).
type RemovedAPI struct {
	Group          string `json:"group" yaml:"group"`
	Version        string `json:"version" yaml:"version"`
	Resource       string `json:"resource" yaml:"resource"`
	Subresource    string `json:"subresource,omitempty" yaml:"subresource,omitempty"`
	RemovedRelease string `json:"removedRelease" yaml:"removedRelease"`
}

func (a RemovedAPI) String() string {
	gv := a.Version
	if a.Group != "" {
		gv = a.Group + "/" + a.Version
	}
	r := a.Resource
	if a.Subresource != "" {
		r += "/" + a.Subresource
	}
	return fmt.Sprintf("%s %s (removed in %s)", gv, r, a.RemovedRelease)
}

// ReleaseChange is one platform HelmRelease to create or change.
type ReleaseChange struct {
	Namespace string `json:"namespace" yaml:"namespace"`
	Name      string `json:"name" yaml:"name"`
	// Action: install or upgrade.
	Action string `json:"action" yaml:"action"`
	Chart  string `json:"chart" yaml:"chart"`
	// FromVersion is empty for an install.
	FromVersion string `json:"fromVersion,omitempty" yaml:"fromVersion,omitempty"`
	ToVersion   string `json:"toVersion" yaml:"toVersion"`
	// ValuesDiff is a unified diff of the values, empty when unchanged.
	ValuesDiff string `json:"valuesDiff,omitempty" yaml:"valuesDiff,omitempty"`
	// Other lists other changed spec fields (interval, dependsOn, ...).
	Other []string `json:"other,omitempty" yaml:"other,omitempty"`
}

// EtcdHealth is the etcd state the plan saw.
type EtcdHealth struct {
	Members int `json:"members" yaml:"members"`
	Healthy int `json:"healthy" yaml:"healthy"`
	// Leader is the node name of the leader, if known.
	Leader string `json:"leader,omitempty" yaml:"leader,omitempty"`
	// Problems found (unhealthy members, alarms).
	Problems []string `json:"problems,omitempty" yaml:"problems,omitempty"`
}

// Changes reports whether apply would change anything.
func (p *Plan) Changes() bool {
	if p.Kubernetes != nil || len(p.Platform) > 0 {
		return true
	}
	for _, n := range p.Nodes {
		if n.Changes() {
			return true
		}
	}
	return false
}

// Changes reports whether the node would be changed (installing it too).
func (n *NodePlan) Changes() bool {
	return n.State == StateChanges || n.State == StateNotInstalled || n.State == StateResume
}

// Refused reports whether the plan (or one of its nodes) is refused.
func (p *Plan) Refused() bool {
	if len(p.Refusals) > 0 {
		return true
	}
	for _, n := range p.Nodes {
		if len(n.Refusals) > 0 {
			return true
		}
	}
	return false
}

// AllRefusals lists every refusal, node ones prefixed with the node.
func (p *Plan) AllRefusals() []string {
	out := slices.Clone(p.Refusals)
	for _, n := range p.Nodes {
		for _, r := range n.Refusals {
			out = append(out, "node "+n.Name+": "+r)
		}
	}
	return out
}

// Node returns the plan of a node by name.
func (p *Plan) Node(name string) *NodePlan {
	for _, n := range p.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Summary is the one-line description of a node's changes, e.g.
// "upgrade v1.11.5 → v1.11.6, config (no reboot), kubelet v1.33.5 → v1.34.1".
func (n *NodePlan) Summary() string {
	switch n.State {
	case StateNotInstalled:
		return "install (dodai bootstrap --node " + n.Name + ")"
	case StateUnreachable:
		return "unreachable: " + n.Error
	case StateResume:
		return "resume: " + n.Error
	case StateUnchanged:
		return "-"
	}
	var parts []string
	if u := n.Upgrade; u != nil {
		s := "upgrade " + u.FromVersion + " → " + u.ToVersion
		if u.FromVersion == u.ToVersion {
			s = "upgrade " + u.ToVersion + " (new image)"
		}
		var ext []string
		for _, e := range u.AddExtensions {
			ext = append(ext, "+"+e)
		}
		for _, e := range u.RemoveExtensions {
			ext = append(ext, "-"+e)
		}
		if len(ext) > 0 {
			s += " [" + strings.Join(ext, " ") + "]"
		}
		parts = append(parts, s)
	}
	if c := n.Config; c != nil {
		parts = append(parts, "config ("+c.Mode+")")
	}
	if k := n.Kubernetes; k != nil {
		if k.ControlPlane != nil {
			parts = append(parts, "control plane "+k.ControlPlane.String())
		}
		if k.Kubelet != nil {
			parts = append(parts, "kubelet "+k.Kubelet.String())
		}
	}
	return strings.Join(parts, ", ")
}
