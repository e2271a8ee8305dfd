// Package drain takes a Kubernetes node out of service before a disruptive
// step and puts it back afterwards: cordon, drain with the Kubernetes
// library's own drain (k8s.io/kubectl/pkg/drain: evictions through the
// Eviction API, so PodDisruptionBudgets are respected; DaemonSet and mirror
// pods stay), bounded by a timeout, and uncordon. When a drain does not
// finish, the error names the pods left and the PodDisruptionBudgets that
// blocked them.
package drain

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	kubedrain "k8s.io/kubectl/pkg/drain"
)

// DefaultTimeout bounds a drain when Options.Timeout is zero (talosctl's
// default drain timeout is the same).
const DefaultTimeout = 5 * time.Minute

// Options of a drain.
type Options struct {
	// Timeout bounds the whole drain (default DefaultTimeout).
	Timeout time.Duration
	// GracePeriod overrides the pods' termination grace period; nil keeps
	// each pod's own.
	GracePeriod *time.Duration
	// Force also deletes pods that no controller manages (they are not
	// recreated anywhere). Without it such pods make the drain fail before
	// anything is evicted, as `kubectl drain` does.
	Force bool
	// Log receives one line per evicted pod and the library's warnings.
	Log *slog.Logger
}

// Result of a drain.
type Result struct {
	// Evicted pods, as namespace/name.
	Evicted []string
	// Elapsed time.
	Elapsed time.Duration
}

// Error is a drain that did not finish: the pods still on the node and the
// PodDisruptionBudgets that forbade their eviction.
type Error struct {
	Node string
	// Pending pods (namespace/name) that were not evicted in time.
	Pending []string
	// Budgets blocking them, e.g. "default/web (needs 2 healthy pods, has
	// 2; 0 disruptions allowed)".
	Budgets []string
	// Timeout that was reached, zero for other failures.
	Timeout time.Duration
	Err     error
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "draining node %s", e.Node)
	if e.Timeout > 0 {
		fmt.Fprintf(&b, ": not finished within %s", e.Timeout)
	}
	if len(e.Budgets) > 0 {
		fmt.Fprintf(&b, ": eviction blocked by PodDisruptionBudget %s", strings.Join(e.Budgets, ", "))
	}
	if len(e.Pending) > 0 {
		fmt.Fprintf(&b, "; pods left: %s", strings.Join(e.Pending, ", "))
	}
	if e.Err != nil && (e.Timeout == 0 || len(e.Budgets) == 0) {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Cordon marks the node unschedulable (a no-op when it already is).
func Cordon(ctx context.Context, cs kubernetes.Interface, node string) error {
	return setUnschedulable(ctx, cs, node, true)
}

// Uncordon marks the node schedulable again (a no-op when it already is).
func Uncordon(ctx context.Context, cs kubernetes.Interface, node string) error {
	return setUnschedulable(ctx, cs, node, false)
}

// Cordoned reports whether the node is marked unschedulable.
func Cordoned(ctx context.Context, cs kubernetes.Interface, node string) (bool, error) {
	n, err := cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return false, fmt.Errorf("reading node %s: %w", node, err)
	}
	return n.Spec.Unschedulable, nil
}

func setUnschedulable(ctx context.Context, cs kubernetes.Interface, node string, desired bool) error {
	verb := "cordoning"
	if !desired {
		verb = "uncordoning"
	}
	n, err := cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("%s node %s: %w", verb, node, err)
	}
	h := &kubedrain.Helper{Ctx: ctx, Client: cs}
	if err := kubedrain.RunCordonOrUncordon(h, n, desired); err != nil {
		return fmt.Errorf("%s node %s: %w", verb, node, err)
	}
	return nil
}

