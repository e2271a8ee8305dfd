// Package machines keeps the netboot machine registry as Machine objects
// (dodai.dev/v1alpha1) instead of state/machines.json: one object per MAC
// seen, named after the MAC, with the node of the cluster file it is in its
// spec and what the boot servers observed (arch, address, stage, last seen,
// which boot server) in its status. `dodai pivot` moves a cluster
// directory's registry here, the in-cluster netboot's store
// (netbootstore) writes it, and `dodai status netboot` reads it back.
package machines

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dodai-dev/dodai/api/v1alpha1"
	"github.com/dodai-dev/dodai/internal/netboot/registry"
	"github.com/dodai-dev/dodai/internal/state"
)

// Store reads and writes Machines of one namespace.
type Store struct {
	Client client.Client
	// Reader, when set (a watch's cache), is read first instead of the
	// apiserver; after a conflict Put reads the apiserver.
	Reader    client.Reader
	Namespace string
	// Server names this boot server in status.bootServer.
	Server string
	// NodeMACs returns every MAC the cluster file lists for a node (nil:
	// only the MAC seen goes into spec.macs).
	NodeMACs func(node string) []string
}

// FromObject converts a Machine to the registry's record.
func FromObject(m *v1alpha1.Machine) state.Machine {
	out := state.Machine{Node: m.Spec.Node, IP: m.Status.IP, Arch: m.Status.Arch, Stage: m.Status.Stage}
	if len(m.Spec.MACs) > 0 {
		out.MAC = string(m.Spec.MACs[0])
	}
	if m.Status.LastSeen != nil {
		out.LastSeen = m.Status.LastSeen.UTC()
	}
	if m.Status.BootStarted != nil {
		out.BootStarted = m.Status.BootStarted.UTC()
	}
	if m.Status.Reinstall != nil {
		out.Reinstall = m.Status.Reinstall.UTC()
	}
	return out
}

// List returns every Machine as registry records, sorted by node then MAC
// (unknown machines last), as `dodai status` prints them.
func (s *Store) List(ctx context.Context) ([]state.Machine, error) {
	var list v1alpha1.MachineList
	if err := s.Client.List(ctx, &list, client.InNamespace(s.Namespace)); err != nil {
		return nil, fmt.Errorf("listing Machines in %s: %w", s.Namespace, err)
	}
	out := make([]state.Machine, 0, len(list.Items))
	for i := range list.Items {
		out = append(out, FromObject(&list.Items[i]))
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Node != out[j].Node {
			if out[i].Node == "" || out[j].Node == "" {
				return out[i].Node != ""
			}
			return out[i].Node < out[j].Node
		}
		return out[i].MAC < out[j].MAC
	})
	return out, nil
}

