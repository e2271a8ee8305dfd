// Package fakekubelet plays the kubelet's part for tests against the real
// kube-apiserver of test/kubetest, where no kubelet can run (it needs a
// container runtime and a real machine): it registers a real Node object
// with a kubelet version and a Ready condition, marks the pods bound to the
// node as running and ready, finishes pods that are being deleted (an
// evicted pod stays Terminating until its kubelet confirms; here that is
// immediate), and keeps mirror pods for static pods (the control-plane
// components Talos runs), as a kubelet does. Everything else (scheduling,
// PodDisruptionBudget status, garbage collection) is left to the real
// control plane.
package fakekubelet

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

// StaticPod is a static pod the kubelet runs from a manifest on the node
// (on Talos: kube-apiserver, kube-controller-manager, kube-scheduler); the
// kubelet mirrors it into the API as <Name>-<node> in kube-system.
type StaticPod struct {
	// Name, e.g. kube-apiserver (also the k8s-app label, as on Talos).
	Name  string
	Image string
}

// Config describes the node.
type Config struct {
	Client kubernetes.Interface
	// NodeName is the Kubernetes node name (Talos: the hostname).
	NodeName string
	// KubeletVersion as the node reports it, e.g. v1.34.1.
	KubeletVersion string
	// OSImage, e.g. "Talos (v1.11.5)".
	OSImage string
	// Address is the node's InternalIP.
	Address      string
	ControlPlane bool
	// StaticPods are mirrored into kube-system.
	StaticPods []StaticPod
}

// Kubelet is one running fake kubelet.
type Kubelet struct {
	cfg    Config
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Start registers (or updates) the Node as Ready with the config's kubelet
// version, syncs the mirror pods and starts looking after the node's pods.
// Stop it with Stop.
func Start(ctx context.Context, cfg Config) (*Kubelet, error) {
	if cfg.Client == nil || cfg.NodeName == "" {
		return nil, errors.New("fakekubelet: client and node name are required")
	}
	if err := register(ctx, cfg); err != nil {
		return nil, err
	}
	if err := syncMirrorPods(ctx, cfg); err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	k := &Kubelet{cfg: cfg, cancel: cancel}
	factory := informers.NewSharedInformerFactoryWithOptions(cfg.Client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", cfg.NodeName).String()
		}))
	inf := factory.Core().V1().Pods().Informer()
	work := make(chan *corev1.Pod, 1024)
	enqueue := func(obj any) {
		if p, ok := obj.(*corev1.Pod); ok {
			select {
			case work <- p:
			case <-rctx.Done():
			}
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
	}); err != nil {
		cancel()
		return nil, fmt.Errorf("fakekubelet %s: %w", cfg.NodeName, err)
	}
	factory.Start(rctx.Done())
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		defer factory.Shutdown()
		for {
			select {
			case <-rctx.Done():
				return
			case p := <-work:
				k.handle(rctx, p)
			}
		}
	}()
	syncCtx, syncCancel := context.WithTimeout(ctx, 30*time.Second)
	defer syncCancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), inf.HasSynced) {
		_ = k.Stop(ctx, false)
		return nil, fmt.Errorf("fakekubelet %s: pod informer did not sync", cfg.NodeName)
	}
	return k, nil
}

// Stop stops looking after pods. With notReady the Node's Ready condition
// becomes Unknown ("Kubelet stopped posting node status."), as the node
// lifecycle controller reports a node that went away.
func (k *Kubelet) Stop(ctx context.Context, notReady bool) error {
	k.cancel()
	k.wg.Wait()
	if !notReady {
		return nil
	}
	return setReady(ctx, k.cfg.Client, k.cfg.NodeName, corev1.ConditionUnknown, "NodeStatusUnknown", "Kubelet stopped posting node status.")
}

