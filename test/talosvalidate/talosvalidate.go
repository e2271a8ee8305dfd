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
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

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
// A validator program reads each distinct config once per process; its
// verdict is remembered for the same bytes.
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
	key := verdictKey{program: p, config: sha256.Sum256(config)}
	if v, ok := verdicts.Load(key); ok {
		return v.(verdict).err
	}
	err = runValidator(ctx, p, config)
	var rejected *rejection
	if err == nil || errors.As(err, &rejected) {
		verdicts.Store(key, verdict{err})
	}
	return err
}

// runValidator runs the validator program p on config; a config it refuses
// (exit status 1, the reason on standard error) gives a *rejection.
func runValidator(ctx context.Context, p string, config []byte) error {
	cmd := exec.CommandContext(ctx, p, "-")
	cmd.Stdin = bytes.NewReader(config)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if err == nil {
		return nil
	}
	msg := strings.TrimPrefix(strings.TrimSpace(stderr.String()), "-: ")
	var exit *exec.ExitError
	switch {
	case msg != "" && errors.As(err, &exit) && exit.ExitCode() == 1 && ctx.Err() == nil:
		return &rejection{msg}
	case msg != "":
		return errors.New(msg)
	default:
		return fmt.Errorf("running %s: %w", p, err)
	}
}

// rejection is a validator program's refusal of a config: its message.
type rejection struct{ msg string }

func (r *rejection) Error() string { return r.msg }

// verdicts remembers what each validator program said about each config it
// read (verdictKey -> verdict): a release's machinery gives the same answer
// for the same bytes, and running the program costs tens of milliseconds of
// CPU, which fake nodes would otherwise spend again on every dry run and
// apply of the same config. Failures to run the program are not kept.
var verdicts sync.Map

type verdictKey struct {
	program string
	config  [sha256.Size]byte
}

type verdict struct{ err error }

type metal struct{}

func (metal) String() string        { return "metal" }
func (metal) RequiresInstall() bool { return true }
func (metal) InContainer() bool     { return false }
