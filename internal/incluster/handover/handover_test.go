package handover

import (
	"strings"
	"testing"
)

// Held sees a lock another holder took, names it, and neither takes nor
// creates anything.
func TestHeld(t *testing.T) {
	dir := t.TempDir()
	if h, held, err := Held(dir); err != nil || held || h != "" {
		t.Fatalf("no lock file: %q %v %v", h, held, err)
	}
	release, err := Lock(dir, "dodai netboot")
	if err != nil {
		t.Fatal(err)
	}
	h, held, err := Held(dir)
	if err != nil || !held || !strings.HasPrefix(h, "dodai netboot pid ") {
		t.Fatalf("while held: %q %v %v", h, held, err)
	}
	// Held took nothing: the holder still has it, a second Lock fails.
	if _, err := Lock(dir, "dodai pivot"); err == nil {
		t.Fatal("a second Lock succeeded while held")
	}
	release()
	if _, held, err := Held(dir); err != nil || held {
		t.Fatalf("after release: %v %v", held, err)
	}
	r2, err := Lock(dir, "dodai pivot")
	if err != nil {
		t.Fatalf("Lock after Held: %v", err)
	}
	r2()
}
