// Package state holds the small JSON state files dodai keeps in a cluster
// directory under state/: the netboot machine registry (what netboot saw),
// so that bootstrap can find machines, and helpers to read and write such
// files atomically.
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/dodai-dev/dodai/internal/fsutil"
)

// Dir is the state directory inside a cluster directory.
const Dir = "state"

// MachinesFile is the netboot registry file name inside Dir.
const MachinesFile = "machines.json"

// Machine is one machine seen by netboot.
type Machine struct {
	MAC      string    `json:"mac"`
	IP       string    `json:"ip,omitempty"`
	Arch     string    `json:"arch,omitempty"`
	Stage    string    `json:"stage"`
	Node     string    `json:"node,omitempty"`
	LastSeen time.Time `json:"lastSeen"`
	// BootStarted is when the machine's latest netboot began (its first
	// DHCP of that boot); netboot compares it with when dodai bootstrap
	// applied the node's config to tell a reboot after the install.
	BootStarted time.Time `json:"bootStarted,omitzero"`
}

// Machines is the netboot registry file content.
type Machines struct {
	Machines []Machine `json:"machines"`
}

// Path returns the path of a state file in a cluster directory.
func Path(clusterDir, name string) string { return filepath.Join(clusterDir, Dir, name) }

// ReadJSON reads a state file into v; a missing file leaves v untouched and
// returns nil.
func ReadJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading state: %w", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("reading state %s: %w", path, err)
	}
	return nil
}

// WriteJSON writes v as indented JSON, atomically, mode 0600, creating the
// state directory if needed.
func WriteJSON(path string, v any) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("writing state: %w", err)
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("writing state: %w", err)
	}
	return fsutil.WriteFileAtomic(path, append(b, '\n'), 0o600)
}
