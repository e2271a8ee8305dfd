// Package pivot is `dodai pivot`: it moves a cluster directory's boot
// state into the cluster so the in-cluster boot servers and controller can
// take over. Holding the cluster directory's netboot lock for the whole
// move (so it refuses while a local `dodai netboot` runs, and none can
// start meanwhile), it installs the dodai.dev CRDs, writes cluster.yaml as
// a ConfigMap and secrets.yaml as a Secret, copies the machine registry
// (state/machines.json) into Machines and the dhcp-mode leases
// (state/leases.json and its journal) into DHCPLeases, never rolling back
// newer objects, and finally records the pivot in state/pivot.json, after
// which a local `dodai netboot` refuses to start unless forced. Re-running
// it is safe: it converges to the same objects.
package pivot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/incluster/crds"
	"github.com/dodai-dev/dodai/internal/incluster/handover"
	"github.com/dodai-dev/dodai/internal/incluster/leases"
	"github.com/dodai-dev/dodai/internal/incluster/machines"
	"github.com/dodai-dev/dodai/internal/netboot/dhcp"
	"github.com/dodai-dev/dodai/internal/state"
)

// Names of the objects the chart mounts as the cluster directory.
const (
	ConfigMapName = "dodai-cluster"
	SecretName    = "dodai-secrets"
	fieldManager  = "dodai-pivot"
)

// Options of Run.
type Options struct {
	Source    *cluster.Source
	Client    client.Client
	Namespace string
	// Server is the apiserver URL (recorded in state/pivot.json).
	Server string
	Log    *slog.Logger
}

// Result says what moved.
type Result struct {
	Namespace string `json:"namespace"`
	ConfigMap string `json:"configMap"`
	Secret    string `json:"secret"`
	Machines  int    `json:"machines"`
	Leases    int    `json:"leases"`
}

// Run moves the state; see the package comment.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	dir := o.Source.Dir
	paths := o.Source.Layout()
	release, err := handover.Lock(dir, "dodai pivot")
	if err != nil {
		if errors.Is(err, handover.ErrHeld) {
			return nil, fmt.Errorf("refusing to pivot: %w; stop it first, the boot server must not run in two places", err)
		}
		return nil, err
	}
	defer release()

	if err := crds.Install(ctx, o.Client); err != nil {
		return nil, err
	}
	if err := o.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: o.Namespace}}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("creating namespace %s: %w", o.Namespace, err)
	}
	res := &Result{Namespace: o.Namespace, ConfigMap: ConfigMapName, Secret: SecretName}
	raw, err := os.ReadFile(paths.ClusterFile())
	if err != nil {
		return nil, err
	}
	sec, err := os.ReadFile(paths.Secrets())
	if err != nil {
		return nil, fmt.Errorf("the controller needs the cluster's secrets: %w (run dodai init first)", err)
	}
	labels := map[string]string{"app.kubernetes.io/name": "dodai"}
	cm := corev1ac.ConfigMap(ConfigMapName, o.Namespace).WithLabels(labels).WithData(map[string]string{cluster.FileName: string(raw)})
	if err := o.Client.Apply(ctx, cm, client.FieldOwner(fieldManager), client.ForceOwnership); err != nil {
		return nil, fmt.Errorf("writing ConfigMap %s/%s: %w", o.Namespace, ConfigMapName, err)
	}
	s := corev1ac.Secret(SecretName, o.Namespace).WithLabels(labels).WithType(corev1.SecretTypeOpaque).
		WithData(map[string][]byte{cluster.SecretsFile: sec})
	if err := o.Client.Apply(ctx, s, client.FieldOwner(fieldManager), client.ForceOwnership); err != nil {
		return nil, fmt.Errorf("writing Secret %s/%s: %w", o.Namespace, SecretName, err)
	}

	reg, err := state.ReadMachines(paths.MachinesState())
	if err != nil {
		return nil, err
	}
	store := &machines.Store{Client: o.Client, Namespace: o.Namespace, Server: "pivot", NodeMACs: NodeMACs(o.Source.Cluster)}
	for _, m := range reg.Machines {
		if m.MAC == "" {
			continue
		}
		if _, err := store.Put(ctx, m, true); err != nil {
			return res, err
		}
		res.Machines++
	}

	ls, err := fileLeases(paths.Leases())
	if err != nil {
		return res, err
	}
	if _, err := leases.Import(ctx, o.Client, o.Namespace, "pivot", ls); err != nil {
		return res, err
	}
	res.Leases = len(ls)

	if err := handover.MarkPivoted(dir, handover.Record{Time: time.Now().UTC().Truncate(time.Second), Server: o.Server,
		Namespace: o.Namespace, Machines: res.Machines, Leases: res.Leases}); err != nil {
		return res, err
	}
	o.Log.Info("pivoted", "namespace", o.Namespace, "machines", res.Machines, "leases", res.Leases)
	return res, nil
}

// fileLeases reads the dhcp-mode leases (snapshot and journal) of a
// cluster directory (path is its state/leases.json); none when it never
// ran in dhcp mode.
func fileLeases(path string) ([]dhcp.Lease, error) {
	_, err := os.Stat(path)
	// Journals: path.journal (older versions) and path.journal.N.
	journals, _ := filepath.Glob(path + ".journal*")
	if errors.Is(err, os.ErrNotExist) && len(journals) == 0 {
		return nil, nil
	}
	// The range only steers allocation, which this read never does.
	start, end := netip.IPv4Unspecified(), netip.AddrFrom4([4]byte{255, 255, 255, 255})
	l, err := dhcp.NewLeases(dhcp.LeaseOptions{Path: path, Start: start, End: end})
	if err != nil {
		return nil, fmt.Errorf("reading the dhcp-mode leases: %w", err)
	}
	defer l.Close()
	return l.All(), nil
}

// NodeMACs returns, for a node name, every canonical MAC the cluster file
// lists for it.
func NodeMACs(c *cluster.Cluster) func(string) []string {
	return func(node string) []string {
		for _, n := range c.Spec.Nodes {
			if n.Name != node {
				continue
			}
			var out []string
			for _, m := range n.MACs {
				if canon, err := cluster.ParseMAC(m); err == nil {
					out = append(out, canon)
				}
			}
			return out
		}
		return nil
	}
}
