// Package handover guards the move of a cluster's boot server from an
// operator's machine into the cluster. Two boot servers answering one boot
// network at once is how machines get reinstalled by accident (Sidero wiped
// machines that way while DHCP still pointed at the bootstrap server), so:
//
//   - a local `dodai netboot` holds an exclusive lock on
//     state/netboot.lock of its cluster directory while it runs;
//   - `dodai pivot` takes the same lock, so it refuses while a local
//     netboot runs and no local netboot can start while it moves the state;
//   - after the move, state/pivot.json records where the state went, and a
//     local netboot refuses to start for the pivoted cluster unless forced.
package handover

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/state"
)

// ErrHeld is returned by Lock when another process holds the lock.
var ErrHeld = errors.New("held by another process")

// Lock takes the cluster directory's netboot lock without waiting; what
// names the holder in the error another process then gets ("dodai
// netboot", "dodai pivot"). Release it with the returned function (the
// kernel releases it when the process dies, so a killed netboot never
// leaves a stale lock).
func Lock(clusterDir, what string) (release func(), err error) {
	path := cluster.At(clusterDir).NetbootLock()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating the state directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			h := strings.TrimSpace(string(holder))
			if h == "" {
				h = "another process"
			}
			return nil, fmt.Errorf("%s is running for this cluster directory (lock %s): %w", h, path, ErrHeld)
		}
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(what+" pid "+strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() {
		_ = f.Truncate(0)
		f.Close()
	}, nil
}

// Record says where a pivoted cluster's boot state went.
type Record struct {
	// Time of the pivot.
	Time time.Time `json:"time"`
	// Server is the apiserver URL and Namespace the namespace holding the
	// Machines and DHCPLeases.
	Server    string `json:"server"`
	Namespace string `json:"namespace"`
	// Machines and Leases count what was moved.
	Machines int `json:"machines"`
	Leases   int `json:"leases"`
}

// Pivoted returns the pivot record of a cluster directory (nil: not
// pivoted).
func Pivoted(clusterDir string) (*Record, error) {
	var r Record
	if err := state.ReadJSON(cluster.At(clusterDir).PivotRecord(), &r); err != nil {
		return nil, err
	}
	if r.Time.IsZero() {
		return nil, nil
	}
	return &r, nil
}

// MarkPivoted writes the pivot record (atomically, 0600).
func MarkPivoted(clusterDir string, r Record) error {
	return state.WriteJSON(cluster.At(clusterDir).PivotRecord(), r)
}

// RefuseLocal is the error of a local netboot for a pivoted cluster.
func RefuseLocal(r *Record) error {
	return fmt.Errorf("this cluster was pivoted on %s: its boot server runs in the cluster (%s, namespace %s). "+
		"A second boot server on the same network can reinstall machines; stop the in-cluster one first "+
		"(disable the dodai component or unlabel its nodes), then run with --force",
		r.Time.Local().Format(time.DateTime), r.Server, r.Namespace)
}

// Held reports whether a process holds the cluster directory's netboot
// lock right now (a local `dodai netboot` or `dodai pivot`), and who, as
// the lock file names it. It takes nothing and creates nothing: an
// in-cluster boot server started with this cluster directory checks it
// (the directory may be a read-only mount there).
func Held(clusterDir string) (holder string, held bool, err error) {
	path := cluster.At(clusterDir).NetbootLock()
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("opening %s: %w", path, err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			b, _ := os.ReadFile(path)
			h := strings.TrimSpace(string(b))
			if h == "" {
				h = "another process"
			}
			return h, true, nil
		}
		return "", false, fmt.Errorf("checking the lock %s: %w", path, err)
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return "", false, nil
}
