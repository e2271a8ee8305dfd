package cluster

import "path/filepath"

// File names inside a cluster directory. Use Layout for paths.
const (
	FileName        = "cluster.yaml"
	SecretsFile     = "secrets.yaml"
	TalosconfigFile = "talosconfig"
	KubeconfigFile  = "kubeconfig"
	GeneratedDir    = "generated"
	AssetsDir       = "assets"
	StateDir        = "state"
)

// Layout names every path of a cluster directory; nothing else in dodai
// joins names to a cluster directory. What each file is:
//
//	cluster.yaml            the cluster file (the user's, kept in git)
//	secrets.yaml            the cluster's PKI and tokens (0600, never regenerated)
//	bmc-credentials.yaml    BMC users and passwords (0600, never in git)
//	talosconfig             the Talos client config (0600)
//	kubeconfig              the Kubernetes admin config (0600)
//	generated/              everything `dodai render` derives
//	assets/                 Talos kernel and initramfs served by netboot
//	state/machines.json     what netboot saw (internal/state.Machines)
//	state/bootstrap.json    what bootstrap did (internal/state.Bootstrap)
//	state/leases.json       dhcp-mode leases (+ .journal.N journals)
//	state/netboot.lock      held by a running netboot or pivot (internal/incluster/handover)
//	state/pivot.json        where a pivot moved the boot state (internal/incluster/handover)
//	state/netboot.json      the running netboot server, for dodai health (internal/state.NetbootRun)
//	state/etcd/             rotated etcd snapshots (internal/etcd)
//	state/etcd-restore.json progress of dodai etcd restore (internal/etcd)
type Layout struct {
	// Dir is the cluster directory as given (relative paths stay relative,
	// so messages show what the user typed).
	Dir string
}

// At returns the layout of a cluster directory.
func At(dir string) Layout { return Layout{Dir: dir} }

// Path joins names to the cluster directory.
func (l Layout) Path(elem ...string) string {
	return filepath.Join(append([]string{l.Dir}, elem...)...)
}

// Resolve returns p when it is absolute, else p relative to the cluster
// directory (how the cluster file names patch and manifest files).
func (l Layout) Resolve(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return l.Path(p)
}

// ClusterFile is DIR/cluster.yaml.
func (l Layout) ClusterFile() string { return l.Path(FileName) }

// Secrets is DIR/secrets.yaml.
func (l Layout) Secrets() string { return l.Path(SecretsFile) }

// BMCCredentials is DIR/bmc-credentials.yaml.
func (l Layout) BMCCredentials() string { return l.Path(BMCCredentialsFile) }

// Talosconfig is DIR/talosconfig.
func (l Layout) Talosconfig() string { return l.Path(TalosconfigFile) }

// Kubeconfig is DIR/kubeconfig.
func (l Layout) Kubeconfig() string { return l.Path(KubeconfigFile) }

// Generated is DIR/generated, or a path below it.
func (l Layout) Generated(elem ...string) string {
	return l.Path(append([]string{GeneratedDir}, elem...)...)
}

// Assets is DIR/assets, netboot's default Talos kernel/initramfs directory.
func (l Layout) Assets() string { return l.Path(AssetsDir) }

// State is DIR/state, where dodai keeps what it observed and did.
func (l Layout) State() string { return l.Path(StateDir) }

// MachinesState is state/machines.json: the machines netboot saw.
func (l Layout) MachinesState() string { return l.Path(StateDir, "machines.json") }

// BootstrapState is state/bootstrap.json: bootstrap's progress per node and
// the one etcd bootstrap.
func (l Layout) BootstrapState() string { return l.Path(StateDir, "bootstrap.json") }

// Leases is state/leases.json: netboot's dhcp-mode leases (its journals
// are this path plus ".journal.N").
func (l Layout) Leases() string { return l.Path(StateDir, "leases.json") }

// NetbootLock is state/netboot.lock: held while a local netboot or a pivot
// runs for the cluster directory.
func (l Layout) NetbootLock() string { return l.Path(StateDir, "netboot.lock") }

// PivotRecord is state/pivot.json: where `dodai pivot` moved the boot state.
func (l Layout) PivotRecord() string { return l.Path(StateDir, "pivot.json") }

// NetbootRun is state/netboot.json: the running netboot server (PID and
// URL), written by netboot and read by health.
func (l Layout) NetbootRun() string { return l.Path(StateDir, "netboot.json") }

// EtcdSnapshots is state/etcd: the rotated etcd snapshots.
func (l Layout) EtcdSnapshots() string { return l.Path(StateDir, "etcd") }

// EtcdRestore is state/etcd-restore.json: the progress of a restore.
func (l Layout) EtcdRestore() string { return l.Path(StateDir, "etcd-restore.json") }

// Layout returns the layout of the directory the cluster file is in.
func (s *Source) Layout() Layout { return Layout{Dir: s.Dir} }
