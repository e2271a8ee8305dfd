// Package state holds the JSON files in which dodai keeps, under a cluster
// directory's state/, what it observed and did: the machines netboot saw
// (state/machines.json, Machines) and bootstrap's progress (state/bootstrap.json,
// Bootstrap), with helpers to read and write them atomically. Their paths
// come from cluster.Layout; the packages that change them (netboot's
// registry, bootstrap) own the logic, this package only the format, so
// that readers (discover, status, the interactive mode, day-2 commands) do
// not import the writers.
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
	// Reinstall is when an operator last asked for the machine to netboot
	// Talos again (POST /reinstall); boot servers sharing one registry
	// order their records by it.
	Reinstall time.Time `json:"reinstall,omitzero"`
}

// Machines is the netboot registry file content.
type Machines struct {
	Machines []Machine `json:"machines"`
}

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
