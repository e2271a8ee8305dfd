// Package controller is `dodai controller`: it joins machines to the
// cluster without anyone at a terminal. For every Machine (written by the
// in-cluster boot servers) whose MAC belongs to a node of the cluster file
// and that sits in Talos maintenance mode at the address its DHCP exchange
// bound, it reads the inventory, applies the node's config over the Talos
// API through the same code path and disk-safety rules as `dodai
// bootstrap` (bootstrap.ApplyConfig), waits until the node answers the
// authenticated API, and reports the node's Kubernetes Node until it is
// Ready. Machines the cluster file doesn't know are recorded and left alone.
// Progress lives in the Machine's status (conditions Joined and NodeReady,
// the confirmed install disk), so a restarted controller resumes.
package controller

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/dodai-dev/dodai/api/v1alpha1"
	"github.com/dodai-dev/dodai/internal/bootstrap"
	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/discover"
	"github.com/dodai-dev/dodai/internal/machineconfig"
	"github.com/dodai-dev/dodai/internal/state"
	"github.com/dodai-dev/dodai/internal/talos"
)

// Reasons of the Joined and NodeReady conditions.
// conflictRetry is how soon a Machine whose status write lost a race to
// another writer is reconciled again.
const conflictRetry = 100 * time.Millisecond

const (
	ReasonUnknownMachine   = "UnknownMachine"
	ReasonNoAddress        = "NoAddress"
	ReasonNotInMaintenance = "NotInMaintenance"
	ReasonOtherMachine     = "OtherMachine"
	ReasonApplyFailed      = "ApplyFailed"
	ReasonRebooting        = "Rebooting"
	ReasonConfigured       = "Configured"
	ReasonNodeMissing      = "NodeNotRegistered"
	ReasonNodeNotReady     = "NodeNotReady"
	ReasonNodeReady        = "NodeReady"
)

// Reconciler joins Machines. Set the exported fields, then SetupWithManager.
type Reconciler struct {
	Client   client.Client
	Source   *cluster.Source
	Renderer *machineconfig.Renderer
	// Talosconfig authenticates to configured nodes (issued from the
	// cluster's secrets).
	Talosconfig *clientconfig.Config
	// Port of the Talos API (default talos.DefaultPort).
	Port int
	// Poll is the requeue interval while waiting (default 5 s).
	Poll time.Duration
	Log  *slog.Logger
}

// SetupWithManager registers the controller: Machines, and Nodes mapped
// to the Machines of the same node name.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager, concurrency int) error {
	if r.Port == 0 {
		r.Port = talos.DefaultPort
	}
	if r.Poll == 0 {
		r.Poll = 5 * time.Second
	}
	if r.Log == nil {
		r.Log = slog.New(slog.DiscardHandler)
	}
	if concurrency <= 0 {
		concurrency = 4
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("dodai-join").
		For(&v1alpha1.Machine{}).
		Watches(&corev1.Node{}, handler.EnqueueRequestsFromMapFunc(r.machinesOfNode)).
		WithOptions(controller.Options{MaxConcurrentReconciles: concurrency}).
		Complete(r)
}

func (r *Reconciler) machinesOfNode(ctx context.Context, o client.Object) []reconcile.Request {
	var list v1alpha1.MachineList
	if err := r.Client.List(ctx, &list); err != nil {
		return nil
	}
	var out []reconcile.Request
	for _, m := range list.Items {
		if n := r.node(&m); n != nil && n.Name == o.GetName() {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: m.Namespace, Name: m.Name}})
		}
	}
	return out
}

// node is the cluster file's node owning one of the machine's MACs; the
// cluster file decides, not spec.node.
func (r *Reconciler) node(m *v1alpha1.Machine) *cluster.Node {
	spec := &r.Source.Cluster.Spec
	for i := range spec.Nodes {
		for _, mac := range spec.Nodes[i].MACs {
			canon, err := cluster.ParseMAC(mac)
			if err == nil && slices.Contains(m.Spec.MACs, v1alpha1.MAC(canon)) {
				return &spec.Nodes[i]
			}
		}
	}
	return nil
}

