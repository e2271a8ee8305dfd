package talosvalidate

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeValidator installs a validator program of v1.11 under a fresh tools
// directory that records each run in a file and refuses configs containing
// "bad" the way talos-validate does (exit 1, the reason on standard error).
func fakeValidator(t *testing.T) (runs func() int) {
	t.Helper()
	base := t.TempDir()
	bin := filepath.Join(base, "talos", "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(base, "runs")
	script := "#!/bin/sh\necho run >> " + log + "\n" +
		"if grep -q bad; then echo '-: validating: bad field' >&2; exit 1; fi\n"
	if err := os.WriteFile(filepath.Join(bin, "talos-validate-v1.11"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv(ToolsEnvVar, base)
	return func() int {
		b, err := os.ReadFile(log)
		if os.IsNotExist(err) {
			return 0
		}
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(string(b), "run\n")
	}
}

func TestValidateRemembersVerdicts(t *testing.T) {
	runs := fakeValidator(t)
	ctx := t.Context()
	for i := range 3 {
		if err := Validate(ctx, "v1.11.6", []byte("good: config")); err != nil {
			t.Fatalf("accepted config, call %d: %v", i, err)
		}
		err := Validate(ctx, "v1.11.2", []byte("bad: config"))
		if err == nil || err.Error() != "validating: bad field" {
			t.Fatalf("refused config, call %d: got %v, want the program's reason", i, err)
		}
	}
	if got := runs(); got != 2 {
		t.Fatalf("the program ran %d times for two distinct configs of one minor, want 2", got)
	}
	if err := Validate(ctx, "v1.11.6", []byte("good: config, other bytes")); err != nil {
		t.Fatal(err)
	}
	if got := runs(); got != 3 {
		t.Fatalf("the program ran %d times after a third distinct config, want 3", got)
	}
}

func TestValidateKeepsNoVerdictWithoutARun(t *testing.T) {
	runs := fakeValidator(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := Validate(ctx, "v1.11.6", []byte("good: config")); err == nil {
		t.Fatal("validation with an ended context succeeded")
	}
	if err := Validate(t.Context(), "v1.11.6", []byte("good: config")); err != nil {
		t.Fatalf("after an interrupted run: %v", err)
	}
	if got := runs(); got != 1 {
		t.Fatalf("the program ran %d times, want 1 (the interrupted call never started it)", got)
	}
}
