package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Stages a machine goes through in one boot, in order (the same as the file
// registry's).
const (
	StageDHCP      = "dhcp"
	StageIPXE      = "ipxe"
	StageKernel    = "kernel"
	StageInitramfs = "initramfs"
	StageConfig    = "config"
	StageInstalled = "installed"
)

// Condition types of a Machine.
const (
	// ConditionJoined is True once the controller applied the machine's
	// config over the Talos API and the node answers the authenticated API;
	// False with a reason while it cannot (no node, unsafe disk, refused).
	ConditionJoined = "Joined"
	// ConditionNodeReady mirrors the Ready condition of the machine's
	// Kubernetes Node once it exists.
	ConditionNodeReady = "NodeReady"
)

// LabelNode is set on a Machine that is a node of the cluster file, with
// the node's name, so `kubectl get machines -l dodai.dev/node` lists them.
const LabelNode = Group + "/node"

// MachineSpec says which machine this is.
type MachineSpec struct {
	// MACs of the machine: the MAC it netbooted with first, then the other
	// MACs the cluster file lists for its node. Canonical form
	// (lowercase, colon-separated).
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +listType=set
	MACs []MAC `json:"macs"`
	// Node is the node of the cluster file this machine is; empty for a
	// machine the cluster file doesn't know (it is recorded and left alone).
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Node string `json:"node,omitempty"`
}

// MAC is a canonical Ethernet address, e.g. 52:54:00:12:34:56.
// +kubebuilder:validation:Pattern=`^([0-9a-f]{2}:){5}[0-9a-f]{2}$`
type MAC string

// MachineStatus is what the boot servers and the controller observed.
type MachineStatus struct {
	// Arch is the architecture the firmware asked for: amd64 or arm64.
	// +optional
	// +kubebuilder:validation:Enum=amd64;arm64
	Arch string `json:"arch,omitempty"`
	// Firmware is how the machine netbooted: bios, uefi, uefi-http or ipxe
	// (a ROM or chainloaded iPXE), from the DHCP client architecture and class.
	// +optional
	Firmware string `json:"firmware,omitempty"`
	// IP is the address its own DHCP exchange bound.
	// +optional
	IP string `json:"ip,omitempty"`
	// Stage is how far its latest boot got.
	// +optional
	// +kubebuilder:validation:Enum=dhcp;ipxe;kernel;initramfs;config;installed
	Stage string `json:"stage,omitempty"`
	// BootStarted is when its latest netboot began (its first DHCP of that
	// boot); compared with when its config was applied to tell a reboot
	// after the install.
	// +optional
	BootStarted *metav1.Time `json:"bootStarted,omitempty"`
	// Reinstall is when an operator last asked for it to netboot Talos
	// again (POST /reinstall on a boot server); boot server replicas order
	// their records by it, so one replica's reinstall is not undone by
	// another's older "installed".
	// +optional
	Reinstall *metav1.Time `json:"reinstall,omitempty"`
	// LastSeen is when a boot server last heard from it.
	// +optional
	LastSeen *metav1.Time `json:"lastSeen,omitempty"`
	// BootServer is the boot server (pod or host name) that last heard from it.
	// +optional
	BootServer string `json:"bootServer,omitempty"`
	// Inventory is its hardware as reported in Talos maintenance mode.
	// +optional
	Inventory *Inventory `json:"inventory,omitempty"`
	// Join records the controller's config apply (the install disk it
	// confirmed is never replaced by another one).
	// +optional
	Join *JoinStatus `json:"join,omitempty"`
	// Conditions: Joined, NodeReady.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// ObservedGeneration is the spec generation the controller acted on.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// Inventory summarises a machine's hardware.
type Inventory struct {
	// TalosVersion the machine runs.
	// +optional
	TalosVersion string `json:"talosVersion,omitempty"`
	// MaintenanceAddress it answered the Talos API on in maintenance mode.
	// +optional
	MaintenanceAddress string `json:"maintenanceAddress,omitempty"`
	// CPUs is the number of CPU threads.
	// +optional
	CPUs int32 `json:"cpus,omitempty"`
	// MemoryMiB is the installed memory.
	// +optional
	MemoryMiB int64 `json:"memoryMiB,omitempty"`
	// Disks are the block devices.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	Disks []Disk `json:"disks,omitempty"`
	// Observed is when the inventory was read.
	// +optional
	Observed *metav1.Time `json:"observed,omitempty"`
}

// Disk is one block device.
type Disk struct {
	// DevPath, e.g. /dev/nvme0n1.
	DevPath string `json:"devPath"`
	// Size in bytes.
	// +optional
	Size int64 `json:"size,omitempty"`
	// +optional
	Model string `json:"model,omitempty"`
	// +optional
	Serial string `json:"serial,omitempty"`
	// +optional
	WWID string `json:"wwid,omitempty"`
	// Transport: nvme, sata, usb, virtio…
	// +optional
	Transport string `json:"transport,omitempty"`
}

// JoinStatus is the controller's progress with one machine.
type JoinStatus struct {
	// InstallDisk is the disk the config installs Talos on, confirmed when
	// the config was first applied.
	// +optional
	InstallDisk *Disk `json:"installDisk,omitempty"`
	// Applied is when the config was sent (set before the call).
	// +optional
	Applied *metav1.Time `json:"applied,omitempty"`
	// Address the configured node answers the Talos API on.
	// +optional
	Address string `json:"address,omitempty"`
	// Configured is when the node first answered the authenticated API.
	// +optional
	Configured *metav1.Time `json:"configured,omitempty"`
}

// Machine is one network-booting machine seen by dodai's boot servers,
// named after the MAC it netbooted with (colons as dashes).
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=dodai
// +kubebuilder:printcolumn:name="MAC",type=string,JSONPath=`.spec.macs[0]`
// +kubebuilder:printcolumn:name="Node",type=string,JSONPath=`.spec.node`
// +kubebuilder:printcolumn:name="Arch",type=string,JSONPath=`.status.arch`
// +kubebuilder:printcolumn:name="IP",type=string,JSONPath=`.status.ip`
// +kubebuilder:printcolumn:name="Stage",type=string,JSONPath=`.status.stage`
// +kubebuilder:printcolumn:name="Joined",type=string,JSONPath=`.status.conditions[?(@.type=="Joined")].status`
// +kubebuilder:printcolumn:name="Last Seen",type=date,JSONPath=`.status.lastSeen`
type Machine struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec MachineSpec `json:"spec"`
	// +optional
	Status MachineStatus `json:"status,omitempty"`
}

// MachineList is a list of Machines.
//
// +kubebuilder:object:root=true
type MachineList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Machine `json:"items"`
}
