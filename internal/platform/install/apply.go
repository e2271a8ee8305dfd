package install

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"

	"github.com/dodai-dev/dodai/internal/kubewait"
)

// FieldManager is dodai's server-side apply field manager.
const FieldManager = "dodai"

// Inventory names: a ConfigMap in flux-system listing what the last
// platform apply created, so the next one can prune what it no longer has.
const (
	InventoryName = "dodai-platform-inventory"
	inventoryKey  = "objects"
)

// Applier server-side applies objects with field manager "dodai".
type Applier struct {
	Dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
}

// NewApplier builds an applier from a dynamic client and discovery.
func NewApplier(dyn dynamic.Interface, disc discovery.DiscoveryInterface) *Applier {
	return &Applier{Dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disc))}
}

// resource finds the REST resource of an object, refreshing discovery once
// (CRDs applied a moment ago are not in the cache yet).
func (a *Applier) resource(u *unstructured.Unstructured) (dynamic.ResourceInterface, *meta.RESTMapping, error) {
	gvk := u.GroupVersionKind()
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		a.mapper.Reset()
		m, err = a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("finding the API resource of %s: %w", gvk, err)
	}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		return a.Dyn.Resource(m.Resource).Namespace(u.GetNamespace()), m, nil
	}
	return a.Dyn.Resource(m.Resource), m, nil
}

// ApplyResult is the outcome of applying one object.
type ApplyResult struct {
	Ref     Ref
	Changed bool
	// Created: the object did not exist before this apply.
	Created bool
}

