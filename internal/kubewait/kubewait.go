// Package kubewait holds the waits on Kubernetes objects that several
// parts of dodai share, on the one wait (internal/poll): a
// CustomResourceDefinition becoming Established (its kinds are served)
// and an object being gone. Callers pass how they read the object, so the
// dynamic client (platform install, verify) and controller-runtime's
// client (the in-cluster CRDs) wait by the same rule.
package kubewait

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/dodai-dev/dodai/internal/poll"
)

// Intervals of the waits: a CRD is usually Established within a few
// hundred milliseconds of its apply; a deletion waits for a controller.
const (
	EstablishedInterval = 100 * time.Millisecond
	GoneInterval        = 250 * time.Millisecond
)

// Get reads the object waited for. A NotFound error is "not there".
type Get func(ctx context.Context) (*unstructured.Unstructured, error)

// Established reports whether crd (a CustomResourceDefinition) has the
// condition Established=True.
func Established(crd *unstructured.Unstructured) bool {
	if crd == nil {
		return false
	}
	conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Established" && m["status"] == "True" {
			return true
		}
	}
	return false
}

// WaitEstablished waits until the CRD called name that get reads is
// Established, or ctx ends. Read errors (the CRD not there yet, the
// apiserver busy) mean "not yet" and are named if the wait gives up.
func WaitEstablished(ctx context.Context, name string, get Get) error {
	err := poll.Until(ctx, poll.Options{Interval: EstablishedInterval}, func(ctx context.Context) (bool, error) {
		crd, err := get(ctx)
		if err != nil {
			return false, err
		}
		return Established(crd), nil
	})
	if err != nil {
		return fmt.Errorf("waiting for CRD %s to be established: %w", name, err)
	}
	return nil
}

// WaitGone waits until get reports the object what names as not found,
// or ctx ends. Other read errors mean "not yet".
func WaitGone(ctx context.Context, what string, get Get) error {
	err := poll.Until(ctx, poll.Options{Interval: GoneInterval}, func(ctx context.Context) (bool, error) {
		_, err := get(ctx)
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
	if err != nil {
		return fmt.Errorf("waiting for %s to be deleted: %w", what, err)
	}
	return nil
}