// Drain cordons the node and evicts its pods (DaemonSet and mirror pods
// stay; emptyDir data of evicted pods is lost, as it would be on the
// reboot that follows), waiting until they are gone, within the timeout.
func Drain(ctx context.Context, cs kubernetes.Interface, node string, opts Options) (*Result, error) {
	start := time.Now()
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := Cordon(ctx, cs, node); err != nil {
		return nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()

	res := &Result{}
	var mu sync.Mutex
	out := &lineLog{log: log, level: slog.LevelDebug, node: node}
	errOut := &lineLog{log: log, level: slog.LevelWarn, node: node}
	h := &kubedrain.Helper{
		Ctx:                 dctx,
		Client:              cs,
		Force:               opts.Force,
		GracePeriodSeconds:  -1,
		IgnoreAllDaemonSets: true,
		DeleteEmptyDirData:  true,
		Timeout:             opts.Timeout,
		// kubectl drain's default; the library's zero value retries a
		// refused eviction at once, in a loop that only the client's
		// rate limiter slows down.
		EvictErrorRetryDelay: 5 * time.Second,
		Out:                  out,
		ErrOut:               errOut,
		OnPodDeletionOrEvictionFinished: func(pod *corev1.Pod, _ bool, err error) {
			if err != nil {
				return
			}
			mu.Lock()
			res.Evicted = append(res.Evicted, pod.Namespace+"/"+pod.Name)
			mu.Unlock()
			log.Info("pod evicted", "node", node, "pod", pod.Namespace+"/"+pod.Name)
		},
	}
	if opts.GracePeriod != nil {
		h.GracePeriodSeconds = int(opts.GracePeriod.Seconds())
	}

	// The library sleeps 5 s between refused evictions without watching
	// its context, so it is run aside and the timeout is enforced here.
	done := make(chan error, 1)
	go func() { done <- kubedrain.RunNodeDrain(h, node) }()
	var err error
	select {
	case err = <-done:
	case <-dctx.Done():
		select {
		case err = <-done:
		case <-time.After(200 * time.Millisecond):
			err = dctx.Err()
		}
	}
	res.Elapsed = time.Since(start)
	mu.Lock()
	slices.Sort(res.Evicted)
	mu.Unlock()
	if err == nil {
		return res, nil
	}
	if ctx.Err() != nil {
		return res, fmt.Errorf("draining node %s: %w", node, ctx.Err())
	}
	de := &Error{Node: node, Err: err}
	if dctx.Err() != nil {
		de.Timeout = opts.Timeout
	}
	// Explain with what is left on the node (a fresh context: dctx is over).
	ectx, ecancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer ecancel()
	de.Pending, de.Budgets = blockers(ectx, cs, h, node)
	return res, de
}

// blockers lists the pods the drain would still evict and the disruption
// budgets selecting them that allow no disruption now.
func blockers(ctx context.Context, cs kubernetes.Interface, h *kubedrain.Helper, node string) (pending, budgets []string) {
	h2 := *h
	h2.Ctx = ctx
	list, errs := h2.GetPodsForDeletion(node)
	if list == nil || len(errs) > 0 {
		// Pods the library refuses to touch (unmanaged, without Force) are
		// already named in the error.
		return nil, nil
	}
	seen := map[string]bool{}
	pdbs := map[string][]policyv1.PodDisruptionBudget{}
	for _, p := range list.Pods() {
		pending = append(pending, p.Namespace+"/"+p.Name)
		if _, ok := pdbs[p.Namespace]; !ok {
			l, err := cs.PolicyV1().PodDisruptionBudgets(p.Namespace).List(ctx, metav1.ListOptions{})
			if err == nil {
				pdbs[p.Namespace] = l.Items
			} else {
				pdbs[p.Namespace] = nil
			}
		}
		for _, b := range pdbs[p.Namespace] {
			sel, err := metav1.LabelSelectorAsSelector(b.Spec.Selector)
			if err != nil || sel.Empty() || !sel.Matches(labels.Set(p.Labels)) {
				continue
			}
			key := b.Namespace + "/" + b.Name
			if seen[key] || b.Status.DisruptionsAllowed > 0 {
				continue
			}
			seen[key] = true
			budgets = append(budgets, fmt.Sprintf("%s (needs %d healthy pods, has %d; %d disruptions allowed)",
				key, b.Status.DesiredHealthy, b.Status.CurrentHealthy, b.Status.DisruptionsAllowed))
		}
	}
	slices.Sort(pending)
	slices.Sort(budgets)
	return pending, budgets
}

// PodsOn lists the pods bound to a node (all namespaces).
func PodsOn(ctx context.Context, cs kubernetes.Interface, node string) ([]corev1.Pod, error) {
	l, err := cs.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", node).String(),
	})
	if err != nil {
		return nil, fmt.Errorf("listing pods on node %s: %w", node, err)
	}
	return l.Items, nil
}

// lineLog turns the library's text output into log records, one per line.
type lineLog struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	log   *slog.Logger
	level slog.Level
	node  string
}

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	for {
		line, err := l.buf.ReadString('\n')
		if err != nil {
			// Keep the unfinished line for the next write.
			l.buf.Reset()
			l.buf.WriteString(line)
			return len(p), nil
		}
		if s := strings.TrimSpace(line); s != "" {
			l.log.Log(context.Background(), l.level, s, "node", l.node)
		}
	}
}