// Apply server-side applies objects in order (force: dodai owns what it
// applies). With dryRun the API server validates and defaults without
// persisting. Changed is true when the object's resourceVersion moved.
func (a *Applier) Apply(ctx context.Context, objs []*unstructured.Unstructured, dryRun bool) ([]ApplyResult, error) {
	var res []ApplyResult
	for _, u := range objs {
		ri, _, err := a.resource(u)
		if err != nil {
			return res, err
		}
		var before *unstructured.Unstructured
		if cur, err := ri.Get(ctx, u.GetName(), metav1.GetOptions{}); err == nil {
			before = cur
		}
		opts := metav1.ApplyOptions{FieldManager: FieldManager, Force: true}
		if dryRun {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		out, err := ri.Apply(ctx, u.GetName(), u, opts)
		if err != nil {
			return res, fmt.Errorf("applying %s: %w", RefOf(u), err)
		}
		res = append(res, ApplyResult{Ref: RefOf(u), Changed: !dryRun && changed(before, out), Created: !dryRun && before == nil})
	}
	return res, nil
}

// changed reports whether applying modified the object. Objects with a
// generation (HelmReleases, sources, Deployments, CRDs) changed when their
// generation, labels or annotations did: their controllers update status on
// their own schedule, which also moves resourceVersion. Others (Namespaces,
// ConfigMaps) changed when their resourceVersion did.
func changed(before, after *unstructured.Unstructured) bool {
	if before == nil {
		return true
	}
	if before.GetGeneration() == 0 {
		return before.GetResourceVersion() != after.GetResourceVersion()
	}
	return before.GetGeneration() != after.GetGeneration() ||
		!reflect.DeepEqual(before.GetLabels(), after.GetLabels()) ||
		!reflect.DeepEqual(before.GetAnnotations(), after.GetAnnotations())
}

// Ref identifies an object in the inventory.
type Ref struct {
	Group     string `json:"group,omitempty"`
	Version   string `json:"version"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

// RefOf returns the reference of an object.
func RefOf(u *unstructured.Unstructured) Ref {
	gvk := u.GroupVersionKind()
	return Ref{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind, Namespace: u.GetNamespace(), Name: u.GetName()}
}

func (r Ref) String() string {
	k := r.Kind
	if r.Group != "" {
		k += "." + r.Group
	}
	if r.Namespace != "" {
		return k + " " + r.Namespace + "/" + r.Name
	}
	return k + " " + r.Name
}

func (r Ref) object() *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(schema.GroupVersionKind{Group: r.Group, Version: r.Version, Kind: r.Kind})
	u.SetNamespace(r.Namespace)
	u.SetName(r.Name)
	return u
}

var cmGVR = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}

// ReadInventory returns what the previous platform apply recorded (nil if
// none).
func (a *Applier) ReadInventory(ctx context.Context, ns string) ([]Ref, error) {
	cm, err := a.Dyn.Resource(cmGVR).Namespace(ns).Get(ctx, InventoryName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading inventory %s/%s: %w", ns, InventoryName, err)
	}
	data, _, _ := unstructured.NestedString(cm.Object, "data", inventoryKey)
	var refs []Ref
	if err := json.Unmarshal([]byte(data), &refs); err != nil {
		return nil, fmt.Errorf("decoding inventory %s/%s: %w", ns, InventoryName, err)
	}
	return refs, nil
}

// InventoryObject is the ConfigMap recording refs (sorted, so an unchanged
// set applies as a no-op).
func InventoryObject(ns string, refs []Ref) (*unstructured.Unstructured, error) {
	sorted := append([]Ref(nil), refs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].String() < sorted[j].String() })
	b, err := json.Marshal(sorted)
	if err != nil {
		return nil, err
	}
	cm := &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: InventoryName, Namespace: ns, Labels: map[string]string{"app.kubernetes.io/managed-by": "dodai"}},
		Data:       map[string]string{inventoryKey: string(b)},
	}
	m, err := toMap(cm)
	if err != nil {
		return nil, err
	}
	return &unstructured.Unstructured{Object: m}, nil
}

// Prune deletes what old has and keep does not: HelmReleases first (their
// finalizer makes helm-controller uninstall them) and waits for them to go,
// then sources, then Namespaces. It returns what it deleted.
func (a *Applier) Prune(ctx context.Context, old []Ref, keep []Ref, log func(string, ...any)) ([]Ref, error) {
	kept := map[Ref]bool{}
	for _, r := range keep {
		kept[r] = true
	}
	var stale []Ref
	for _, r := range old {
		if !kept[r] {
			stale = append(stale, r)
		}
	}
	rank := func(r Ref) int {
		switch {
		case r.Kind == "HelmRelease":
			return 0
		case r.Kind == "Namespace":
			return 2
		default:
			return 1
		}
	}
	sort.SliceStable(stale, func(i, j int) bool { return rank(stale[i]) < rank(stale[j]) })
	var deleted []Ref
	for phase := 0; phase <= 2; phase++ {
		var waitFor []Ref
		for _, r := range stale {
			if rank(r) != phase {
				continue
			}
			ri, _, err := a.resource(r.object())
			if err != nil {
				if meta.IsNoMatchError(err) || strings.Contains(err.Error(), "no matches for kind") {
					continue
				}
				return deleted, err
			}
			err = ri.Delete(ctx, r.Name, metav1.DeleteOptions{})
			if apierrors.IsNotFound(err) {
				continue
			}
			if err != nil {
				return deleted, fmt.Errorf("pruning %s: %w", r, err)
			}
			log("pruned", "object", r.String())
			deleted = append(deleted, r)
			waitFor = append(waitFor, r)
		}
		if phase == 0 {
			for _, r := range waitFor {
				if err := a.waitGone(ctx, r); err != nil {
					return deleted, err
				}
			}
		}
	}
	return deleted, nil
}

func (a *Applier) waitGone(ctx context.Context, r Ref) error {
	ri, _, err := a.resource(r.object())
	if err != nil {
		return err
	}
	return kubewait.WaitGone(ctx, r.String()+" (helm-controller uninstalls it)", func(ctx context.Context) (*unstructured.Unstructured, error) {
		return ri.Get(ctx, r.Name, metav1.GetOptions{})
	})
}

// Namespaced reports whether objects of this kind live in a namespace, from
// the API server's discovery (refreshed once for CRDs applied a moment ago).
func (a *Applier) Namespaced(gvk schema.GroupVersionKind) (bool, error) {
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		a.mapper.Reset()
		m, err = a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if err != nil {
		return false, err
	}
	return m.Scope.Name() == meta.RESTScopeNameNamespace, nil
}