// handle finishes deleted pods and starts new ones.
func (k *Kubelet) handle(ctx context.Context, p *corev1.Pod) {
	cs := k.cfg.Client
	if p.DeletionTimestamp != nil {
		// The containers are stopped at once: confirm the deletion.
		for ctx.Err() == nil {
			err := cs.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{
				GracePeriodSeconds: ptr.To[int64](0),
				Preconditions:      &metav1.Preconditions{UID: &p.UID},
			})
			if err == nil || apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		return
	}
	if p.Status.Phase == corev1.PodRunning && podReady(p) {
		return
	}
	now := metav1.Now()
	q := p.DeepCopy()
	q.Status.Phase = corev1.PodRunning
	q.Status.HostIP = k.cfg.Address
	if q.Status.StartTime == nil {
		q.Status.StartTime = &now
	}
	q.Status.Conditions = []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
	}
	q.Status.ContainerStatuses = nil
	for _, c := range q.Spec.Containers {
		q.Status.ContainerStatuses = append(q.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: c.Image, Ready: true, Started: ptr.To(true),
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		})
	}
	_, _ = cs.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, q, metav1.UpdateOptions{})
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// register creates or updates the Node and reports it Ready.
func register(ctx context.Context, cfg Config) error {
	nodes := cfg.Client.CoreV1().Nodes()
	lbl := map[string]string{
		"kubernetes.io/hostname": cfg.NodeName,
		"kubernetes.io/os":       "linux",
		"kubernetes.io/arch":     "amd64",
	}
	if cfg.ControlPlane {
		lbl["node-role.kubernetes.io/control-plane"] = ""
	}
	n, err := nodes.Get(ctx, cfg.NodeName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		n, err = nodes.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: cfg.NodeName, Labels: lbl}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("fakekubelet: registering node %s: %w", cfg.NodeName, err)
		}
		if err != nil {
			if n, err = nodes.Get(ctx, cfg.NodeName, metav1.GetOptions{}); err != nil {
				return fmt.Errorf("fakekubelet: reading node %s: %w", cfg.NodeName, err)
			}
		}
	case err != nil:
		return fmt.Errorf("fakekubelet: reading node %s: %w", cfg.NodeName, err)
	default:
		// A kubelet coming back keeps the node's spec (a cordon stays).
		changed := false
		for k, v := range lbl {
			if n.Labels[k] != v {
				if n.Labels == nil {
					n.Labels = map[string]string{}
				}
				n.Labels[k], changed = v, true
			}
		}
		if changed {
			if n, err = nodes.Update(ctx, n, metav1.UpdateOptions{}); err != nil {
				return fmt.Errorf("fakekubelet: updating node %s: %w", cfg.NodeName, err)
			}
		}
	}
	now := metav1.Now()
	n.Status.NodeInfo = corev1.NodeSystemInfo{
		KubeletVersion:          cfg.KubeletVersion,
		OSImage:                 cfg.OSImage,
		OperatingSystem:         "linux",
		Architecture:            "amd64",
		ContainerRuntimeVersion: "containerd://2.1.5",
		KernelVersion:           "6.12.57-talos",
		MachineID:               string(types.UID(cfg.NodeName)),
	}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: cfg.NodeName}}
	if cfg.Address != "" {
		n.Status.Addresses = append([]corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: cfg.Address}}, n.Status.Addresses...)
	}
	n.Status.Capacity = corev1.ResourceList{}
	n.Status.Conditions = []corev1.NodeCondition{{
		Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
		Message: "kubelet is posting ready status", LastHeartbeatTime: now, LastTransitionTime: now,
	}}
	if _, err := nodes.UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("fakekubelet: reporting node %s ready: %w", cfg.NodeName, err)
	}
	return nil
}

func setReady(ctx context.Context, cs kubernetes.Interface, node string, st corev1.ConditionStatus, reason, msg string) error {
	for range 5 {
		n, err := cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("fakekubelet: reading node %s: %w", node, err)
		}
		now := metav1.Now()
		cond := corev1.NodeCondition{Type: corev1.NodeReady, Status: st, Reason: reason, Message: msg, LastHeartbeatTime: now, LastTransitionTime: now}
		found := false
		for i := range n.Status.Conditions {
			if n.Status.Conditions[i].Type == corev1.NodeReady {
				n.Status.Conditions[i], found = cond, true
			}
		}
		if !found {
			n.Status.Conditions = append(n.Status.Conditions, cond)
		}
		_, err = cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("fakekubelet: updating node %s: %w", node, err)
		}
		return nil
	}
	return fmt.Errorf("fakekubelet: updating node %s: too many conflicts", node)
}

// mirrorName is the name a kubelet gives a static pod's mirror pod.
func mirrorName(pod, node string) string { return pod + "-" + node }

// syncMirrorPods makes the node's mirror pods match cfg.StaticPods: a
// changed static pod gets a new mirror pod (the kubelet deletes and
// recreates it), which is then reported running and ready.
func syncMirrorPods(ctx context.Context, cfg Config) error {
	pods := cfg.Client.CoreV1().Pods(metav1.NamespaceSystem)
	n, err := cfg.Client.CoreV1().Nodes().Get(ctx, cfg.NodeName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("fakekubelet: reading node %s: %w", cfg.NodeName, err)
	}
	for _, sp := range cfg.StaticPods {
		name := mirrorName(sp.Name, cfg.NodeName)
		cur, err := pods.Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			if len(cur.Spec.Containers) == 1 && cur.Spec.Containers[0].Image == sp.Image && podReady(cur) {
				continue
			}
			if err := pods.Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("fakekubelet: replacing mirror pod %s: %w", name, err)
			}
		} else if !apierrors.IsNotFound(err) {
			return fmt.Errorf("fakekubelet: reading mirror pod %s: %w", name, err)
		}
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Name: name, Namespace: metav1.NamespaceSystem,
				Labels: map[string]string{"k8s-app": sp.Name, "tier": "control-plane"},
				Annotations: map[string]string{
					corev1.MirrorPodAnnotationKey: "mirror",
					"kubernetes.io/config.source": "file",
				},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: n.Name, UID: n.UID, Controller: ptr.To(true)}},
			},
			Spec: corev1.PodSpec{
				NodeName:    cfg.NodeName,
				HostNetwork: true,
				Containers:  []corev1.Container{{Name: sp.Name, Image: sp.Image}},
			},
		}
		for range 50 {
			_, err = pods.Create(ctx, p, metav1.CreateOptions{})
			if !apierrors.IsAlreadyExists(err) {
				break
			}
			// The old mirror pod is still being deleted.
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			return fmt.Errorf("fakekubelet: creating mirror pod %s: %w", name, err)
		}
	}
	return nil
}