// Put writes one registry record: it creates the Machine if needed and
// updates its status when anything changed. The stage written is the
// record's merged with the Machine's (registry.MergeStage): a record from
// a replica that saw less of a boot never moves the stage back, a later
// boot or reinstall request starts over; a record seen before the
// Machine's lastSeen changes nothing but that stage (and, when it moved
// it on, the boot server, so the other replicas hear of it). With keepNewer, a Machine
// whose lastSeen is later than the record's is left as it is (an import
// must not roll back what a running boot server saw since). It returns
// the number of apiserver writes made.
func (s *Store) Put(ctx context.Context, rec state.Machine, keepNewer bool) (int, error) {
	name := v1alpha1.MachineName(rec.MAC)
	key := client.ObjectKey{Namespace: s.Namespace, Name: name}
	writes := 0
	for try := 0; try < 3; try++ {
		m := &v1alpha1.Machine{}
		var r client.Reader = s.Client
		if try == 0 && s.Reader != nil {
			r = s.Reader
		}
		err := r.Get(ctx, key, m)
		switch {
		case apierrors.IsNotFound(err):
			m = &v1alpha1.Machine{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: s.Namespace}, Spec: s.spec(rec)}
			if rec.Node != "" {
				m.Labels = map[string]string{v1alpha1.LabelNode: rec.Node}
			}
			writes++
			if err := s.Client.Create(ctx, m); err != nil {
				if apierrors.IsAlreadyExists(err) {
					continue
				}
				return writes, fmt.Errorf("creating Machine %s: %w", name, err)
			}
		case err != nil:
			return writes, fmt.Errorf("reading Machine %s: %w", name, err)
		default:
			// Seen in the cluster at or after the record (a tie at
			// second precision included): the cluster's view wins.
			if keepNewer && m.Status.LastSeen != nil && !m.Status.LastSeen.Time.Before(rec.LastSeen.Truncate(time.Second)) {
				return writes, nil
			}
			if want := s.spec(rec); !slices.Equal(m.Spec.MACs, want.MACs) || m.Spec.Node != want.Node {
				m.Spec = want
				if rec.Node != "" {
					if m.Labels == nil {
						m.Labels = map[string]string{}
					}
					m.Labels[v1alpha1.LabelNode] = rec.Node
				}
				writes++
				if err := s.Client.Update(ctx, m); err != nil {
					if apierrors.IsConflict(err) {
						continue
					}
					return writes, fmt.Errorf("updating Machine %s: %w", name, err)
				}
			}
		}
		st := m.Status.DeepCopy()
		// The record may be older than what the Machine holds (another
		// replica wrote a later stage of the same boot meanwhile): the
		// stage goes through the registry's merge rule, so it never moves
		// back within one boot, while a later boot or reinstall request
		// starts over.
		stored := FromObject(m)
		stage, boot, reinstall := registry.MergeStage(stored, rec)
		st.Stage = stage
		// A record seen before the Machine's last sighting changes
		// nothing else: its address, arch and boot server are stale.
		stale := !stored.LastSeen.IsZero() && rec.LastSeen.Truncate(time.Second).Before(stored.LastSeen)
		// A record without an address or arch (a replica that only
		// offered) never clears what another boot server saw.
		if rec.IP != "" && !stale {
			st.IP = rec.IP
		}
		if (rec.Arch == "amd64" || rec.Arch == "arm64") && !stale {
			st.Arch = rec.Arch
		}
		if !rec.LastSeen.IsZero() && !stale {
			t := metav1.NewTime(rec.LastSeen.Truncate(time.Second))
			st.LastSeen = &t
		}
		st.BootStarted, st.Reinstall = optTime(boot), optTime(reinstall)
		// The boot server is the replica that wrote the change; a stale
		// record that still moved the stage on names this one too, or
		// the replica named before would take the change for its own
		// and never merge it.
		moved := stage != m.Status.Stage || !equalTime(st.BootStarted, m.Status.BootStarted) || !equalTime(st.Reinstall, m.Status.Reinstall)
		if s.Server != "" && (!stale || moved) {
			st.BootServer = s.Server
		}
		if equalStatus(&m.Status, st) {
			return writes, nil
		}
		m.Status = *st
		writes++
		if err := s.Client.Status().Update(ctx, m); err != nil {
			if apierrors.IsConflict(err) {
				continue
			}
			return writes, fmt.Errorf("updating status of Machine %s: %w", name, err)
		}
		return writes, nil
	}
	return writes, fmt.Errorf("writing Machine %s: kept conflicting with other writers", name)
}

// optTime is t at the store's whole seconds, nil when zero.
func optTime(t time.Time) *metav1.Time {
	if t.IsZero() {
		return nil
	}
	mt := metav1.NewTime(t.Truncate(time.Second))
	return &mt
}

func equalTime(x, y *metav1.Time) bool {
	if x == nil || y == nil {
		return x == y
	}
	return x.Equal(y)
}

func equalStatus(a, b *v1alpha1.MachineStatus) bool {
	return a.Arch == b.Arch && a.IP == b.IP && a.Stage == b.Stage && a.BootServer == b.BootServer &&
		equalTime(a.LastSeen, b.LastSeen) && equalTime(a.BootStarted, b.BootStarted) && equalTime(a.Reinstall, b.Reinstall)
}

func (s *Store) spec(rec state.Machine) v1alpha1.MachineSpec {
	macs := []v1alpha1.MAC{v1alpha1.MAC(rec.MAC)}
	if rec.Node != "" && s.NodeMACs != nil {
		for _, m := range s.NodeMACs(rec.Node) {
			if v := v1alpha1.MAC(m); !slices.Contains(macs, v) {
				macs = append(macs, v)
			}
		}
	}
	return v1alpha1.MachineSpec{MACs: macs, Node: rec.Node}
}
