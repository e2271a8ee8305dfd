package rollout

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/config"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dodai-dev/dodai/internal/plan"
	"github.com/dodai-dev/dodai/internal/poll"
)

// poll calls check every PollInterval (poll.Until) until it returns done
// or an error, bounded by NodeTimeout; the timeout error carries check's
// last reason.
func (r *runner) poll(ctx context.Context, what string, check func(context.Context) (done bool, reason string, err error)) error {
	last := ""
	err := poll.Until(ctx, poll.Options{Interval: r.o.PollInterval, Timeout: r.o.NodeTimeout}, func(ctx context.Context) (bool, error) {
		done, reason, err := check(ctx)
		if err != nil {
			return false, poll.Stop(err)
		}
		last = reason
		return done, nil
	})
	if perr, ok := errors.AsType[*poll.Error](err); ok {
		return fmt.Errorf("%s: not within %s (last: %s)", what, perr.Elapsed.Round(time.Second), last)
	}
	return err
}

// waitReady waits until the node's Kubernetes Node is Ready with the
// kubelet version expected.
func (r *runner) waitReady(ctx context.Context, name, kubelet string) error {
	return r.step(name, StepReady, func() (string, error) {
		err := r.poll(ctx, "Node "+name+" Ready with kubelet "+kubelet, func(ctx context.Context) (bool, string, error) {
			n, err := r.o.Kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err.Error(), nil
			}
			ready, reason := false, "no Ready condition"
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady {
					ready, reason = c.Status == corev1.ConditionTrue, fmt.Sprintf("Ready=%s (%s)", c.Status, c.Reason)
				}
			}
			if v := n.Status.NodeInfo.KubeletVersion; v != kubelet {
				return false, fmt.Sprintf("%s, kubelet %s", reason, v), nil
			}
			return ready, reason, nil
		})
		return kubelet, err
	})
}

// waitStaticPods waits until the node's control-plane static pods (their
// mirror pods in kube-system, as the kubelet reports them) run the images
// of cfg and are Ready (what `talosctl upgrade-k8s` waits for).
func (r *runner) waitStaticPods(ctx context.Context, name string, cfg config.Provider) (string, error) {
	c := cfg.Cluster()
	want := map[string]string{
		"kube-apiserver":          c.APIServer().Image(),
		"kube-controller-manager": c.ControllerManager().Image(),
		"kube-scheduler":          c.Scheduler().Image(),
	}
	err := r.poll(ctx, "control-plane pods of "+name, func(ctx context.Context) (bool, string, error) {
		for app, image := range want {
			p, err := r.o.Kube.CoreV1().Pods(metav1.NamespaceSystem).Get(ctx, app+"-"+name, metav1.GetOptions{})
			if err != nil {
				return false, err.Error(), nil
			}
			if len(p.Spec.Containers) == 0 || p.Spec.Containers[0].Image != image {
				return false, fmt.Sprintf("%s runs %s, want %s", p.Name, containerImage(p), image), nil
			}
			if !podReady(p) {
				return false, p.Name + " not Ready", nil
			}
		}
		return true, "", nil
	})
	return plan.ImageTag(want["kube-apiserver"]), err
}

func containerImage(p *corev1.Pod) string {
	if len(p.Spec.Containers) == 0 {
		return "nothing"
	}
	return p.Spec.Containers[0].Image
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
