// Package replicas tells which `dodai netboot --in-cluster` replicas run:
// each replica keeps a heartbeat, a coordination.k8s.io Lease named after
// it (as kubelets keep their node Leases), renewed every few seconds and
// deleted when the replica stops; `dodai status netboot` lists them, and a
// Lease not renewed within its duration is a replica that died.
package replicas

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sort"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Labels and annotations of a replica's Lease.
const (
	LabelComponent   = "dodai.dev/component"
	Component        = "netboot"
	AnnotationServer = "dodai.dev/server"
	AnnotationURL    = "dodai.dev/http"
	AnnotationMode   = "dodai.dev/mode"
	// Interval is how often a replica renews its Lease; Duration is how
	// long the Lease stands for it without a renewal.
	Interval = 10 * time.Second
	Duration = 30 * time.Second
)

// Replica is one boot server as its heartbeat describes it.
type Replica struct {
	// Name is the replica's --server-name (status.bootServer of the
	// Machines it wrote, DHCPLease spec.server).
	Name string `json:"name"`
	// Address is its address on the boot network, URL its HTTP base URL.
	Address string `json:"address"`
	URL     string `json:"url"`
	Mode    string `json:"mode"`
	// Renewed is its last heartbeat; Running says it came within the
	// Lease's duration.
	Renewed time.Time `json:"renewed"`
	Running bool      `json:"running"`
}

// LeaseName is the name of a replica's Lease: netboot-NAME when NAME is
// already lower-case letters, digits and '-' (a pod name, the usual
// --server-name). Any other name is folded into that alphabet and gets
// the first 8 hex digits of its SHA-256 appended, so two servers whose
// names differ only in case or punctuation ("Node_1", "node-1") never
// share one Lease (status would list one replica for two).
func LeaseName(server string) string {
	const prefix = "netboot-"
	b := []byte(strings.ToLower(server))
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			b[i] = '-'
		}
	}
	folded := strings.Trim(string(b), "-")
	if folded != "" && folded == server && len(prefix+folded) <= validation.DNS1123SubdomainMaxLength {
		return prefix + folded
	}
	sum := sha256.Sum256([]byte(server))
	suffix := "-" + hex.EncodeToString(sum[:4])
	folded = strings.TrimRight(folded[:min(len(folded), validation.DNS1123SubdomainMaxLength-len(prefix)-len(suffix))], "-")
	if folded == "" {
		return prefix[:len(prefix)-1] + suffix
	}
	return prefix + folded + suffix
}

// Heartbeat keeps r's Lease in namespace ns renewed every interval (0:
// Interval) until ctx ends, then deletes it (bounded to 5 s). Failed
// renewals are logged and retried at the next tick.
func Heartbeat(ctx context.Context, c client.Client, ns string, r Replica, interval time.Duration, log *slog.Logger) {
	if interval <= 0 {
		interval = Interval
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	key := client.ObjectKey{Namespace: ns, Name: LeaseName(r.Name)}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := renew(ctx, c, key, r, interval); err != nil && ctx.Err() == nil {
			log.Warn("renewing this boot server's heartbeat", "lease", key.Name, "err", err)
		}
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			err := c.Delete(dctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: key.Name}})
			if err != nil && !apierrors.IsNotFound(err) {
				log.Warn("deleting this boot server's heartbeat", "lease", key.Name, "err", err)
			}
			return
		case <-t.C:
		}
	}
}

func renew(ctx context.Context, c client.Client, key client.ObjectKey, r Replica, interval time.Duration) error {
	now := metav1.NewMicroTime(time.Now())
	secs := int32(max(Duration, 3*interval) / time.Second)
	want := func(l *coordinationv1.Lease) {
		if l.Labels == nil {
			l.Labels = map[string]string{}
		}
		l.Labels[LabelComponent] = Component
		if l.Annotations == nil {
			l.Annotations = map[string]string{}
		}
		l.Annotations[AnnotationServer], l.Annotations[AnnotationURL], l.Annotations[AnnotationMode] = r.Address, r.URL, r.Mode
		l.Spec.HolderIdentity, l.Spec.LeaseDurationSeconds, l.Spec.RenewTime = &r.Name, &secs, &now
		if l.Spec.AcquireTime == nil {
			l.Spec.AcquireTime = &now
		}
	}
	l := &coordinationv1.Lease{}
	err := c.Get(ctx, key, l)
	switch {
	case apierrors.IsNotFound(err):
		l = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
		want(l)
		err = c.Create(ctx, l)
	case err == nil:
		want(l)
		err = c.Update(ctx, l)
	}
	if err != nil {
		return fmt.Errorf("lease %s/%s: %w", key.Namespace, key.Name, err)
	}
	return nil
}

// List returns the replicas with a heartbeat in namespace ns, by name.
func List(ctx context.Context, c client.Reader, ns string, now time.Time) ([]Replica, error) {
	var list coordinationv1.LeaseList
	if err := c.List(ctx, &list, client.InNamespace(ns), client.MatchingLabels{LabelComponent: Component}); err != nil {
		return nil, fmt.Errorf("listing the boot servers' heartbeats (Leases) in %s: %w", ns, err)
	}
	out := make([]Replica, 0, len(list.Items))
	for _, l := range list.Items {
		r := Replica{Name: l.Name, Address: l.Annotations[AnnotationServer], URL: l.Annotations[AnnotationURL], Mode: l.Annotations[AnnotationMode]}
		if h := l.Spec.HolderIdentity; h != nil && *h != "" {
			r.Name = *h
		}
		if l.Spec.RenewTime != nil {
			r.Renewed = l.Spec.RenewTime.UTC()
			d := Duration
			if l.Spec.LeaseDurationSeconds != nil {
				d = time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second
			}
			r.Running = now.Before(r.Renewed.Add(d))
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Owner returns which of the running replicas' names (running) owns key,
// a machine's MAC in the canonical form: the one with the highest
// rendezvous hash of key and name, the highest name on a tie; "" when
// running is empty. Every replica that sees the same running set names
// the same owner, and a replica joining or leaving moves only the keys it
// gains or held.
func Owner(key string, running []string) string {
	var owner string
	var best uint64
	for _, name := range running {
		if v := rendezvous(key, name); owner == "" || v > best || v == best && name > owner {
			owner, best = name, v
		}
	}
	return owner
}

// rendezvous is fnv64a(key + name) through MurmurHash3's 64-bit finalizer.
// FNV-1a alone spreads badly here: names that differ only in their last
// bytes (pod names, "a" and "b") differ only in the last multiplication,
// and the highest of such hashes favoured one name 2:1 over the others.
// (hash/maphash would mix well but is seeded per process; every replica
// must compute the same value.)
func rendezvous(key, name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(key))
	h.Write([]byte(name))
	v := h.Sum64()
	v ^= v >> 33
	v *= 0xff51afd7ed558ccd
	v ^= v >> 33
	v *= 0xc4ceb9fe1a85ec53
	v ^= v >> 33
	return v
}
