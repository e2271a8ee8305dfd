// Package talosvalidate checks a machine config the way a node of a given
// Talos release reads it. dodai is built with the newest machinery, whose
// loader also accepts what older releases reject (documents and fields
// they do not know), so configs for older releases are checked with that
// release's own machinery: the talos-validate-v1.N programs hack/deps/talos.sh
// builds from test/tools/talos-validate. The newest release is checked in
// process. Test code only.
package talosvalidate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/siderolabs/talos/pkg/machinery/config/configloader"

	"github.com/dodai-dev/dodai/internal/talos/compat"
)

// ToolsEnvVar names the tools directory hack/deps/talos.sh builds into.
const ToolsEnvVar = "DODAI_TOOLS_DIR"

// External lists the Talos minors checked by a program of their own.
var External = []string{"v1.11", "v1.12"}

// ErrNoValidator means no validator of that Talos minor exists here.
var ErrNoValidator = errors.New("no validator for this Talos minor")

const hint = "run hack/deps/talos.sh (or hack/test.sh) to build the Talos validators"

func toolsBase() (string, error) {
	if base := os.Getenv(ToolsEnvVar); base != "" {
		return base, nil
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("%s is unset and there is no home directory: %w", ToolsEnvVar, err)
		}
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "dodai", "tools"), nil
}

// Minor returns "v1.N" of a version like v1.12.7.
func Minor(version string) (string, error) {
	m, err := compat.TalosMinor(version)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("v1.%d", m), nil
}

// InProcess reports whether the version is dodai's own machinery release
// (validated in process, no program needed).
func InProcess(version string) bool {
	m, err := compat.TalosMinor(version)
	return err == nil && m == compat.MaxTalosMinor
}

// Path returns the validator program of the version's minor, or an error
// wrapping ErrNoValidator, or naming hack/deps/talos.sh when it is missing.
func Path(version string) (string, error) {
	minor, err := Minor(version)
	if err != nil {
		return "", err
	}
	known := false
	for _, m := range External {
		known = known || m == minor
	}
	if !known {
		return "", fmt.Errorf("Talos %s: %w (have %s and %s in process)", version, ErrNoValidator, strings.Join(External, ", "), compat.DefaultTalosVersion)
	}
	base, err := toolsBase()
	if err != nil {
		return "", fmt.Errorf("finding the Talos validators: %w; %s", err, hint)
	}
	p := filepath.Join(base, "talos", "bin", "talos-validate-"+minor)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("Talos %s validator: %w; %s", minor, err, hint)
	}
	return p, nil
}

// Available reports whether Validate can check configs for the version.
func Available(version string) error {
	if InProcess(version) {
		return nil
	}
	_, err := Path(version)
	return err
}

// Validate loads and validates a config as a metal node running the given
// Talos version would, returning that machinery's error when it rejects it.
func Validate(ctx context.Context, version string, config []byte) error {
	if InProcess(version) {
		cfg, err := configloader.NewFromBytes(config)
		if err != nil {
			return fmt.Errorf("loading: %w", err)
		}
		if _, err := cfg.Validate(metal{}); err != nil {
			return fmt.Errorf("validating: %w", err)
		}
		return nil
	}
	p, err := Path(version)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, p, "-")
	cmd.Stdin = bytes.NewReader(config)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return errors.New(strings.TrimPrefix(msg, "-: "))
		}
		return fmt.Errorf("running %s: %w", p, err)
	}
	return nil
}

type metal struct{}

func (metal) String() string        { return "metal" }
func (metal) RequiresInstall() bool { return true }
func (metal) InContainer() bool     { return false }
