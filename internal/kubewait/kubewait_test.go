package kubewait

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func crd(conds ...map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"kind": "CustomResourceDefinition"}}
	if conds != nil {
		list := make([]any, len(conds))
		for i, c := range conds {
			list[i] = c
		}
		u.Object["status"] = map[string]any{"conditions": list}
	}
	return u
}

func TestEstablished(t *testing.T) {
	names := map[string]any{"type": "NamesAccepted", "status": "True"}
	for _, tc := range []struct {
		name string
		crd  *unstructured.Unstructured
		want bool
	}{
		{"nil", nil, false},
		{"no status", crd(), false},
		{"names accepted only", crd(names), false},
		{"established false", crd(names, map[string]any{"type": "Established", "status": "False"}), false},
		{"established unknown", crd(map[string]any{"type": "Established", "status": "Unknown"}), false},
		{"established", crd(names, map[string]any{"type": "Established", "status": "True"}), true},
		{"odd condition entry", crd(map[string]any{"type": int64(1)}, map[string]any{"type": "Established", "status": "True"}), true},
	} {
		if got := Established(tc.crd); got != tc.want {
			t.Errorf("%s: Established = %v, want %v", tc.name, got, tc.want)
		}
	}
	bad := &unstructured.Unstructured{Object: map[string]any{"status": map[string]any{"conditions": "nope"}}}
	if Established(bad) {
		t.Error("conditions that are not a list: Established = true")
	}
}

var gr = schema.GroupResource{Group: "apiextensions.k8s.io", Resource: "customresourcedefinitions"}

func TestWaitEstablished(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	calls := 0
	err := WaitEstablished(ctx, "machines.dodai.dev", func(context.Context) (*unstructured.Unstructured, error) {
		calls++
		switch calls {
		case 1:
			return nil, apierrors.NewNotFound(gr, "machines.dodai.dev")
		case 2:
			return crd(map[string]any{"type": "Established", "status": "False"}), nil
		}
		return crd(map[string]any{"type": "Established", "status": "True"}), nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("WaitEstablished = %v after %d reads, want nil after 3", err, calls)
	}

	// It gives up with ctx and names the CRD and the last read error.
	short, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	err = WaitEstablished(short, "machines.dodai.dev", func(context.Context) (*unstructured.Unstructured, error) {
		return nil, errors.New("apiserver busy")
	})
	if err == nil || !strings.Contains(err.Error(), "CRD machines.dodai.dev") || !strings.Contains(err.Error(), "apiserver busy") ||
		!errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitEstablished on a busy apiserver = %v", err)
	}
}

func TestWaitGone(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	calls := 0
	err := WaitGone(ctx, "HelmRelease cozy-system/cilium", func(context.Context) (*unstructured.Unstructured, error) {
		calls++
		if calls < 3 {
			return crd(), nil
		}
		return nil, apierrors.NewNotFound(gr, "x")
	})
	if err != nil || calls != 3 {
		t.Fatalf("WaitGone = %v after %d reads, want nil after 3", err, calls)
	}

	short, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	err = WaitGone(short, "HelmRelease cozy-system/cilium", func(context.Context) (*unstructured.Unstructured, error) {
		return crd(), nil
	})
	if err == nil || !strings.Contains(err.Error(), "waiting for HelmRelease cozy-system/cilium to be deleted") || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitGone of an object that stays = %v", err)
	}
}
