package v1alpha1

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/dodai-dev/dodai/internal/testutil"
)

// The checked-in deep-copy functions and CRD manifests are exactly what
// hack/gen.sh (the pinned controller-gen) generates from the types.
func TestGeneratedCurrent(t *testing.T) {
	testutil.Slow(t, "builds controller-gen")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	out := t.TempDir()
	cmd := exec.CommandContext(ctx, "bash", "../../hack/gen.sh", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hack/gen.sh: %v\n%s", err, b)
	}
	compare := func(generated, checkedIn string) {
		want, err := os.ReadFile(generated)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(checkedIn)
		if err != nil {
			t.Fatalf("%v (run hack/gen.sh)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is not what hack/gen.sh generates from the types: run hack/gen.sh", checkedIn)
		}
	}
	compare(filepath.Join(out, "deepcopy", "zz_generated.deepcopy.go"), "zz_generated.deepcopy.go")
	crds, err := filepath.Glob(filepath.Join(out, "crds", "*.yaml"))
	if err != nil || len(crds) != 2 {
		t.Fatalf("generated CRDs: %v %v", crds, err)
	}
	for _, c := range crds {
		compare(c, filepath.Join("../../charts/dodai/crds", filepath.Base(c)))
	}
	checkedIn, _ := filepath.Glob("../../charts/dodai/crds/*.yaml")
	if len(checkedIn) != len(crds) {
		t.Errorf("charts/dodai/crds has %d files, controller-gen writes %d: remove stale ones", len(checkedIn), len(crds))
	}
}