// Reconcile moves one Machine forward by one step and records where it is.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	m := &v1alpha1.Machine{}
	if err := r.Client.Get(ctx, req.NamespacedName, m); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	before := m.Status.DeepCopy()
	res, stepErr := r.step(ctx, m)
	m.Status.ObservedGeneration = m.Generation
	if !statusEqual(before, &m.Status) {
		if err := r.Client.Status().Update(ctx, m); err != nil {
			if apierrors.IsConflict(err) {
				return reconcile.Result{RequeueAfter: conflictRetry}, nil
			}
			return reconcile.Result{}, fmt.Errorf("updating status of Machine %s: %w", m.Name, err)
		}
	}
	return res, stepErr
}

func statusEqual(a, b *v1alpha1.MachineStatus) bool { return equality.Semantic.DeepEqual(a, b) }

func (r *Reconciler) setJoined(m *v1alpha1.Machine, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&m.Status.Conditions, metav1.Condition{Type: v1alpha1.ConditionJoined, Status: status,
		Reason: reason, Message: msg, ObservedGeneration: m.Generation})
}

func (r *Reconciler) step(ctx context.Context, m *v1alpha1.Machine) (reconcile.Result, error) {
	n := r.node(m)
	if n == nil {
		r.setJoined(m, metav1.ConditionFalse, ReasonUnknownMachine,
			fmt.Sprintf("MAC %v is not a node of %s: recorded and left alone", m.Spec.MACs, cluster.FileName))
		return reconcile.Result{}, nil
	}
	log := r.Log.With("machine", m.Name, "node", n.Name)
	j := m.Status.Join
	switch {
	case j != nil && j.Configured != nil:
		return r.nodeReady(ctx, m, n)
	case j != nil && j.Applied != nil:
		if err := bootstrap.Answers(ctx, r.Talosconfig, j.Address, r.Port); err != nil {
			r.setJoined(m, metav1.ConditionFalse, ReasonRebooting,
				fmt.Sprintf("config applied at %s; waiting for the node to answer the authenticated Talos API on %s", j.Applied.UTC().Format(time.RFC3339), j.Address))
			return reconcile.Result{RequeueAfter: r.Poll}, nil
		}
		now := metav1.Now()
		j.Configured = &now
		log.Info("node is up", "address", j.Address)
		r.setJoined(m, metav1.ConditionTrue, ReasonConfigured, "the node answers the authenticated Talos API on "+j.Address)
		return r.nodeReady(ctx, m, n)
	}
	addr := m.Status.IP
	if addr == "" {
		r.setJoined(m, metav1.ConditionFalse, ReasonNoAddress, "no address seen for this machine yet (it has not finished a DHCP exchange with a boot server)")
		return reconcile.Result{RequeueAfter: 6 * r.Poll}, nil
	}
	tm, err := discover.Inspect(ctx, addr, r.Port)
	if err != nil {
		r.setJoined(m, metav1.ConditionFalse, ReasonNotInMaintenance, fmt.Sprintf("no Talos maintenance API on %s: %v", addr, err))
		return reconcile.Result{RequeueAfter: 3 * r.Poll}, nil
	}
	if !slices.ContainsFunc(n.MACs, func(mac string) bool { return tm.HasMAC(mac) }) {
		r.setJoined(m, metav1.ConditionFalse, ReasonOtherMachine,
			fmt.Sprintf("%s answers in maintenance mode but is another machine (MAC %s, none of node %s's)", addr, tm.MAC, n.Name))
		return reconcile.Result{RequeueAfter: 3 * r.Poll}, nil
	}
	m.Status.Inventory = inventory(tm)
	rec := &statusRecord{ctx: ctx, c: r.Client, m: m}
	applied, err := bootstrap.ApplyConfig(ctx, bootstrap.ApplyOptions{Spec: &r.Source.Cluster.Spec, Renderer: r.Renderer, Port: r.Port, Log: r.Log}, n, tm, rec)
	if err != nil {
		log.Warn("config not applied", "err", err)
		r.setJoined(m, metav1.ConditionFalse, ReasonApplyFailed, err.Error())
		return reconcile.Result{RequeueAfter: 6 * r.Poll}, nil
	}
	log.Info("config applied", "disk", m.Status.Join.InstallDisk.DevPath, "address", applied)
	r.setJoined(m, metav1.ConditionFalse, ReasonRebooting, "config applied; waiting for the node to answer the authenticated Talos API on "+applied)
	return reconcile.Result{RequeueAfter: r.Poll / 5}, nil
}

// nodeReady reports the Kubernetes Node of a configured machine.
func (r *Reconciler) nodeReady(ctx context.Context, m *v1alpha1.Machine, n *cluster.Node) (reconcile.Result, error) {
	node := &corev1.Node{}
	err := r.Client.Get(ctx, client.ObjectKey{Name: n.Name}, node)
	cond := metav1.Condition{Type: v1alpha1.ConditionNodeReady, Status: metav1.ConditionFalse, ObservedGeneration: m.Generation}
	switch {
	case apierrors.IsNotFound(err):
		cond.Reason, cond.Message = ReasonNodeMissing, "no Node "+n.Name+" registered yet"
	case err != nil:
		return reconcile.Result{}, fmt.Errorf("reading Node %s: %w", n.Name, err)
	default:
		cond.Reason, cond.Message = ReasonNodeNotReady, "Node "+n.Name+" is not Ready"
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady {
				if c.Status == corev1.ConditionTrue {
					cond.Status, cond.Reason, cond.Message = metav1.ConditionTrue, ReasonNodeReady, "Node "+n.Name+" is Ready"
				} else if c.Message != "" {
					cond.Message += ": " + c.Message
				}
			}
		}
	}
	meta.SetStatusCondition(&m.Status.Conditions, cond)
	if cond.Status == metav1.ConditionTrue {
		return reconcile.Result{}, nil // Node changes requeue through the watch
	}
	return reconcile.Result{RequeueAfter: 2 * r.Poll}, nil
}

func inventory(tm *talos.Machine) *v1alpha1.Inventory {
	now := metav1.Now()
	inv := &v1alpha1.Inventory{TalosVersion: tm.TalosVersion, MaintenanceAddress: tm.Address, MemoryMiB: int64(tm.MemoryMiB), Observed: &now}
	for _, c := range tm.CPUs {
		inv.CPUs += int32(c.Threads)
	}
	for _, d := range tm.Disks {
		if len(inv.Disks) == 64 {
			break
		}
		inv.Disks = append(inv.Disks, v1alpha1.Disk{DevPath: d.DevPath, Size: int64(d.Size), Model: d.Model, Serial: d.Serial, WWID: d.WWID, Transport: d.Transport})
	}
	return inv
}

// statusRecord keeps the apply progress in the Machine's status, written
// before the config is sent (bootstrap.ApplyRecord).
type statusRecord struct {
	ctx context.Context
	c   client.Client
	m   *v1alpha1.Machine
}

func (s *statusRecord) ConfirmedDisk() *state.Disk {
	if s.m.Status.Join == nil || s.m.Status.Join.InstallDisk == nil {
		return nil
	}
	d := s.m.Status.Join.InstallDisk
	return &state.Disk{DevPath: d.DevPath, Serial: d.Serial, WWID: d.WWID, Model: d.Model, Size: uint64(d.Size)}
}

func (s *statusRecord) Applying(_ *talos.Machine, disk *state.Disk, addr string) error {
	if s.m.Status.Join == nil {
		s.m.Status.Join = &v1alpha1.JoinStatus{}
	}
	j := s.m.Status.Join
	if j.InstallDisk == nil {
		j.InstallDisk = &v1alpha1.Disk{DevPath: disk.DevPath, Serial: disk.Serial, WWID: disk.WWID, Model: disk.Model, Size: int64(disk.Size)}
	}
	now := metav1.Now()
	j.Applied, j.Address = &now, addr
	return s.write()
}

func (s *statusRecord) ApplyFailed() error {
	if s.m.Status.Join != nil {
		s.m.Status.Join.Applied = nil
	}
	return s.write()
}

// write persists the status now; a conflict means someone else changed the
// Machine, and the apply must not go ahead on stale knowledge.
func (s *statusRecord) write() error {
	if err := s.c.Status().Update(s.ctx, s.m); err != nil {
		return fmt.Errorf("recording the apply in Machine %s: %w", s.m.Name, err)
	}
	return nil
}
